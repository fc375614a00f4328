"""Metric points held in memory for a moment and written to the run's ``metrics.jsonl`` in
batches: ``log_metric`` costs an append, not a JSON encoding and a write.

A run's buffer goes to the file when it holds ``FLUSH_POINTS`` points, when its oldest point is
``FLUSH_S`` seconds old (a background thread looks twice a second), when the run is sealed
(which the SIGTERM handler and Ctrl-C do) and before a fork. Each batch is handed to the kernel
at once, so a process killed outright (SIGKILL, the OOM killer) loses at most the points it
logged in its last ``FLUSH_S`` seconds, and never more than ``FLUSH_POINTS`` of them; a power
cut loses what the kernel had not written back yet, as it would without the buffer.
"""

from __future__ import annotations

import json
import os
import threading
import weakref

from reprokit._model.memo import BoundedMemo

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from typing import Any

FLUSH_POINTS = 1000
FLUSH_S = 0.5


def _head(name: Any) -> str:
    return '{"name": ' + json.dumps(name) + ', "step": '


_heads = BoundedMemo(_head)  # metric name -> its line's start (names repeat on every step)


def lines(points: list[tuple[Any, Any, Any, float]]) -> str:
    """The JSON lines of ``points`` (name, step, value, ts), as ``json.dumps`` writes them."""
    out: list[str] = []
    add = out.append
    heads = _heads
    for name, step, value, ts in points:
        head = heads[name]
        if type(step) is not int:
            step = json.dumps(step, default=str)  # odd steps (numpy ints, text) as json writes them
        if type(value) is float and value - value != 0.0:
            value = _Text(json.dumps(value))  # NaN, Infinity, -Infinity
        add(f'{head}{step}, "value": {value!r}, "ts": {ts!r}}}\n')
    return "".join(out)


class _Text(str):
    """A str whose repr is itself (a value already in JSON form)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


class Flusher:
    """One daemon thread per process that writes out the buffers older than ``FLUSH_S``."""

    def __init__(self) -> None:
        self._runs: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._pid = 0
        self._wake = threading.Event()

    def forget_after_fork(self) -> None:
        """In a forked child: no thread, and a lock the parent's thread cannot be holding."""
        self._runs = weakref.WeakSet()
        self._lock = threading.Lock()
        self._pid = 0
        self._wake = threading.Event()

    def watch(self, run: Any) -> None:
        """Make sure ``run``'s buffer is written within ``FLUSH_S``."""
        with self._lock:
            self._runs.add(run)
            if self._pid != os.getpid():  # not started yet, or a forked child (no threads)
                self._pid = os.getpid()
                thread = threading.Thread(target=self._loop, name="reprokit-metrics", daemon=True)
                thread.start()

    def _loop(self) -> None:
        pid = os.getpid()
        while self._pid == pid:
            self._wake.wait(FLUSH_S / 2)
            with self._lock:
                runs = list(self._runs)
            for run in runs:
                try:
                    run.flush_metrics(older_than=FLUSH_S)
                except Exception:
                    pass  # recording never breaks the program; the seal writes what is left


FLUSHER = Flusher()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=FLUSHER.forget_after_fork)
