"""Signals and runs: SIGTERM seals the unfinished runs of this process; sealing holds signals.

The runs that are started and not yet finished in this process are listed in ``ACTIVE``; the
SIGTERM handler seals them as ``interrupted`` before the process dies of the signal as usual.

The handler is installed only while runs are going and taken down when the last one ends. A
Python-level handler runs only when the main thread next executes Python code: a process left
idle with it, blocked in C (a pool worker waiting on its task queue's lock), could take a
SIGTERM into the handler's flag just before blocking and never act on it, so that
``Pool.terminate()`` waited for that worker forever. With the default disposition back, the
kernel ends the process at once.
"""

from __future__ import annotations

# The C module itself on the per-run path: signal.signal and getsignal wrap every handler they
# return in an enum (a few microseconds each, eight calls a run).
import _signal  # type: ignore[import-not-found]
import os
import signal
import threading

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from typing import Any

ACTIVE: list[Any] = []  # Run objects started and not yet finished, in this process
LOCK = threading.RLock()  # re-entrant: the SIGTERM handler may run while it is held
_watched: list[bool] = []


class Terminated(BaseException):
    """Recorded as a run's error when a signal (SIGTERM) ended it."""


def add_active(run: Any) -> None:
    """Note a started run, and make sure SIGTERM seals it."""
    with LOCK:
        ACTIVE.append(run)
    watch_sigterm()


def remove_active(run: Any) -> None:
    """Forget a finished run; after the last one, give SIGTERM its default disposition back."""
    with LOCK:
        if run in ACTIVE:
            ACTIVE.remove(run)
        if not ACTIVE:
            unwatch_sigterm()


def watch_sigterm() -> None:
    """Seal unfinished runs as ``interrupted`` on SIGTERM, then die of it as usual.

    Installed only over the default disposition and from the main thread: a program with its
    own SIGTERM handler keeps it.
    """
    if _watched or threading.current_thread() is not threading.main_thread():
        return
    try:
        if _signal.getsignal(_signal.SIGTERM) != _signal.SIG_DFL:
            return
        _signal.signal(_signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError, AttributeError):  # no SIGTERM here (Windows) or not allowed
        return
    _watched.append(True)


def unwatch_sigterm() -> None:
    """Put the default SIGTERM disposition back, if the handler is still ours (from the main
    thread only: elsewhere it stays, and does what the default would with no run going)."""
    if not _watched or threading.current_thread() is not threading.main_thread():
        return
    try:
        if _signal.getsignal(_signal.SIGTERM) is _on_sigterm:
            _signal.signal(_signal.SIGTERM, _signal.SIG_DFL)
    except (ValueError, OSError, AttributeError):
        return
    _watched.clear()


_mask_before_fork: list[Any] = []


def block_for_fork() -> None:
    """Before a fork: hold SIGTERM back, so that one sent to the child the moment it exists
    reaches it after its handler is reset (CPython drops a Python-level signal that lands
    between the fork and the child's reset, and the child would live on)."""
    if not _watched or not hasattr(signal, "pthread_sigmask"):
        return
    try:
        _mask_before_fork.append(signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM}))
    except (ValueError, OSError):
        pass


def unblock_after_fork() -> None:
    """After a fork (in the parent, and in the child once its handler is reset)."""
    if _mask_before_fork:
        mask = _mask_before_fork.pop()
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        except (ValueError, OSError):
            pass


def forget_after_fork() -> None:
    """In a forked child: the parent's runs and handler are not this process's.

    The lock is replaced, not taken: another thread of the parent may have held it at the fork,
    and that thread does not exist here to release it. A SIGTERM held back over the fork is
    delivered once the default disposition is back.
    """
    global LOCK
    LOCK = threading.RLock()
    ACTIVE.clear()
    if _watched:
        _watched.clear()
        try:
            if signal.getsignal(signal.SIGTERM) is _on_sigterm:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except (ValueError, OSError, AttributeError):
            pass
    unblock_after_fork()


_DEFERRED = (int(signal.SIGINT), int(getattr(signal, "SIGTERM", signal.SIGINT)))


class DeferSignals:
    """Hold SIGINT and SIGTERM back while a run is sealed, then deliver them.

    A signal that lands in the middle of sealing (the ledger lock held, the manifest half
    written) would otherwise leave a run incomplete or deadlock on the ledger's lock. Only the
    main thread receives signals, so elsewhere this does nothing.
    """

    __slots__ = ("pending", "saved")

    def __init__(self) -> None:
        self.pending: list[int] = []
        self.saved: dict[int, Any] = {}

    def __enter__(self) -> DeferSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in _DEFERRED:
            try:
                self.saved[sig] = _signal.signal(sig, self._hold)
            except (ValueError, OSError):
                pass
        return self

    def _hold(self, signum: int, frame: Any) -> None:
        self.pending.append(signum)

    def __exit__(self, *exc: Any) -> None:
        if not self.saved:
            return
        for sig, handler in self.saved.items():
            _signal.signal(sig, handler)
        for sig in dict.fromkeys(self.pending):  # each held signal once, in arrival order
            os.kill(os.getpid(), sig)


def _on_sigterm(signum: int, frame: Any) -> None:
    for r in reversed(list(ACTIVE)):
        try:
            r.finish("interrupted", error=Terminated(f"terminated by signal {signum} (SIGTERM)"))
        except Exception:
            pass
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
