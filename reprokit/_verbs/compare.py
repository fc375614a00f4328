"""``compare``: several runs side by side: who they are, their params, their results (each
metric's last value, the return value's numbers) and the replay verdicts recorded about them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reprokit._model.compare import flatten
from reprokit._model.errors import ReprokitError
from reprokit._model.manifest import Manifest
from reprokit._model.report import Report
from reprokit._store.query import replay_verdicts
from reprokit._store.store import Store
from reprokit._verbs.audit import results_of, results_of_children
from reprokit._verbs.replay import child_runs

SECTIONS = ("run", "param", "result", "verdict")


@dataclass(frozen=True)
class CompareReport(Report):
    """Runs side by side. ``rows``: ``{section, key, values (one per run, None when the run
    has none), differs}``, sections in the order run, param, result, verdict."""

    runs: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]

    @property
    def differing(self) -> list[dict[str, Any]]:
        """The rows whose values are not all the same."""
        return [r for r in self.rows if r["differs"]]


def compare(refs: Sequence[str], *, store: Store | str | None = None) -> CompareReport:
    """Params, results and replay verdicts of the runs ``refs`` names (two or more)."""
    if len(refs) < 2:
        raise ReprokitError("compare needs two runs or more (reprokit show shows one)")
    st = Store.at(store)
    ids: list[str] = []
    for ref in refs:
        rid = st.resolve(ref)
        if rid not in ids:
            ids.append(rid)
    if len(ids) < 2:
        raise ReprokitError(f"compare needs two different runs; {', '.join(refs)} name one")
    manifests = [st.load(rid) for rid in ids]
    columns = [_column(m, st) for m in manifests]
    rows: list[dict[str, Any]] = []
    for section in SECTIONS:
        keys: list[str] = []
        for col in columns:
            keys.extend(k for k in col[section] if k not in keys)
        if section != "run":
            keys.sort()
        for key in keys:
            values = [col[section].get(key) for col in columns]
            rows.append(
                {"section": section, "key": key, "values": values, "differs": _differs(values)}
            )
    return CompareReport(tuple(ids), tuple(rows))


def _column(m: Manifest, st: Store) -> dict[str, dict[str, Any]]:
    run, code = m.run, m.code
    who: dict[str, Any] = {
        "name": run.get("name"),
        "status": run.get("status"),
        "started": run.get("started"),
        "commit": code.get("commit"),
        "dirty": code.get("dirty"),
        "code digest": code.get("digest"),
        "seed": m.seeds.get("seed"),
        "tags": ", ".join(map(str, run.get("tags") or [])) or None,
    }
    if (run.get("entry") or {}).get("kind") == "command":
        # A command's results are those of the tracked runs it made.
        results = results_of_children(child_runs(st, m.id))
        if isinstance(m.outputs.get("exit_code"), int):
            results["exit_code"] = m.outputs["exit_code"]
    else:
        results = results_of(m)
    verdicts: dict[str, Any] = {}
    replays = replay_verdicts(st, m.id)
    if replays:
        last_id, last = replays[-1]
        verdicts["replay"] = last
        verdicts["replay run"] = last_id
        verdicts["replays"] = len(replays)
    return {
        "run": who,
        "param": flatten(dict(m.params)),
        "result": results,
        "verdict": verdicts,
    }


def _differs(values: list[Any]) -> bool:
    first = values[0]
    return any(type(v) is not type(first) or v != first for v in values[1:])
