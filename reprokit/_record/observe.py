"""Observed inputs: the files a run opens for reading, seen through Python's audit hooks.

``open`` audit events are raised by ``open()``, ``io.open``, ``os.open`` and ``io.open_code``:
``numpy.load``, ``torch.load``, pandas' readers and ``json.load(open(...))`` all go through
them. The hook is installed the first time a run starts (an audit hook cannot be removed) and
does nothing unless a run is observing: for any other event one string comparison. For an
``open`` it stores the path as given (with the working folder it was relative to) in each
observing run's table: no stat, no hashing. Filtering and hashing happen when the run seals
(``reprokit._record.inputs``).
"""

from __future__ import annotations

import os
import sys

MAX_SEEN = 100_000  # distinct paths kept per run; more are counted, not kept

# One table per observing run: key -> True (read) or False (written during the run, so not an
# input). A key is an absolute path, or (cwd, relative path). Replaced, never mutated, so the
# hook may iterate it while another thread starts or ends a run.
_ACTIVE: tuple[dict[object, bool], ...] = ()
_cwd: str | None = None
_installed = False
_overflow: dict[int, int] = {}


def _hook(event: str, args: tuple) -> None:
    if event != "open":
        if event == "os.chdir":
            global _cwd
            _cwd = None
        return
    tables = _ACTIVE
    if not tables:
        return
    path, mode, flags = args
    if mode is None:
        read = not (flags or 0) & 3  # O_RDONLY
    else:
        read = "r" in mode and "+" not in mode
    if type(path) is not str:
        if isinstance(path, int) or path is None:
            return
        try:
            path = os.fsdecode(path)
        except TypeError:
            return
    if path[:1] == "/" or (os.sep != "/" and os.path.isabs(path)):
        key: object = path
    else:
        cwd = _cwd
        if cwd is None:
            cwd = _set_cwd()
        key = (cwd, path)
    for table in tables:
        if read:
            if key not in table:
                if len(table) < MAX_SEEN:
                    table[key] = True
                else:
                    _overflow[id(table)] = _overflow.get(id(table), 0) + 1
        else:
            table[key] = False


def _set_cwd() -> str:
    global _cwd
    try:
        _cwd = os.getcwd()
    except OSError:
        _cwd = ""
    return _cwd


def start() -> dict[object, bool]:
    """Begin observing for one run; returns its table (hand it back to ``stop``)."""
    global _ACTIVE, _installed
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True
    table: dict[object, bool] = {}
    _set_cwd()
    _ACTIVE = (*_ACTIVE, table)
    return table


def stop(table: dict[object, bool]) -> tuple[list[str], int]:
    """End observing for the run that owns ``table``: (absolute paths it read, paths dropped)."""
    global _ACTIVE
    _ACTIVE = tuple(t for t in _ACTIVE if t is not table)
    dropped = _overflow.pop(id(table), 0)
    out = []
    for key, read in list(table.items()):
        if not read:
            continue
        if isinstance(key, tuple):
            cwd, rel = key
            if not cwd:
                continue
            key = os.path.join(cwd, rel)
        out.append(os.path.normpath(key))
    written = set()
    for key, read in table.items():
        if not read:
            written.add(os.path.normpath(os.path.join(*key) if isinstance(key, tuple) else key))
    table.clear()
    return [p for p in dict.fromkeys(out) if p not in written], dropped


def forget_after_fork() -> None:
    """In a forked child the parent's observing runs are not this process's."""
    global _ACTIVE
    _ACTIVE = ()
