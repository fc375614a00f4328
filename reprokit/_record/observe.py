"""Observed inputs: the files a run opens for reading, seen through Python's audit hooks.

``open`` audit events are raised by ``open()``, ``io.open``, ``os.open`` and ``io.open_code``:
``numpy.load``, ``torch.load``, pandas' readers and ``json.load(open(...))`` all go through
them. The hook is installed the first time a run starts (an audit hook cannot be removed). While
no run observes, it costs one comparison per audit event. While one does, a plain read costs one
``list.append`` of its path into a log shared by the observing runs (other opens: of the event's
arguments): no stat, no path handling, no hashing there. Each run reads its part of the log
when it stops, resolving relative paths against the working folder of the moment (``os.chdir``
events are logged too); filtering and hashing happen when the run seals
(``reprokit._record.inputs``).
"""

from __future__ import annotations

import os
import sys
from _thread import get_ident

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from typing import Any

MAX_LOG = 200_000  # open events kept while runs observe; more are counted, not kept

_CWD = "\0cwd"  # a log entry that says which folder relative paths are relative to from there on
_CHDIR = "\0chdir"

_on = False
_log: list[tuple] = []
_lost = 0
_installed = False
_observers: dict[int, int] = {}  # token -> where in the log its run began
# thread -> depth: threads whose opens are reprokit's own (capture, sealing, hashing outputs)
_paused: dict[int, int] = {}
_wakers: dict[int, Any] = {}  # token -> called once, at its run's first file read


def _hook(event: str, args: tuple) -> None:
    # Runs on every audit event of the process: keep the common cases to a few operations. A
    # plain read (``open(path)``, ``open(path, "rb")``: mode "r") logs its path alone, a str,
    # the cheapest entry there is (no tuple kept alive); anything else takes ``_other``.
    if event == "open":
        if _on:
            if args[1] == "r" and not (_paused or _wakers) and len(_log) < MAX_LOG:
                _log.append(args[0])
            else:
                _other(args)
    elif event == "os.chdir" and _on:
        _log.append((_CHDIR, args[0], None))


def _other(args: tuple) -> None:
    """An open that is not a plain read while nobody waits (writes, ``os.open``, a full log, a
    paused thread, a run waiting for its first read)."""
    if _paused and get_ident() in _paused:
        return
    if len(_log) >= MAX_LOG:
        _count_lost()
        return
    _log.append(args[0] if args[1] == "r" else args)
    if _wakers:
        _wake(args)


def _wake(args: tuple) -> None:
    """At the first read of a file: call what the observing runs asked for (once each)."""
    try:
        _path, mode, flags = args
        if mode is not None and ("r" not in mode or "+" in mode):
            return
        if mode is None and (flags or 0) & 3:
            return
    except (TypeError, ValueError):
        return
    for token in list(_wakers):
        fn = _wakers.pop(token, None)  # (threads opening at once: one of them calls it)
        if fn is not None:
            try:
                fn()
            except Exception:  # noqa: S110 - never raise into the program's open()
                pass


def when_read(token: int, fn: Any) -> None:
    """Call ``fn`` (no arguments) once, at the first file the run of ``token`` reads: so work
    that only matters to runs that read files (a hashing thread) costs the others nothing."""
    if token in _observers:
        _wakers[token] = fn


def _count_lost() -> None:
    global _lost
    _lost += 1


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:
        return ""


def start() -> int:
    """Begin observing for one run; returns a token to hand back to ``stop``."""
    global _on, _installed
    if not _installed:
        sys.addaudithook(_hook)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=forget_after_fork)
        _installed = True
    token = len(_observers) and max(_observers) + 1
    _observers[token] = len(_log)
    _log.append((_CWD, _cwd(), None))
    _on = True
    return token


def stop(token: int) -> tuple[list[str], int]:
    """End observing for the run of ``token``: (absolute paths it read and did not write, in
    the order first opened; open events that did not fit in the log)."""
    global _on, _log, _lost
    _wakers.pop(token, None)
    begin = _observers.pop(token, None)
    if begin is None:
        return [], 0
    entries = _log[begin:]
    lost = _lost
    if not _observers:
        _on = False
        _log = []
        _lost = 0
    reader = LogReader()
    reader.feed(entries)
    return list(reader.read), lost


def entries_since(token: int, index: int, limit: int = MAX_LOG) -> tuple[list[tuple], int]:
    """(at most ``limit`` log entries of the run of ``token`` from its ``index``-th on, the
    index after them); what a reader off the caller's path takes while the run goes on."""
    begin = _observers.get(token)
    if begin is None:
        return [], index
    log = _log
    end = min(len(log), begin + index + limit)  # the hook appends meanwhile: the rest next time
    return log[begin + index : end], end - begin


class LogReader:
    """Turns log entries into the files a run read: ``read`` (absolute paths, in the order
    first opened, less those it wrote) as entries are fed, in order."""

    def __init__(self) -> None:
        self.cwd = ""
        self.read: dict[str, None] = {}
        self.written: set[str] = set()

    def feed(self, entries: list[tuple]) -> list[str]:
        """Take ``entries``; returns the paths first read among them."""
        fresh = []
        for entry in entries:
            path: Any
            if entry.__class__ is not tuple:  # a plain read, logged as its path alone
                path, mode, flags = entry, "r", None
            else:
                path, mode, flags = entry
            if path == _CWD:
                self.cwd = mode
                continue
            if path == _CHDIR:
                try:
                    self.cwd = os.path.normpath(os.path.join(self.cwd, os.fsdecode(mode)))
                except TypeError:
                    pass
                continue
            if isinstance(path, int) or path is None:
                continue
            try:
                text = os.fsdecode(path)
            except TypeError:
                continue
            if not os.path.isabs(text):
                if not self.cwd:
                    continue
                text = os.path.join(self.cwd, text)
            text = os.path.normpath(text)
            if mode is not None:
                is_read = "r" in mode and "+" not in mode
            else:
                is_read = not (flags or 0) & 3  # O_RDONLY
            if is_read:
                if text not in self.written and text not in self.read:
                    self.read[text] = None
                    fresh.append(text)
            else:
                self.written.add(text)
                self.read.pop(text, None)  # read back after the run wrote it: an output
        return fresh


def forget_after_fork() -> None:
    """In a forked child the parent's observing runs are not this process's."""
    global _on, _log, _lost
    _observers.clear()
    _wakers.clear()
    _on = False
    _log = []
    _lost = 0


class paused:
    """While inside, files this thread opens are reprokit's own reads (capturing and sealing a
    run, hashing a command's declared outputs), not the run's inputs. Nests."""

    def __enter__(self) -> None:
        me = get_ident()
        _paused[me] = _paused.get(me, 0) + 1

    def __exit__(self, *exc: object) -> None:
        me = get_ident()
        depth = _paused.pop(me, 1) - 1
        if depth:
            _paused[me] = depth
