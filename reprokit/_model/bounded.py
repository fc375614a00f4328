"""Calling user code that may never return (a ``__repr__`` stuck in a loop or on a lock) with a
time limit, so that recording cannot hang the program it records.

The call runs in a daemon worker thread (one, reused); the caller waits at most
``REPR_TIMEOUT`` seconds. A call that overruns is asked to stop (an exception raised in its
thread at its next bytecode, which ends that worker; the next call starts another); one blocked
in C stays parked in its daemon thread, costing no CPU. A class whose method overran
once is not called again in this process: a list of a thousand such objects costs one wait.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

REPR_TIMEOUT = 1.0  # seconds one repr/str of a user object may take while recording

# Classes whose repr or str overran once: (class, function) pairs.
_overran: set[tuple[type, Any]] = set()


class TimedOut(Exception):
    """The bounded call did not return in time."""


class _Stop(BaseException):
    """Raised in a worker whose call overran, so that its thread ends."""


def timed_out_text(value: Any) -> str:
    """What is kept of a value whose repr never returned: its type only."""
    return f"<{type(value).__qualname__} object (repr timed out)>"


def bounded(fn: Callable[[Any], Any], value: Any, timeout: float = REPR_TIMEOUT) -> Any:
    """``fn(value)``, raising what it raises, or TimedOut after ``timeout`` seconds."""
    cls = type(value)
    if (cls, fn) in _overran:
        raise TimedOut
    if (
        fn in (repr, str)
        and getattr(cls, "__repr__", None) is object.__repr__
        and (fn is repr or getattr(cls, "__str__", None) is object.__str__)
    ):
        return fn(value)  # object's own repr runs no user code: no thread needed
    global _worker
    import os

    worker = _worker
    if worker is None or worker.pid != os.getpid() or worker.stuck:
        worker = _worker = _Worker()  # the first, one after a fork, or one after a stuck call
    return worker.call(fn, value, timeout)


class _Request:
    __slots__ = ("fn", "value", "done", "started", "result")

    def __init__(self, fn: Callable[[Any], Any], value: Any) -> None:
        import threading

        self.fn, self.value = fn, value
        self.done = threading.Event()
        self.started = False
        self.result: tuple[bool, Any] = (False, None)


class _Worker:
    """One daemon thread that makes the bounded calls, one after another (starting a thread
    per call would cost ~100 µs; a queued call costs a few µs)."""

    def __init__(self) -> None:
        import os
        import queue
        import threading

        self.pid = os.getpid()
        self.stuck = False
        self.requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._serve, name="reprokit-bounded", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            req = self.requests.get()
            req.started = True
            try:
                req.result = (True, req.fn(req.value))
            except _Stop:
                return  # the caller gave up on this call and on this worker
            except BaseException as exc:  # handed to the caller, raised there
                req.result = (False, exc)
            req.done.set()
            del req

    def call(self, fn: Callable[[Any], Any], value: Any, timeout: float) -> Any:
        req = _Request(fn, value)
        self.requests.put(req)
        if not req.done.wait(timeout):
            self.stuck = True  # the next call gets a fresh worker
            cls = type(value)
            # Only the call that overran is to blame (not one queued behind it); a list is not
            # to blame for the items it holds.
            if req.started and cls.__module__ != "builtins":
                _overran.add((cls, fn))
            _stop(self.thread)
            raise TimedOut
        ok, result = req.result
        if ok:
            return result
        raise result


_worker: _Worker | None = None


def _stop(worker: Any) -> None:
    """Ask a thread running Python code to stop: it raises _Stop at its next bytecode."""
    try:
        import ctypes

        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(worker.ident), ctypes.py_object(_Stop)
        )
    except Exception:  # no ctypes here: the daemon thread is left to itself
        pass
