"""Replay: re-execute a recorded run from its exact source and give a verdict that never lies.

1. the run must verify (a tampered run is refused);
2. its source tree is rebuilt in a temporary folder (never the user's working tree) from the
   repository's objects, else from the portable patch kept in the store, and its digest checked;
3. the environment is compared with the recorded one (drift is reported, not fatal);
4. it runs again in a subprocess with the recorded params, seed, deterministic mode,
   PYTHONHASHSEED and numerics variables;
5. every recorded output is compared (exact, or within rtol/atol for numbers), and the first
   checkpoint at which the two runs parted is located; likely causes are listed;
6. the replay is recorded as a run of its own, pointing at the original with ``replay_of``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reprokit._capture.environment import SET_AT_IMPORT, capture_environment, numerics_variables
from reprokit._capture.hardware import capture_hardware, host_identity
from reprokit._model import compare as cmp
from reprokit._model.compare import diff_mappings
from reprokit._model.digest import fingerprint
from reprokit._model.errors import ArgumentError, NotReplayable
from reprokit._model.manifest import Manifest, as_mapping
from reprokit._model.redact import redact_argv
from reprokit._model.report import Report, json_name
from reprokit._record.outputs import describe_declared
from reprokit._record.run import Run
from reprokit._reexec.execute import (
    check_replayable,
    child_env,
    execute,
    moved_outputs,
    plan,
    recorded_root,
    relocated_values,
    reruns_script,
)
from reprokit._reexec.inputs import (
    check_inputs,
    input_causes,
    inputs_needed,
    modified_causes,
    modified_inputs,
    read_only_paths,
    resolve_data_roots,
)
from reprokit._reexec.sandbox import available as sandbox_available
from reprokit._reexec.sandbox import can_place
from reprokit._reexec.source import check_source_dir, in_place_source, rebuild_source
from reprokit._store.query import lookup
from reprokit._store.store import Store


@dataclass(frozen=True)
class ReplayReport(Report):
    """The verdict of a replay, with everything that led to it. ``to_dict()`` is the JSON form."""

    run_id: str = field(metadata={"json": "run"})
    replay_id: str | None = json_name("replay", default=None)
    verdict: str = cmp.IDENTICAL
    tolerance: dict[str, float] = field(default_factory=lambda: {"rtol": 0.0, "atol": 0.0})
    source: dict[str, Any] = field(default_factory=dict)
    drift: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)  # one entry per compared run
    # Where the replay first parted from the record: {"where", "index", "name"}; not in the
    # JSON form, whose "runs" entries each carry their own divergence.
    first_divergence: dict[str, Any] | None = json_name(None, default=None)
    causes: list[str] = field(default_factory=list)
    # Params a --param override changed: {name: {recorded, replayed}} (left out when none).
    changed_params: dict[str, Any] = field(
        default_factory=dict, metadata={"json": "changed_params", "omit_empty": True}
    )
    exit_code: int | None = json_name(None, default=None)

    @property
    def identical(self) -> bool:
        """True when every output is identical or within the tolerance."""
        return self.verdict in (cmp.IDENTICAL, cmp.WITHIN)

    @property
    def undetermined(self) -> str | None:
        """Why no verdict could be given (an output only a summary could compare under the
        tolerance), or None."""
        if self.verdict != cmp.UNDETERMINED:
            return None
        for run in self.runs:
            for name, result in (run.get("outputs") or {}).items():
                if result.get("verdict") == cmp.UNDETERMINED:
                    return f"{name}: {result.get('detail') or 'cannot be compared'}"
        return "an output cannot be compared within the tolerance"

    @property
    def inputs_problem(self) -> str | None:
        """Why the replay leaves its inputs in doubt -- the replayed program modified one, or
        tried to write into one where the sandbox kept it read-only -- or None."""
        return inputs_problem(self.inputs)

    @property
    def rtol(self) -> float:
        return self.tolerance["rtol"]

    @property
    def atol(self) -> float:
        return self.tolerance["atol"]


class _ReplayDraft:
    """A replay report while it is being put together."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.replay_id: str | None = None
        self.verdict = cmp.IDENTICAL
        self.rtol = 0.0
        self.atol = 0.0
        self.source: dict[str, Any] = {}
        self.drift: dict[str, Any] = {}
        self.inputs: dict[str, Any] = {}
        self.runs: list[dict[str, Any]] = []
        self.causes: list[str] = []
        self.exit_code: int | None = None
        # Params a replay was asked to change (a command's flags): {name: {recorded, replayed}}.
        self.changed_params: dict[str, Any] = {}
        # Where the replay first parted from the record: {"where", "index", "name"} (the JSON
        # form keeps its documented keys: each entry of "runs" has its own divergence).
        self.first_divergence: dict[str, Any] | None = None

    @property
    def identical(self) -> bool:
        return self.verdict in (cmp.IDENTICAL, cmp.WITHIN)

    def freeze(self) -> ReplayReport:
        return ReplayReport(
            run_id=self.run_id,
            replay_id=self.replay_id,
            verdict=self.verdict,
            tolerance={"rtol": self.rtol, "atol": self.atol},
            source=self.source,
            drift=self.drift,
            inputs=self.inputs,
            runs=self.runs,
            first_divergence=self.first_divergence,
            causes=self.causes,
            changed_params=self.changed_params,
            exit_code=self.exit_code,
        )


# -- environment drift ---------------------------------------------------------------------------


# What a process reports only when it imported torch/numpy: compared against the replayed run's
# own record (after it ran), never against the replaying process, which imported neither.
_IMPORT_DEPENDENT = ("torch", "blas")


def environment_drift(
    m: Manifest,
    env_now: Mapping[str, Any] | None = None,
    hw_now: Mapping[str, Any] | None = None,
    hw_keys: tuple[str, ...] = ("cpu", "gpus"),
    ran_with: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """What changed between the recorded environment and hardware and this machine's.

    ``ran_with``: the environment the re-execution gets; its numerics variables, not this
    process's, are what the recorded ones are compared with (a replay restores them).
    Lists of libraries (BLAS pools) compare as sets; variables that libraries set in their own
    process at import are left out.
    """
    if env_now is None:
        env_now = capture_environment()
    if hw_now is None:
        hw_now = capture_hardware()
    env_then = dict(m.environment)
    hw_then = dict(m.hardware) if isinstance(m.hardware, Mapping) else {}
    drift: dict[str, Any] = {}
    py_then = (env_then.get("python") or {}).get("version")
    py_now = (env_now.get("python") or {}).get("version")
    if py_then != py_now:
        drift["python"] = {"recorded": py_then, "now": py_now}
    imported = {str(n).lower() for n in env_then.get("imported") or []}
    pa = as_mapping(env_then.get("packages"))
    pb = as_mapping(env_now.get("packages"))
    changes = []
    for name in sorted(set(pa) | set(pb), key=lambda n: (n.lower() not in imported, n.lower())):
        a, b = pa.get(name), pb.get(name)
        if a != b:
            changes.append(
                {"name": name, "recorded": a, "now": b, "imported": name.lower() in imported}
            )
    if changes:
        drift["packages"] = changes
    hw = diff_mappings(
        {k: _as_set(k, hw_then.get(k)) for k in hw_keys},
        {k: _as_set(k, hw_now.get(k)) for k in hw_keys},
    )
    if hw:
        drift["hardware"] = hw
    # Replay sets PYTHONHASHSEED for the re-execution itself: not a drift of this machine.
    skip = {"PYTHONHASHSEED", *SET_AT_IMPORT}
    now_source = (
        numerics_variables(ran_with)[0] if ran_with is not None else env_now.get("variables")
    )
    then_vars = {k: v for k, v in as_mapping(env_then.get("variables")).items() if k not in skip}
    now_vars = {k: v for k, v in as_mapping(now_source).items() if k not in skip}
    variables = diff_mappings(then_vars, now_vars)
    if variables:
        drift["variables"] = variables
    return drift


# Hardware entries that are sets of libraries, listed in whatever order they were loaded.
_SETS = ("blas",)


def _seeded_libraries(seeds: Mapping[str, Any]) -> set[str]:
    """The libraries a run seeded, at its start or as they loaded during it (where numpy's
    RNG lands depends on when the program first loads it)."""
    out: set[str] = set()
    for key in ("seeded", "seeded_on_import"):
        section = seeds.get(key)
        if isinstance(section, Mapping):
            out.update(str(k) for k in section)
    return out


def _as_set(key: str, value: Any) -> Any:
    if key not in _SETS or not isinstance(value, list):
        return value
    return sorted(value, key=lambda item: json.dumps(item, sort_keys=True, default=str))


def counterpart(recorded: Manifest, candidates: list[Manifest]) -> Manifest | None:
    """The re-executed run that corresponds to ``recorded``: same name, same order in its
    process."""
    for r in candidates:
        if r.run.get("name") == recorded.run.get("name") and r.run.get("ordinal") == (
            recorded.run.get("ordinal")
        ):
            return r
    return None


def replayed_run(recorded: Manifest, top: list[Manifest]) -> Manifest | None:
    """The re-execution of ``recorded`` among the top-level runs a replay's process sealed: a
    function called on its own has one; a re-run script's are matched by name and order."""
    if (recorded.run.get("entry") or {}).get("kind") == "function" and not reruns_script(recorded):
        same = [r for r in top if r.run.get("name") == recorded.run.get("name")]
        return same[0] if same else None
    return counterpart(recorded, top)


# -- the tracked runs made inside a run (a command's, a pool's) ----------------------------------

MAX_CHILD_DEPTH = 8


def child_runs(store: Store, parent_id: str) -> list[Manifest]:
    """The sealed runs nested directly in ``parent_id``, oldest first."""
    found = []
    for entry in store.entries(head=True):
        if entry.manifest is not None and entry.manifest.run.get("parent") == parent_id:
            found.append(entry.id)
    return [store.load(rid) for rid in sorted(found)]


def _child_key(m: Manifest) -> tuple[Any, str]:
    return m.run.get("name"), fingerprint(dict(m.params))


def pair_runs(
    recorded: list[Manifest], replayed: list[Manifest]
) -> list[tuple[Manifest | None, Manifest | None]]:
    """Recorded child runs paired with re-executed ones: same name and params, then the order
    they started in. Runs of pool workers finish in any order; their params tell them apart."""
    pending: dict[tuple[Any, str], list[Manifest]] = {}
    for r in sorted(replayed, key=lambda x: x.id):
        pending.setdefault(_child_key(r), []).append(r)
    pairs: list[tuple[Manifest | None, Manifest | None]] = []
    for a in sorted(recorded, key=lambda x: x.id):
        queue = pending.get(_child_key(a))
        pairs.append((a, queue.pop(0) if queue else None))
    pairs.extend((None, r) for queue in pending.values() for r in queue)
    return pairs


def child_label(m: Manifest, siblings: list[Manifest]) -> str:
    """``name`` or, when several siblings share the name, ``name#k`` (k: its place among them)."""
    name = m.run.get("name")
    same = [x.id for x in sorted(siblings, key=lambda x: x.id) if x.run.get("name") == name]
    return str(name) if len(same) == 1 else f"{name}#{same.index(m.id)}"


def compare_children(
    store: Store,
    recorded_parent: str,
    replayed_parent: str | None,
    replayed: list[Manifest],
    rtol: float,
    atol: float,
    prefix: str = "",
    depth: int = 0,
) -> list[dict[str, Any]]:
    """Compare every tracked run made inside ``recorded_parent`` (at any depth) with its
    counterpart made inside ``replayed_parent`` (among ``replayed``); one entry per child, each
    with a ``child`` label (``train#1/child#3``)."""
    if depth >= MAX_CHILD_DEPTH:
        return []
    rec = child_runs(store, recorded_parent)
    new = [r for r in replayed if replayed_parent and r.run.get("parent") == replayed_parent]
    out: list[dict[str, Any]] = []
    for a, b in pair_runs(rec, new):
        if a is None:
            assert b is not None
            label = prefix + child_label(b, new)
            out.append(
                {
                    "child": label,
                    "recorded": None,
                    "replayed": b.id,
                    "verdict": cmp.DIFFERENT,
                    "outputs": {
                        "run": {
                            "verdict": cmp.MISSING,
                            "detail": "made by the replay only, not by the recorded run",
                        }
                    },
                }
            )
            continue
        label = prefix + child_label(a, rec)
        compared = compare_runs(a, b, store, rtol, atol)
        compared["child"] = label
        out.append(compared)
        for shard in compare_ranks(store, a, b, rtol, atol):
            shard["child"] = f"{label}/{shard['child']}"
            out.append(shard)
        out.extend(
            compare_children(
                store, a.id, b.id if b else None, replayed, rtol, atol, label + "/", depth + 1
            )
        )
    return out


def compare_ranks(
    store: Store, recorded: Manifest, replayed: Manifest | None, rtol: float, atol: float
) -> list[dict[str, Any]]:
    """Each rank's shard of a distributed run compared with the same rank of its replay."""
    ranks = store.ranks_of(recorded)
    if ranks is None:
        return []
    again = store.ranks_of(replayed) if replayed is not None else None
    mine = {int(s.id.rsplit("-", 1)[1]): s.manifest for s in ranks["shards"]}
    theirs = {int(s.id.rsplit("-", 1)[1]): s.manifest for s in (again or {}).get("shards", [])}
    out = []
    for r in range(1, ranks["world_size"]):
        a, b = mine.get(r), theirs.get(r)
        if a is None and b is None:
            continue  # neither job made this call on rank r
        if a is None:
            out.append(
                {
                    "child": f"rank {r}",
                    "recorded": None,
                    "replayed": None,
                    "verdict": cmp.DIFFERENT,
                    "outputs": {
                        "run": {
                            "verdict": cmp.MISSING,
                            "detail": f"rank {r} made this run only in the replay",
                        }
                    },
                }
            )
            continue
        compared = compare_runs(a, b, store, rtol, atol)
        compared["recorded"] = f"{recorded.id}/rank-{r}"
        compared["replayed"] = f"{replayed.id}/rank-{r}" if replayed and b else None
        compared["child"] = f"rank {r}"
        out.append(compared)
    return out


def check_all_ranks(store: Store, m: Manifest) -> None:
    """NotReplayable when a distributed run lacks a rank: there is nothing to compare it with,
    and a verdict of "different" would blame the replay for what the recording lost."""
    ranks = store.ranks_of(m)
    if ranks is None:
        return
    if ranks["running"]:
        raise NotReplayable(m.id, f"rank(s) {ranks['running']} are still running")
    if ranks["missing"]:
        shown = ", ".join(str(r) for r in ranks["missing"])
        raise NotReplayable(
            m.id, f"rank {shown} left no shard (the process died): the recorded run is incomplete"
        )


def first_divergence(compared: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The earliest checkpoint at which any compared run (rank 0 first) parted from its record."""
    best: dict[str, Any] | None = None
    ranked = any(str(e.get("child", "")).startswith("rank ") for e in compared)
    for entry in compared:
        div = (entry.get("outputs", {}).get("checkpoints") or {}).get("first_divergence")
        if div is None:
            continue
        if best is None or div["index"] < best["index"]:
            best = dict(div, where=entry.get("child") or ("rank 0" if ranked else "the run"))
    return best


def _siblings(store: Store, m: Manifest) -> list[Manifest]:
    """The recorded runs of the same process at the same nesting level, in order."""
    token = m.run.get("process")
    if not token:
        return [m]
    out = []
    for entry in store.entries():
        other = entry.manifest
        if other is None or other.run.get("process") != token:
            continue
        if other.run.get("parent") == m.run.get("parent"):
            out.append(other)
    return sorted(out, key=lambda x: x.id)


def compare_runs(
    recorded: Manifest, replayed: Manifest | None, store: Store, rtol: float, atol: float
) -> dict[str, Any]:
    """Output-by-output comparison of one recorded run with its re-execution."""
    out: dict[str, Any] = {"recorded": recorded.id, "replayed": replayed.id if replayed else None}
    if replayed is None:
        out["verdict"] = cmp.DIFFERENT
        out["outputs"] = {"run": {"verdict": cmp.MISSING, "detail": "the replay created no run"}}
        return out
    outputs: dict[str, Any] = {}
    ra, rb = recorded.run, replayed.run
    if ra.get("status") != rb.get("status"):
        outputs["status"] = {
            "verdict": cmp.DIFFERENT,
            "detail": f"{ra.get('status')} -> {rb.get('status')}",
        }
    ea, eb = ra.get("error") or {}, rb.get("error") or {}
    if ea or eb:
        same = (ea.get("type"), ea.get("message")) == (eb.get("type"), eb.get("message"))
        outputs["error"] = (
            {"verdict": cmp.IDENTICAL}
            if same
            else {
                "verdict": cmp.DIFFERENT,
                "detail": f"{ea.get('type')}: {ea.get('message')} -> "
                f"{eb.get('type')}: {eb.get('message')}",
            }
        )
    oa, ob = recorded.outputs, replayed.outputs
    if "return" in oa or "return" in ob:
        outputs["return"] = cmp.compare_values(oa.get("return"), ob.get("return"), rtol, atol)
    folder_a, folder_b = store.folder_of(recorded), store.folder_of(replayed)
    metrics = cmp.compare_metrics(
        cmp.read_jsonl(folder_a / "metrics.jsonl"),
        cmp.read_jsonl(folder_b / "metrics.jsonl"),
        rtol,
        atol,
    )
    for name, result in metrics.items():
        outputs[f"metric {name}"] = result
    ckpt_a = cmp.read_jsonl(folder_a / "checkpoints.jsonl")
    ckpt_b = cmp.read_jsonl(folder_b / "checkpoints.jsonl")
    if ckpt_a or ckpt_b:
        outputs["checkpoints"] = cmp.compare_checkpoints(ckpt_a, ckpt_b, rtol, atol)
    files = cmp.compare_files(
        list(oa.get("artifacts") or []) + list(oa.get("declared") or []),
        list(ob.get("artifacts") or []) + list(ob.get("declared") or []),
        rtol,
        atol,
    )
    for path, result in files.items():
        outputs[f"file {path}"] = result
    if "exit_code" in oa or "exit_code" in ob:
        outputs["exit_code"] = cmp.compare_exit_codes(oa.get("exit_code"), ob.get("exit_code"))
    out["outputs"] = outputs
    out["verdict"] = cmp.worst([o["verdict"] for o in outputs.values()])
    return out


# -- causes --------------------------------------------------------------------------------------

_TIMESTAMPED = re.compile(
    r"(19|20)\d\d[-_]?[01]\d[-_]?[0-3]\d|\b1[6-9]\d{8}\b|tfevents|events\.out|\.log$", re.I
)


# Evidence first: what the records show changed (a param, a variable, a package), then seeds,
# then the machine (hardware, BLAS), then nondeterministic kernels, then guesses from names.
_INPUTS, _PARAMS_ENV, _SEEDS, _MACHINE, _KERNELS, _NAMES = range(6)
_UNCAPTURED = "an input the record does not capture"


def explain(
    recorded: list[Manifest],
    replayed: list[Manifest],
    compared: list[dict[str, Any]],
    drift: dict[str, Any],
    embedded: list[str] | None = None,
) -> list[str]:
    """Likely causes of a difference, most likely first, from the two records.

    ``embedded``: outputs found to contain the replay folder's path.
    """
    # Data that changed since the recording explains more than anything found below.
    causes: list[tuple[int, str]] = [(_INPUTS, c) for c in input_causes(drift.get("inputs") or [])]
    for path in embedded or []:
        causes.append(
            (
                _PARAMS_ENV,
                f"{path} contains the replay folder's path: the program writes where it runs "
                "(e.g. __file__ or os.getcwd()) into it, and a replay runs in another folder",
            )
        )
    for comp, a in zip(compared, recorded, strict=False):
        if comp["verdict"] == cmp.IDENTICAL:
            continue
        b = next((r for r in replayed if r.id == comp.get("replayed")), None)
        outputs = comp.get("outputs", {})
        params_changed = diff_mappings(a.params, b.params) if b is not None else []
        if params_changed:
            which = ", ".join(
                f"{d['key']} {short_value(d['a'])} -> {short_value(d['b'])}"
                for d in params_changed[:5]
            )
            causes.append(
                (
                    _PARAMS_ENV,
                    f"the re-executed run's own params differ ({which}): a param the program "
                    "reads from the environment, a file or the clock changed",
                )
            )
        div = (outputs.get("checkpoints") or {}).get("first_divergence")
        seeds_a = _seeded_libraries(a.seeds)
        seeds_b = _seeded_libraries(b.seeds) if b else seeds_a
        if div is not None and not params_changed and seeds_a == seeds_b:
            where = f"checkpoint {div['index']} ({div.get('name')})"
            causes.append(
                (
                    _SEEDS,
                    f"an RNG not under the seed's control (e.g. np.random.default_rng() without a "
                    f"seed, random.SystemRandom, os.urandom, uuid4) or another nondeterministic "
                    f"source: the runs agree until {where} with the same seeds"
                    if div["index"] > 0
                    else f"an RNG not under the seed's control, or nondeterministic input: the "
                    f"runs differ from the first checkpoint ({div.get('name')}) on",
                )
            )
        if seeds_a != seeds_b:
            causes.append(
                (
                    _SEEDS,
                    "the seeded libraries differ: recorded "
                    f"{sorted(seeds_a)}, replayed {sorted(seeds_b)}",
                )
            )
        if a.seeds.get("hash_randomization") and a.seeds.get("pythonhashseed") in (None, "random"):
            causes.append(
                (
                    _SEEDS,
                    "hash randomization was on in the recorded run (PYTHONHASHSEED unset): "
                    "iteration order of sets and str-keyed dicts built from sets may differ",
                )
            )
        torch_hw = a.hardware.get("torch") if isinstance(a.hardware, Mapping) else None
        if isinstance(torch_hw, Mapping) and torch_hw.get("cuda_available"):
            det = torch_hw.get("deterministic_algorithms")
            if not det:
                causes.append(
                    (
                        _KERNELS,
                        "CUDA without deterministic mode: cuDNN/cuBLAS kernels and atomics (e.g. "
                        "index_add_) may sum in a different order; record with deterministic=True",
                    )
                )
        changed_files = [
            k[len("file ") :]
            for k, v in outputs.items()
            if k.startswith("file ") and v["verdict"] != cmp.IDENTICAL
        ]
        timed = [p for p in changed_files if _TIMESTAMPED.search(p)]
        if timed:
            causes.append((_NAMES, "outputs that look time-dependent: " + ", ".join(timed)))
    if drift.get("variables"):
        changed = ", ".join(
            f"{d['key']} {short_value(d['a'])} -> {short_value(d['b'])}"
            for d in drift["variables"][:5]
        )
        causes.append((_PARAMS_ENV, f"numerics variables differ from the recording: {changed}"))
    if drift.get("packages"):
        imported = [p for p in drift["packages"] if p.get("imported")]
        shown = imported or drift["packages"]
        names = ", ".join(f"{p['name']} {p['recorded']} -> {p['now']}" for p in shown[:5])
        causes.append((_PARAMS_ENV, f"packages changed since the recording: {names}"))
    if drift.get("python"):
        py = drift["python"]
        causes.append((_PARAMS_ENV, f"Python changed: {py['recorded']} -> {py['now']}"))
    if drift.get("hardware"):
        keys = ", ".join(sorted({d["key"].split(".")[0] for d in drift["hardware"]}))
        causes.append((_MACHINE, f"hardware differs ({keys})"))
    if not causes and any(c["verdict"] == cmp.DIFFERENT for c in compared):
        causes.append(
            (
                _NAMES,
                _UNCAPTURED + ": a data file, an environment variable "
                "the program reads, the clock or the network (same code, params, seeds and "
                "environment as recorded)",
            )
        )
    ordered = [text for _rank, text in sorted(causes, key=lambda c: c[0])]  # stable
    return list(dict.fromkeys(ordered))  # without repeats, in order


def short_value(value: Any, limit: int = 40) -> str:
    """A value for a one-line cause, cut to ``limit`` characters."""
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


_EMBED_SCAN_BYTES = 16 * 1024 * 1024


def embedding_replay_folder(
    runs: list[dict[str, Any]], source: str, moved: Mapping[str, str] | None = None
) -> list[str]:
    """Differing output files (found under ``source``, or where ``moved`` put them) that
    contain ``source``'s own path."""
    needles = {os.fsencode(source), os.fsencode(os.path.realpath(source))}
    found = []
    for run in runs:
        for name, result in (run.get("outputs") or {}).items():
            if not name.startswith("file ") or result.get("verdict") != cmp.DIFFERENT:
                continue
            rel = name[len("file ") :]
            path = rel if os.path.isabs(rel) else os.path.join(source, *rel.split("/"))
            path = (moved or {}).get(os.path.normpath(path), path)
            try:
                if os.path.getsize(path) > _EMBED_SCAN_BYTES:
                    continue
                with open(path, "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            if any(n in data for n in needles):
                found.append(rel)
    return found


# -- the verb ------------------------------------------------------------------------------------


def made_elsewhere(m: Manifest) -> str | None:
    """Why run ``m`` counts as not made on this machine (its code may be someone else's), or
    None when this machine recorded it. A run that records no host (an older reprokit's)
    counts as made elsewhere: nothing says it was not."""
    hw = m.hardware if isinstance(m.hardware, Mapping) else {}
    host = hw.get("host")
    if not isinstance(host, str):
        return "it records no host (made by an older reprokit, or elsewhere)"
    if host != host_identity():
        return "it was recorded on another machine"
    return None


def sandbox_for(
    m: Manifest, sandbox: list[str] | bool | None, trust: bool
) -> tuple[list[str] | None, str]:
    """(the extra writable folders of a sandboxed replay, or None to run without one; what to
    tell the user). ``sandbox``: True or a list asks for one, False opts out, None decides: a
    run made elsewhere is sandboxed. Without a sandbox here, such a replay needs ``trust``."""
    if sandbox is False:
        return None, ""
    why_foreign = made_elsewhere(m) if sandbox is None else None
    if sandbox is None and why_foreign is None:
        return None, ""
    bwrap, why_not = sandbox_available()
    if bwrap is not None:
        extra = sandbox if isinstance(sandbox, list) else []
        said = f" ({why_foreign})" if why_foreign else ""
        return extra, f"bubblewrap: no network, host read-only{said}"
    if why_foreign is None:  # asked for explicitly
        raise NotReplayable(m.id, f"the sandbox is unavailable: {why_not}")
    if not trust:
        raise NotReplayable(
            m.id,
            f"{why_foreign}, so its replay runs in a sandbox, and there is no sandbox here "
            f"({why_not}): replay it with --trust (trust=True) if you trust its code, or "
            "install bubblewrap",
        )
    return None, f"none ({why_not}); {why_foreign}: running its code as trusted"


def replay(
    ref: str,
    *,
    store: Store | Path | str | None = None,
    rtol: float = 0.0,
    atol: float = 0.0,
    in_place: bool = False,
    keep: bool = False,
    params: Mapping[str, Any] | None = None,
    on_event: Callable[[str, Any], None] | None = None,
    stdout: Any = None,
    source_dir: str | None = None,
    python: str | None = None,
    data_root: str | os.PathLike[str] | list[str] | None = None,
    full_hash: bool = False,
    sandbox: list[str] | bool | None = None,
    trust: bool = False,
) -> ReplayReport:
    """Re-execute run ``ref`` from its recorded source and compare every output.

    Raises ``TamperedError`` for a run that fails verification, ``NotReplayable`` when the run
    cannot be re-executed here (an input missing among them). ``on_event(kind, data)`` hears
    "source", "inputs", "drift" and "running" as they happen; ``stdout`` is where the replayed
    program's output goes (default: stderr). Inputs outside the recorded source tree are looked
    up below ``data_root`` (default: the repository the replay runs in) and checked against
    their digests (through the store's stat cache; ``full_hash=True`` reads every byte); a list
    of folders is searched in order. ``sandbox`` (True, or a list of extra writable folders)
    runs the program inside bubblewrap: no network, the host read-only, writes only in the
    replay's folders; False runs it without; None (the default) sandboxes a run not recorded
    on this machine, and where there is no sandbox replays it only with ``trust=True``.
    """
    if rtol < 0 or atol < 0:
        raise ArgumentError("rtol" if rtol < 0 else "atol", "must not be negative")
    if data_root is not None and in_place:
        raise ArgumentError(
            "data_root",
            "cannot be combined with in_place: an in-place replay reads the inputs "
            "where the current tree has them",
        )
    st = Store.at(store)
    st.verify(ref)
    m = st.load(ref)
    report = _ReplayDraft(m.id)
    report.rtol, report.atol = rtol, atol
    replay_params = check_replayable(m, params or {})
    check_all_ranks(st, m)
    emit = on_event or (lambda kind, data: None)
    writable, said = sandbox_for(m, sandbox, trust)
    if said:
        emit("sandbox", said)

    scratch = tempfile.mkdtemp(prefix="reprokit-replay-")
    source = os.path.join(scratch, "source")
    try:
        if source_dir is not None:
            report.source = check_source_dir(m, source_dir, scratch)
            source = source_dir
        elif in_place:
            report.source = in_place_source(m)
            source = report.source["path"]
        else:
            report.source = rebuild_source(m, st, source, scratch)
            if keep:
                report.source["path"] = source
        emit("source", report.source)
        recorded = _siblings(st, m) if (m.run.get("entry") or {}).get("kind") == "script" else [m]
        inputs = inputs_needed(st, recorded)
        if inputs:
            root = resolve_data_roots(data_root, st, report.source["path"] if in_place else None)
            report.inputs = check_inputs(
                m.id, inputs, st, root, link_into=None if in_place else source, full_hash=full_hash
            )
            emit("inputs", report.inputs)
        report.drift = environment_drift(m, ran_with=child_env(m, st, "", None))
        if report.inputs.get("changed"):
            report.drift["inputs"] = report.inputs["changed"]
        emit("drift", report.drift)

        # Planned before the replay's own run starts: a run that cannot start leaves no record.
        cwd_planned = plan(m, source, replay_params)[2]
        # Declared outputs named by absolute paths are written in the replay's folders, never
        # over the user's files (in place, the current tree is where they belong).
        moved = {} if in_place else moved_outputs(m, source, os.path.join(scratch, "outside"))
        # In the sandbox the rebuilt tree appears where the recorded one lay (bubblewrap mounts
        # it there, in the sandbox only), so paths the program prints or writes are the same.
        tree_was = recorded_root(m)
        place_at = None
        if (
            writable is not None
            and not in_place
            and tree_was
            and can_place(tree_was, scratch)
            and not _links_into(source, report.inputs.get("linked") or [], tree_was)
        ):
            place_at = tree_was
            emit("sandbox", f"the rebuilt tree appears at {tree_was} inside the sandbox")
        # Elsewhere, paths into the recorded tree among the params and arguments are said as
        # the same paths in the rebuilt tree: the program writes there, not in the checkout.
        relocate = None
        run_params = replay_params
        if place_at is None and not in_place and tree_was and _relocatable(tree_was, source):
            relocate = tree_was
            if (m.run.get("entry") or {}).get("kind") == "function":
                run_params = relocated_values(replay_params, tree_was, source)
        changed = {
            k: {"recorded": lookup(m.params, k, None), "replayed": v}
            for k, v in replay_params.items()
            if k not in m.params or m.params[k] != v
        }
        changed = {k: v for k, v in changed.items() if k not in redacted_names(m)}
        report.changed_params = changed
        record = Run(
            "replay",
            params={"of": m.id, "rtol": rtol, "atol": atol, "in_place": in_place},
            store=st,
            entry={"kind": "replay", "of": m.id, "argv": redact_argv(list(sys.argv))[0]},
            seed=m.seeds.get("seed") if isinstance(m.seeds.get("seed"), int) else None,
            replay_of=m.id,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            record.start()
        if changed:
            record.log_params(changed={k: v["replayed"] for k, v in changed.items()})
        emit("running", {"cwd": cwd_planned, "changed_params": changed})
        try:
            code, new, cwd = execute(
                m,
                st,
                source,
                run_params,
                os.path.join(scratch, "runs.log"),
                parent=record.id,
                stdout=stdout,
                python=python,
                verified=bool(report.source.get("verified")),
                sandbox=None if writable is None else [*writable, scratch, str(st.root), source],
                read_only=read_only_paths(report.inputs),
                moved=moved,
                place_at=place_at,
                relocate=relocate,
            )
        except NotReplayable as exc:
            record.finish("failed", error=exc)
            raise
        report.exit_code = code
        _check_inputs_after(report, st, new, full_hash)
        kind = (m.run.get("entry") or {}).get("kind")
        explained: list[dict[str, Any]] = []
        children_new: list[Manifest] = []
        if kind == "command":
            replayed_m = _command_result(m, record, moved, source, code)
            report.runs = [dict(_compare_command(m, replayed_m, rtol, atol), replayed=record.id)]
            # The tracked runs the command made (its training functions, their pool workers'
            # calls) are its results too: compared one by one.
            report.runs.extend(compare_children(st, m.id, record.id, new, rtol, atol))
            # (a rank's shard is compared, but is no run of its own to explain)
            explained = [r for r in report.runs if r["recorded"] and "/" not in r["recorded"]]
            recorded = [m] + [st.load(r["recorded"]) for r in explained[1:]]
            children_new, new = new, []
        else:
            top = [r for r in new if r.run.get("replay_of") == m.id]
            if kind == "function" and len(top) == 1:
                # The child called the function once: that call is the counterpart, whatever
                # the recorded run's order in its own process (the 2nd call of a sweep...).
                pairs: list[tuple[Manifest, Manifest | None]] = [(m, top[0])]
            else:
                pairs = [(rec, replayed_run(rec, top)) for rec in recorded]
            for rec, again in pairs:
                report.runs.append(compare_runs(rec, again, st, rtol, atol))
                # The other ranks of a distributed run: shard by shard.
                report.runs.extend(compare_ranks(st, rec, again, rtol, atol))
            report.first_divergence = first_divergence(report.runs)
        if new:
            # torch and BLAS details exist only where the program imported them: compare the
            # recorded run with its re-execution's record.
            late = environment_drift(
                m, new[0].environment, new[0].hardware, hw_keys=_IMPORT_DEPENDENT
            ).get("hardware")
            if late:
                report.drift.setdefault("hardware", []).extend(late)
        report.verdict = cmp.worst([r["verdict"] for r in report.runs])
        if report.verdict == cmp.DIFFERENT:
            embedded = embedding_replay_folder(report.runs, source, moved)
            if kind == "command":
                purpose, fallback = _command_causes(m, changed)
                found = explain(recorded, children_new, explained, report.drift, embedded)
                if all(c.startswith(_UNCAPTURED) for c in found):
                    found = fallback + found  # nothing more specific is known
                report.causes = list(dict.fromkeys(purpose + found))
            else:
                report.causes = explain(recorded, new, report.runs, report.drift, embedded)
        elif report.verdict == cmp.WITHIN:
            report.causes = []
        problem = inputs_problem(report.inputs)
        if problem:
            report.causes = [problem, *report.causes]
        record.set_output("verdict", report.verdict)
        record.set_output(
            "compared",
            [
                {"recorded": r["recorded"], "replayed": r["replayed"], "verdict": r["verdict"]}
                | ({"child": r["child"]} if "child" in r else {})
                for r in report.runs
            ],
        )
        if report.causes:
            record.set_output("causes", report.causes)
        record.finish("completed", exit_code=code)
        report.replay_id = record.id
        return report.freeze()
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            shutil.rmtree(os.path.join(scratch, "odb"), ignore_errors=True)


def inputs_problem(inputs: Mapping[str, Any]) -> str | None:
    """Why a replay leaves its inputs in doubt (see ``ReplayReport.inputs_problem``)."""
    modified = inputs.get("modified_by_replay")
    if modified:
        return "; ".join(modified_causes(modified))
    refused = inputs.get("write_refused")
    if refused:
        return (
            f"the replayed program tried to write into a read-only input ({refused}); "
            "inputs are read-only at replay: replay it on a copy of the data (--data-root)"
        )
    return None


def _check_inputs_after(
    report: _ReplayDraft, st: Store, ran: list[Manifest], full_hash: bool
) -> None:
    """After the re-execution: an input it wrote into, or tried to where it was read-only."""
    if not report.inputs.get("located"):
        return
    modified = modified_inputs(report.inputs, st, full_hash=full_hash)
    if modified:
        report.inputs["modified_by_replay"] = modified
    for r in ran:
        error = r.run.get("error")
        message = str(error.get("message", "")) if isinstance(error, Mapping) else ""
        if "Read-only file system" in message:
            report.inputs["write_refused"] = message
            break


def _relocatable(tree_was: str, source: str) -> bool:
    """Whether paths into ``tree_was`` can be said as paths into ``source``: an absolute folder
    other than /, neither holding nor inside the rebuilt tree."""
    a, b = os.path.normpath(tree_was), os.path.normpath(source)
    if not os.path.isabs(a) or a == "/":
        return False
    return not (b == a or b.startswith(a + "/") or a.startswith(b + "/"))


def _links_into(source: str, linked: list[str], folder: str) -> bool:
    """Whether an input linked into the rebuilt tree points into ``folder`` (where the tree
    would be shown in the sandbox, hiding the data the link points at)."""
    for rel in linked:
        try:
            target = os.readlink(os.path.join(source, *rel.split("/")))
        except OSError:
            continue
        if target == folder or target.startswith(folder.rstrip("/") + "/"):
            return True
    return False


def redacted_names(m: Manifest) -> set[str]:
    return set(m.run.get("redacted_params") or [])


def _command_causes(m: Manifest, changed: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Likely causes of a recorded command's difference, from what its record says: (the
    params this replay changed on purpose, what is left when nothing more specific is known)."""
    purpose = []
    if changed:
        shown = ", ".join(
            f"{k} {v['recorded']!r} -> {v['replayed']!r}" for k, v in sorted(changed.items())
        )
        purpose.append(f"this replay changed params on purpose: {shown}")
    causes: list[str] = []
    seeds = m.seeds
    if seeds.get("seeded_in") == "child":
        if not changed:
            causes.append(
                "an RNG not under the seed's control (e.g. np.random.default_rng() without a "
                "seed, random.SystemRandom, os.urandom, uuid4), the clock, or input that "
                "changed: the program was seeded with the recorded seed both times"
            )
    elif seeds.get("seeded_in") == "none":
        causes.append(
            "the command's program was not seeded by reprokit (not a Python program, or its "
            "start-up hook did not run): only PYTHONHASHSEED and $REPROKIT_SEED reached it"
        )
    return purpose, causes


def _command_result(
    m: Manifest, record: Any, moved: Mapping[str, str], source: str, exit_code: int
) -> dict[str, Any]:
    declared = []
    for o in m.outputs.get("declared") or []:
        path = str(o.get("path") or "")
        where = moved.get(os.path.normpath(path)) if os.path.isabs(path) else None
        found = describe_declared([where or path], source)
        for rec in found:  # named as recorded, wherever the replay wrote it
            rec["path"] = path
        declared.extend(found)
    record.set_output("declared", declared)
    return {"exit_code": exit_code, "declared": declared}


def _compare_command(
    m: Manifest, replayed: dict[str, Any], rtol: float, atol: float
) -> dict[str, Any]:
    outputs: dict[str, Any] = {}
    outputs["exit_code"] = cmp.compare_exit_codes(m.outputs.get("exit_code"), replayed["exit_code"])
    files = cmp.compare_files(
        list(m.outputs.get("declared") or []), replayed["declared"], rtol, atol
    )
    for path, result in files.items():
        outputs[f"file {path}"] = result
    return {
        "recorded": m.id,
        "replayed": None,
        "outputs": outputs,
        "verdict": cmp.worst([o["verdict"] for o in outputs.values()]),
    }
