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

import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from reprokit._capture.environment import capture_environment
from reprokit._capture.hardware import capture_hardware
from reprokit._model import compare as cmp
from reprokit._model.compare import diff_mappings
from reprokit._model.errors import NotReplayable, ReprokitError
from reprokit._model.manifest import Manifest, as_mapping
from reprokit._model.redact import redact_argv
from reprokit._record.outputs import describe_output
from reprokit._record.run import Run
from reprokit._reexec.execute import check_replayable, execute, plan
from reprokit._reexec.source import check_source_dir, in_place_source, rebuild_source
from reprokit._store.store import Store


class ReplayReport:
    """The verdict of a replay, with everything that led to it. ``to_dict()`` is the JSON form."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.replay_id: str | None = None
        self.verdict = cmp.IDENTICAL
        self.rtol = 0.0
        self.atol = 0.0
        self.source: dict[str, Any] = {}
        self.drift: dict[str, Any] = {}
        self.runs: list[dict[str, Any]] = []  # one entry per compared run
        self.causes: list[str] = []
        self.exit_code: int | None = None

    @property
    def identical(self) -> bool:
        """True when every output is identical or within the tolerance."""
        return self.verdict in (cmp.IDENTICAL, cmp.WITHIN)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "run": self.run_id,
            "replay": self.replay_id,
            "verdict": self.verdict,
            "tolerance": {"rtol": self.rtol, "atol": self.atol},
            "source": self.source,
            "drift": self.drift,
            "runs": self.runs,
            "causes": self.causes,
        }


# -- environment drift ---------------------------------------------------------------------------


# What a process reports only when it imported torch/numpy: compared against the replayed run's
# own record (after it ran), never against the replaying process, which imported neither.
_IMPORT_DEPENDENT = ("torch", "blas")


def environment_drift(
    m: Manifest,
    env_now: Mapping[str, Any] | None = None,
    hw_now: Mapping[str, Any] | None = None,
    hw_keys: tuple[str, ...] = ("cpu", "gpus"),
) -> dict[str, Any]:
    """What changed between the recorded environment and hardware and this machine's."""
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
    hw = diff_mappings({k: hw_then.get(k) for k in hw_keys}, {k: hw_now.get(k) for k in hw_keys})
    if hw:
        drift["hardware"] = hw
    # Replay sets PYTHONHASHSEED for the re-execution itself: not a drift of this machine.
    then_vars = {
        k: v for k, v in (env_then.get("variables") or {}).items() if k != "PYTHONHASHSEED"
    }
    now_vars = {k: v for k, v in (env_now.get("variables") or {}).items() if k != "PYTHONHASHSEED"}
    variables = diff_mappings(then_vars, now_vars)
    if variables:
        drift["variables"] = variables
    return drift


def counterpart(recorded: Manifest, candidates: list[Manifest]) -> Manifest | None:
    """The re-executed run that corresponds to ``recorded``: same name, same order in its
    process."""
    for r in candidates:
        if r.run.get("name") == recorded.run.get("name") and r.run.get("ordinal") == (
            recorded.run.get("ordinal")
        ):
            return r
    return None


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
    folder_a, folder_b = store.runs / recorded.id, store.runs / replayed.id
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
        div = cmp.first_divergence(ckpt_a, ckpt_b, rtol, atol)
        outputs["checkpoints"] = (
            {"verdict": cmp.IDENTICAL, "count": len(ckpt_a)}
            if div is None
            else {"verdict": cmp.DIFFERENT, "first_divergence": div, "count": len(ckpt_a)}
        )
    files = cmp.compare_files(
        list(oa.get("artifacts") or []) + list(oa.get("declared") or []),
        list(ob.get("artifacts") or []) + list(ob.get("declared") or []),
    )
    for path, result in files.items():
        outputs[f"file {path}"] = result
    if "exit_code" in oa or "exit_code" in ob:
        same = oa.get("exit_code") == ob.get("exit_code")
        outputs["exit_code"] = {
            "verdict": cmp.IDENTICAL if same else cmp.DIFFERENT,
            "recorded": oa.get("exit_code"),
            "replayed": ob.get("exit_code"),
        }
    out["outputs"] = outputs
    out["verdict"] = cmp.worst([o["verdict"] for o in outputs.values()])
    return out


# -- causes --------------------------------------------------------------------------------------

_TIMESTAMPED = re.compile(
    r"(19|20)\d\d[-_]?[01]\d[-_]?[0-3]\d|\b1[6-9]\d{8}\b|tfevents|events\.out|\.log$", re.I
)


def explain(
    recorded: list[Manifest],
    replayed: list[Manifest],
    compared: list[dict[str, Any]],
    drift: dict[str, Any],
) -> list[str]:
    """Likely causes of a difference, most likely first, from the two records."""
    causes: list[str] = []
    for comp, a in zip(compared, recorded, strict=False):
        if comp["verdict"] == cmp.IDENTICAL:
            continue
        b = next((r for r in replayed if r.id == comp.get("replayed")), None)
        outputs = comp.get("outputs", {})
        div = (outputs.get("checkpoints") or {}).get("first_divergence")
        seeds_a = set((a.seeds.get("seeded") or {}).keys())
        seeds_b = set((b.seeds.get("seeded") or {}).keys()) if b else seeds_a
        if div is not None:
            where = f"checkpoint {div['index']} ({div.get('name')})"
            if seeds_a == seeds_b:
                causes.append(
                    f"an RNG not under the seed's control (e.g. np.random.default_rng() without a "
                    f"seed, random.SystemRandom, os.urandom, uuid4) or another nondeterministic "
                    f"source: the runs agree until {where} with the same seeds"
                    if div["index"] > 0
                    else f"an RNG not under the seed's control, or nondeterministic input: the "
                    f"runs differ from the first checkpoint ({div.get('name')}) on"
                )
        if seeds_a != seeds_b:
            causes.append(
                "the seeded libraries differ: recorded "
                f"{sorted(seeds_a)}, replayed {sorted(seeds_b)}"
            )
        if a.seeds.get("hash_randomization") and a.seeds.get("pythonhashseed") in (None, "random"):
            causes.append(
                "hash randomization was on in the recorded run (PYTHONHASHSEED unset): iteration "
                "order of sets and str-keyed dicts built from sets may differ"
            )
        torch_hw = a.hardware.get("torch") if isinstance(a.hardware, Mapping) else None
        if isinstance(torch_hw, Mapping) and torch_hw.get("cuda_available"):
            det = torch_hw.get("deterministic_algorithms")
            if not det:
                causes.append(
                    "CUDA without deterministic mode: cuDNN/cuBLAS kernels and atomics (e.g. "
                    "index_add_) may sum in a different order; record with deterministic=True"
                )
        changed_files = [
            k[len("file ") :]
            for k, v in outputs.items()
            if k.startswith("file ") and v["verdict"] != cmp.IDENTICAL
        ]
        timed = [p for p in changed_files if _TIMESTAMPED.search(p)]
        if timed:
            causes.append("outputs that look time-dependent: " + ", ".join(timed))
    if drift.get("packages"):
        imported = [p for p in drift["packages"] if p.get("imported")]
        shown = imported or drift["packages"]
        names = ", ".join(f"{p['name']} {p['recorded']} -> {p['now']}" for p in shown[:5])
        causes.append(f"packages changed since the recording: {names}")
    if drift.get("python"):
        causes.append(f"Python changed: {drift['python']['recorded']} -> {drift['python']['now']}")
    if drift.get("hardware"):
        keys = ", ".join(sorted({d["key"].split(".")[0] for d in drift["hardware"]}))
        causes.append(f"hardware differs ({keys})")
    return list(dict.fromkeys(causes))  # without repeats, in order


# -- the verb ------------------------------------------------------------------------------------


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
) -> ReplayReport:
    """Re-execute run ``ref`` from its recorded source and compare every output.

    Raises ``TamperedError`` for a run that fails verification, ``NotReplayable`` when the run
    cannot be re-executed here. ``on_event(kind, data)`` hears "source", "drift" and "running"
    as they happen; ``stdout`` is where the replayed program's output goes (default: stderr).
    """
    if rtol < 0 or atol < 0:
        raise ReprokitError("--rtol and --atol must not be negative")
    st = Store.at(store)
    st.verify(ref)
    m = st.load(ref)
    report = ReplayReport(m.id)
    report.rtol, report.atol = rtol, atol
    replay_params = check_replayable(m, params or {})
    emit = on_event or (lambda kind, data: None)

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
        report.drift = environment_drift(m)
        emit("drift", report.drift)

        recorded = _siblings(st, m) if (m.run.get("entry") or {}).get("kind") == "script" else [m]
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
        emit("running", {"cwd": plan(m, source, replay_params)[2]})
        try:
            code, new, cwd = execute(
                m,
                st,
                source,
                replay_params,
                os.path.join(scratch, "runs.log"),
                parent=record.id,
                stdout=stdout,
                python=python,
                verified=bool(report.source.get("verified")),
            )
        except NotReplayable as exc:
            record.finish("failed", error=exc)
            raise
        report.exit_code = code
        kind = (m.run.get("entry") or {}).get("kind")
        if kind == "command":
            replayed_m = _command_result(m, record, cwd, source, code)
            report.runs = [_compare_command(m, replayed_m, rtol, atol)]
            new = []
        else:
            top = [r for r in new if r.run.get("replay_of") == m.id]
            if kind == "function" and len(top) == 1:
                # The child called the function once: that call is the counterpart, whatever
                # the recorded run's order in its own process (the 2nd call of a sweep...).
                pairs = [(m, top[0])]
            else:
                pairs = [(rec, counterpart(rec, top)) for rec in recorded]
            for rec, again in pairs:
                report.runs.append(compare_runs(rec, again, st, rtol, atol))
        if new:
            # torch and BLAS details exist only where the program imported them: compare the
            # recorded run with its re-execution's record.
            late = environment_drift(
                m, new[0].environment, new[0].hardware, hw_keys=_IMPORT_DEPENDENT
            ).get("hardware")
            if late:
                report.drift.setdefault("hardware", []).extend(late)
        report.verdict = cmp.worst([r["verdict"] for r in report.runs])
        if report.verdict != cmp.IDENTICAL and report.verdict != cmp.WITHIN:
            report.causes = explain(recorded, new, report.runs, report.drift)
        elif report.verdict == cmp.WITHIN:
            report.causes = []
        record.set_output("verdict", report.verdict)
        record.set_output(
            "compared",
            [
                {"recorded": r["recorded"], "replayed": r["replayed"], "verdict": r["verdict"]}
                for r in report.runs
            ],
        )
        if report.causes:
            record.set_output("causes", report.causes)
        record.finish("completed", exit_code=code)
        report.replay_id = record.id
        return report
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            shutil.rmtree(os.path.join(scratch, "odb"), ignore_errors=True)


def _command_result(
    m: Manifest, record: Any, cwd: str, source: str, exit_code: int
) -> dict[str, Any]:
    declared = []
    for out in m.outputs.get("declared") or []:
        rel = out.get("path")
        path = Path(source, *str(rel).split("/")) if rel and not os.path.isabs(rel) else Path(rel)
        if path.exists():
            declared.append(describe_output(path, Path(source)))
        else:
            declared.append({"path": rel, "missing": True})
    record.set_output("declared", declared)
    return {"exit_code": exit_code, "declared": declared}


def _compare_command(
    m: Manifest, replayed: dict[str, Any], rtol: float, atol: float
) -> dict[str, Any]:
    outputs: dict[str, Any] = {}
    same = m.outputs.get("exit_code") == replayed["exit_code"]
    outputs["exit_code"] = {
        "verdict": cmp.IDENTICAL if same else cmp.DIFFERENT,
        "recorded": m.outputs.get("exit_code"),
        "replayed": replayed["exit_code"],
    }
    files = cmp.compare_files(list(m.outputs.get("declared") or []), replayed["declared"])
    for path, result in files.items():
        outputs[f"file {path}"] = result
    return {
        "recorded": m.id,
        "replayed": None,
        "outputs": outputs,
        "verdict": cmp.worst([o["verdict"] for o in outputs.values()]),
    }
