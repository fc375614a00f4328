"""A dict that computes what it lacks, up to a bound: for answers that depend on the key alone
and recur on every run (YAML keys, setting names, metric names)."""

from __future__ import annotations

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class BoundedMemo(dict):
    """``memo[key]`` is ``fn(key)``, kept for the first ``limit`` keys (beyond, computed each
    time: a process that sees endless distinct keys does not grow without bound)."""

    __slots__ = ("_fn", "_limit")

    def __init__(self, fn: Callable[[Any], Any], limit: int = 4096) -> None:
        super().__init__()
        self._fn = fn
        self._limit = limit

    def __missing__(self, key: Any) -> Any:
        value = self._fn(key)
        if len(self) < self._limit:
            self[key] = value
        return value
