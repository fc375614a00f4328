"""Calling user code that may never return (a ``__repr__`` stuck in a loop or on a lock) with a
time limit, so that recording cannot hang the program it records.

The call runs in a daemon thread; the caller waits at most ``REPR_TIMEOUT`` seconds. A call
that overruns is asked to stop (an exception raised in its thread at its next bytecode); one
blocked in C stays parked in its daemon thread, costing no CPU. A class whose method overran
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
    import threading

    box: list[tuple[bool, Any]] = []

    def target() -> None:
        try:
            box.append((True, fn(value)))
        except BaseException as exc:  # handed to the caller, raised there
            box.append((False, exc))

    worker = threading.Thread(target=target, name="reprokit-bounded-repr", daemon=True)
    worker.start()
    worker.join(timeout)
    if not box:
        if cls.__module__ != "builtins":  # a list is not to blame for the items it holds
            _overran.add((cls, fn))
        _stop(worker)
        raise TimedOut
    ok, result = box[0]
    if ok:
        return result
    raise result


def _stop(worker: Any) -> None:
    """Ask a thread running Python code to stop: it raises SystemExit at its next bytecode."""
    try:
        import ctypes

        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(worker.ident), ctypes.py_object(SystemExit)
        )
    except Exception:  # no ctypes here: the daemon thread is left to itself
        pass
