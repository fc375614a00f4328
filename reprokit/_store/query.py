"""Finding runs: the filters of ``reprokit ls`` (name, status, tag, param, metric, time) as one
frozen query, and the replay verdicts recorded about a run.

A query is built from text (``RunQuery.parse``: what the command line passes) and asked about
one run at a time (``matches``); params and metrics need the whole manifest, the other filters
only its ``run`` section (``needs_full`` says which).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reprokit._model.errors import ArgumentError
from reprokit._model.manifest import Manifest, made_by_reprokit

OPERATORS = ("<=", ">=", "==", "<", ">")
_METRIC = re.compile(r"^\s*(.+?)\s*(<=|>=|==|<|>)\s*(\S+)\s*$")
_AGO = re.compile(r"^(\d+)\s*([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# What ``ls`` can show as a run's status: the sealed ones, and a folder's state.
STATUSES = ("completed", "failed", "interrupted", "running", "incomplete", "corrupt")


@dataclass(frozen=True)
class RunQuery:
    """Which runs to show. Every filter given must hold; ``everything`` also shows the runs
    reprokit made itself (replays, audit executions, seed sweeps)."""

    name: str | None = None
    status: str | None = None
    tags: tuple[str, ...] = ()
    params: tuple[tuple[str, Any], ...] = ()
    metrics: tuple[tuple[str, str, float], ...] = ()
    since: float | None = None  # seconds since the epoch, UTC
    until: float | None = None
    limit: int | None = None
    everything: bool = False

    @classmethod
    def parse(
        cls,
        *,
        name: str | None = None,
        status: str | None = None,
        tags: Sequence[str] = (),
        params: Sequence[str] = (),
        metrics: Sequence[str] = (),
        since: str | None = None,
        until: str | None = None,
        limit: int | None = None,
        everything: bool = False,
        now: float | None = None,
    ) -> RunQuery:
        """A query from its text form: ``params`` as ``KEY=VALUE`` (VALUE read as JSON when
        it is JSON: ``0.1``, ``true``, ``"0.1"``), ``metrics`` as ``NAME<VALUE`` (``<``,
        ``<=``, ``>``, ``>=``, ``==``; a metric's last value), times as dates, ISO times (UTC
        unless they say otherwise) or ``30m``/``2h``/``3d``/``1w`` ago."""
        if limit is not None and limit < 1:
            raise ArgumentError("n", f"must be at least 1, got {limit}")
        if status is not None and status not in STATUSES:
            raise ArgumentError("status", f"must be one of {', '.join(STATUSES)}, got {status!r}")
        return cls(
            name=name,
            status=status,
            tags=tuple(tags),
            params=tuple(parse_param(p) for p in params),
            metrics=tuple(parse_metric(m) for m in metrics),
            since=parse_time(since, "since", now=now) if since else None,
            until=parse_time(until, "until", end=True, now=now) if until else None,
            limit=limit,
            everything=everything,
        )

    @property
    def needs_full(self) -> bool:
        """Whether the query reads params or outputs (beyond the ``run`` section)."""
        return bool(self.params or self.metrics)

    def matches(self, m: Manifest | None, status: str | None = None) -> bool:
        """Whether run ``m`` (None: a folder that is not a sealed run) passes; ``status`` is
        the status to judge (a distributed run's, or a folder's state) when not ``m``'s."""
        if m is None:
            only_status = not (
                self.name or self.tags or self.params or self.metrics or self.since or self.until
            )
            return only_status and (self.status is None or self.status == status)
        run = m.run
        if not self.everything and made_by_reprokit(run):
            return False
        if self.name is not None and run.get("name") != self.name:
            return False
        if self.status is not None and (status or run.get("status")) != self.status:
            return False
        tags = run.get("tags")
        if any(t not in (tags if isinstance(tags, list) else []) for t in self.tags):
            return False
        if self.since is not None or self.until is not None:
            started = _epoch(run.get("started"))
            if started is None:
                return False
            if self.since is not None and started < self.since:
                return False
            if self.until is not None and started >= self.until:
                return False
        for key, want in self.params:
            if not _same_param(lookup(m.params, key), want):
                return False
        metrics = m.outputs.get("metrics")
        for name, op, value in self.metrics:
            series = metrics.get(name) if isinstance(metrics, Mapping) else None
            last = series.get("last") if isinstance(series, Mapping) else None
            if not _holds(last, op, value):
                return False
        return True


_MISSING = object()


def lookup(params: Mapping[str, Any], key: str, default: Any = _MISSING) -> Any:
    """The param ``key``: a top-level name, else a dotted path into nested params
    (``opt.lr``, Hydra's); ``default`` (a sentinel unless given) when absent."""
    if key in params:
        return params[key]
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def parse_param(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ArgumentError("params", f"expects KEY=VALUE, got {text!r}")
    import json

    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), _Given(value, raw)


class _Given:
    """A param value given on the command line: its typed reading and its text."""

    __slots__ = ("value", "text")

    def __init__(self, value: Any, text: str) -> None:
        self.value, self.text = value, text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Given) and (self.value, self.text) == (other.value, other.text)

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return repr(self.value)


def _same_param(recorded: Any, given: Any) -> bool:
    """Typed equality: ``lr=0.1`` matches the float 0.1 (and the text "0.1"), ``1`` matches 1
    and 1.0 but not True, ``true`` matches True only."""
    if recorded is _MISSING:
        return False
    want = given.value if isinstance(given, _Given) else given
    if isinstance(recorded, str) and isinstance(given, _Given) and recorded == given.text:
        return True
    if isinstance(recorded, bool) or isinstance(want, bool):
        return type(recorded) is type(want) and recorded == want
    if isinstance(recorded, (int, float)) and isinstance(want, (int, float)):
        return recorded == want
    return type(recorded) is type(want) and recorded == want


def parse_metric(text: str) -> tuple[str, str, float]:
    found = _METRIC.match(text)
    if not found:
        raise ArgumentError(
            "metrics", f"expects NAME<VALUE (one of {', '.join(OPERATORS)}), got {text!r}"
        )
    name, op, raw = found.groups()
    try:
        value = float(raw)
    except ValueError:
        raise ArgumentError("metrics", f"has a value that is not a number: {raw!r}") from None
    return name, op, value


def _holds(last: Any, op: str, value: float) -> bool:
    if isinstance(last, bool) or not isinstance(last, (int, float)) or math.isnan(last):
        return False
    return {
        "<": last < value,
        "<=": last <= value,
        ">": last > value,
        ">=": last >= value,
        "==": last == value,
    }[op]


def parse_time(text: str, argument: str, *, end: bool = False, now: float | None = None) -> float:
    """Seconds since the epoch for a date (``2026-11-27``: its start, or with ``end`` the start
    of the next day), an ISO time (UTC unless it carries an offset) or an age (``2h``)."""
    import datetime as dt
    import time

    text = text.strip()
    ago = _AGO.match(text)
    if ago:
        base = time.time() if now is None else now
        return base - int(ago.group(1)) * _SECONDS[ago.group(2)]
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
            return (day + dt.timedelta(days=1 if end else 0)).timestamp()
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        raise ArgumentError(
            argument,
            f"expects a date (2026-11-27), an ISO time (2026-11-27T13:00) or an age "
            f"(30m, 2h, 3d, 1w), got {text!r}",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


def _epoch(started: Any) -> float | None:
    if not isinstance(started, str):
        return None
    try:
        return parse_time(started, "started")
    except ArgumentError:
        return None


def replay_verdicts(store: Any, run_id: str) -> list[tuple[str, str]]:
    """(replay run id, verdict) of every replay of ``run_id`` recorded in ``store``, oldest
    first."""
    found = []
    for entry in store.entries(head=True):
        head = entry.manifest
        if head is None or head.run.get("replay_of") != run_id:
            continue
        if (head.run.get("entry") or {}).get("kind") != "replay":
            continue
        verdict = store.load(entry.id).outputs.get("verdict")
        if isinstance(verdict, str):
            found.append((entry.id, verdict))
    return sorted(found)
