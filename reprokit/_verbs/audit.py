"""Determinism audits and seed-robustness reports, built on replay's re-execution.

``check``: execute a run (or any command) N times with identical seeds and say, per output,
whether the executions agree, where they first diverged and what is likely to blame.
``seeds`` / ``across_seeds``: execute a run under N different seeds and summarise each result
(mean, standard deviation, min, max, 95 % confidence interval, coefficient of variation), so a
result can be told apart from luck.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reprokit._capture.pycommand import python_program
from reprokit._model import compare as cmp
from reprokit._model.errors import ArgumentError, ReprokitError
from reprokit._model.manifest import Manifest
from reprokit._model.protocol import ChildProtocol
from reprokit._model.report import Report, json_name
from reprokit._record.api import inspect_unwrap
from reprokit._record.bootstrap import bootstrap_env
from reprokit._record.outputs import describe_declared, describe_value
from reprokit._record.process import STATE
from reprokit._reexec.execute import check_replayable, execute, new_runs
from reprokit._reexec.inputs import make_inputs_available
from reprokit._reexec.source import rebuild_source
from reprokit._seeding import check_seed, draw_seed, set_sweep_seed
from reprokit._store.store import Store
from reprokit._verbs.replay import (
    check_all_ranks,
    child_label,
    child_runs,
    compare_children,
    compare_ranks,
    compare_runs,
    counterpart,
    explain,
    pair_runs,
    replayed_run,
    sandbox_for,
)

# Two-sided 95 % quantiles of Student's t, t(0.975, df); between rows interpolated in 1/df.
_T975 = {
    1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 6: 2.4469, 7: 2.3646, 8: 2.3060,
    9: 2.2622, 10: 2.2281, 11: 2.2010, 12: 2.1788, 13: 2.1604, 14: 2.1448, 15: 2.1314,
    16: 2.1199, 17: 2.1098, 18: 2.1009, 19: 2.0930, 20: 2.0860, 21: 2.0796, 22: 2.0739,
    23: 2.0687, 24: 2.0639, 25: 2.0595, 26: 2.0555, 27: 2.0518, 28: 2.0484, 29: 2.0452,
    30: 2.0423, 40: 2.0211, 50: 2.0086, 60: 2.0003, 80: 1.9901, 100: 1.9840, 120: 1.9799,
}  # fmt: skip
_Z975 = 1.959964


def t975(df: int) -> float:
    """Student's t quantile for a two-sided 95 % interval with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError("df must be at least 1")
    if df in _T975:
        return _T975[df]
    keys = sorted(_T975)
    if df > keys[-1]:
        lo, hi, t_lo, t_hi = keys[-1], math.inf, _T975[keys[-1]], _Z975
    else:
        hi = next(k for k in keys if k > df)
        lo = max(k for k in keys if k < df)
        t_lo, t_hi = _T975[lo], _T975[hi]
    # Linear in 1/df: exact at both ends, within 1e-3 in between.
    x, x_lo, x_hi = 1 / df, 1 / lo, (0.0 if math.isinf(hi) else 1 / hi)
    return t_hi + (t_lo - t_hi) * (x - x_hi) / (x_lo - x_hi)


def summarize(values: list[float]) -> dict[str, Any]:
    """n, mean, std (n-1), min, max, 95 % CI of the mean (Student t), coefficient of variation."""
    n = len(values)
    out: dict[str, Any] = {"n": n, "values": values}
    if n == 0:
        return out
    mean = sum(values) / n
    out.update({"mean": mean, "min": min(values), "max": max(values)})
    if n > 1:
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        half = t975(n - 1) * std / math.sqrt(n)
        out.update(
            {
                "std": std,
                "ci95": [mean - half, mean + half],
                "cv": std / abs(mean) if mean else (math.inf if std else 0.0),
            }
        )
    else:
        out.update({"std": None, "ci95": None, "cv": None})
    return out


_CLAIM = re.compile(r"^\s*([^<>=!\s]+)\s*(>=|<=|>|<)\s*([-+0-9.eE]+|nan|inf)\s*$")


def parse_claim(text: str) -> tuple[str, str, float]:
    """``"acc>=0.9"`` -> ("acc", ">=", 0.9); ReprokitError for anything else."""
    m = _CLAIM.match(text)
    if not m:
        raise ArgumentError("claims", f"expects NAME>=VALUE (or <=, >, <), got {text!r}")
    try:
        return m.group(1), m.group(2), float(m.group(3))
    except ValueError:
        raise ArgumentError("claims", f"has a value that is not a number: {m.group(3)!r}") from None


def claim_key(name: str, results: Mapping[str, Any], missing: str) -> str:
    """The result a claim's ``name`` refers to: the name itself, else ``metric NAME``, else
    ``return.NAME``; ArgumentError (saying ``missing``) when there is none."""
    for key in (name, f"metric {name}", f"return.{name}"):
        if key in results:
            return key
    raise ArgumentError(
        "claims",
        f"names {name!r}, which {missing} (results: {', '.join(sorted(results)) or 'none'})",
    )


def judge_claim(summary: dict[str, Any], op: str, value: float) -> dict[str, Any]:
    """Whether every seed, and the 95 % interval of the mean, satisfy ``result op value``."""
    ok = {
        ">=": lambda x: x >= value,
        "<=": lambda x: x <= value,
        ">": lambda x: x > value,
        "<": lambda x: x < value,
    }[op]
    vals = summary.get("values") or []
    failing = [v for v in vals if not ok(v)]
    ci = summary.get("ci95")
    bound = None if ci is None else (ci[0] if op in (">=", ">") else ci[1])
    ci_holds = bound is not None and ok(bound)
    margin = abs(summary["mean"] - value) if "mean" in summary else None
    half = (ci[1] - ci[0]) / 2 if ci else None
    return {
        "claim": f"{op} {value}",
        "seeds_failing": len(failing),
        "ci_holds": ci_holds,
        "spread_exceeds_margin": bool(half is not None and margin is not None and half > margin),
        "verdict": "robust" if ci_holds and not failing else "not robust",
    }


def results_of(m: Manifest) -> dict[str, float]:
    """The numbers a run produced: its return value (a number, or a mapping's numbers) and the
    last value of each metric."""
    out: dict[str, float] = {}
    ret = m.outputs.get("return") or {}
    value = ret.get("value")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        out["return"] = float(value)
    elif isinstance(value, Mapping):
        for key, v in value.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[f"return.{key}"] = float(v)
    for name, series in (m.outputs.get("metrics") or {}).items():
        last = series.get("last") if isinstance(series, Mapping) else None
        if isinstance(last, (int, float)) and not isinstance(last, bool):
            out[f"metric {name}"] = float(last)
    return out


def results_of_children(children: list[Manifest]) -> dict[str, float]:
    """The numbers the tracked runs inside a command produced, as ``results_of`` names them;
    a name two runs share is prefixed with each run's label (``train#1.return``)."""
    ordered = sorted(children, key=lambda c: c.id)
    per = [(child_label(c, ordered), results_of(c)) for c in ordered]
    counts: dict[str, int] = {}
    for _label, found in per:
        for key in found:
            counts[key] = counts.get(key, 0) + 1
    out: dict[str, float] = {}
    for label, found in per:
        for key, value in found.items():
            out[key if counts[key] == 1 else f"{label}.{key}"] = value
    return out


# -- reports -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckReport(Report):
    """Whether N executions with identical seeds agreed, output by output."""

    JSON_PROPERTIES = ("deterministic",)

    target: str
    n: int = field(metadata={"json": "executions"})
    seed: int | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    first_divergence: dict[str, Any] | None = None
    suspects: list[str] = field(default_factory=list)
    # Each execution: its exit code and the runs it sealed.
    executions: list[dict[str, Any]] = json_name("runs", default_factory=list)

    @property
    def deterministic(self) -> bool:
        return all(o["verdict"] == cmp.IDENTICAL for o in self.outputs.values())


class _CheckDraft:
    def __init__(self, target: str, n: int) -> None:
        self.target = target
        self.n = n
        self.seed: int | None = None
        self.executions: list[dict[str, Any]] = []
        self.outputs: dict[str, dict[str, Any]] = {}
        self.first_divergence: dict[str, Any] | None = None
        self.suspects: list[str] = []

    @property
    def deterministic(self) -> bool:
        return all(o["verdict"] == cmp.IDENTICAL for o in self.outputs.values())

    def freeze(self) -> CheckReport:
        return CheckReport(
            target=self.target,
            n=self.n,
            seed=self.seed,
            outputs=self.outputs,
            first_divergence=self.first_divergence,
            suspects=self.suspects,
            executions=self.executions,
        )


@dataclass(frozen=True)
class SeedReport(Report):
    """A result under several seeds: per result, the spread and whether claims hold."""

    target: str
    seeds: list[int]
    group: str | None = None
    runs: list[str | None] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    claims: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Why the sweep proves nothing about seeds (the seed did not reach the program, or the
    # executions came out identical); None when the seeds did vary the executions.
    nothing_varied: str | None = None
    # Results whose value was the same under every seed while other outputs varied: the seed
    # did not reach them (a hard-coded seed in the code that computes them). A claim on one is
    # refused like a sweep in which nothing varied.
    unvaried: dict[str, str] = field(default_factory=dict)

    @property
    def robust(self) -> bool:
        return self.nothing_varied is None and all(
            c["verdict"] == "robust" for c in self.claims.values()
        )

    @property
    def refused(self) -> str | None:
        """Why the sweep cannot support a robustness claim (None: it can)."""
        if self.nothing_varied:
            return self.nothing_varied
        reasons = [c["reason"] for c in self.claims.values() if c["verdict"] == "undetermined"]
        return "; ".join(reasons) or None


class _SeedDraft:
    def __init__(self, target: str, seeds: list[int]) -> None:
        self.target = target
        self.seeds = seeds
        self.group: str | None = None
        self.runs: list[str | None] = []
        self.results: dict[str, dict[str, Any]] = {}
        self.claims: dict[str, dict[str, Any]] = {}
        self.nothing_varied: str | None = None
        self.unvaried: dict[str, str] = {}

    def freeze(self) -> SeedReport:
        return SeedReport(
            target=self.target,
            seeds=self.seeds,
            group=self.group,
            runs=self.runs,
            results=self.results,
            claims=self.claims,
            nothing_varied=self.nothing_varied,
            unvaried=self.unvaried,
        )


def _merge(outputs: dict[str, dict[str, Any]], compared: dict[str, Any]) -> None:
    for name, result in compared.get("outputs", {}).items():
        prev = outputs.get(name)
        if prev is None or cmp.worst([prev["verdict"], result["verdict"]]) != prev["verdict"]:
            outputs[name] = result


def check(
    ref: str | None = None,
    *,
    command: list[str] | None = None,
    n: int = 2,
    outputs: Iterable[str] = (),
    seed: int | None = None,
    store: Store | Path | str | None = None,
    stdout: Any = None,
    on_event: Callable[[str, Any], None] | None = None,
    sandbox: bool | None = None,
    trust: bool = False,
) -> CheckReport:
    """Execute a run (``ref``) or a ``command`` ``n`` times with identical seeds and compare.

    The executions are recorded as runs of one group; nothing is compared with the original
    record (that is ``replay``): only the executions with each other. ``on_event(kind, i)``
    hears ``"executing"`` before and ``"executed"`` after execution ``i`` (from 0).
    ``sandbox`` and ``trust`` as ``replay`` takes them (a run made on another machine runs in
    the sandbox).
    """
    emit = on_event or (lambda kind, data: None)
    if n < 2:
        raise ReprokitError("a determinism check needs at least 2 executions (-n 2)")
    if (ref is None) == (command is None):
        raise ReprokitError("check needs a run or a command (reprokit check -- CMD ...)")
    st = Store.at(store)
    group = "check-" + os.urandom(4).hex()
    scratch = tempfile.mkdtemp(prefix="reprokit-check-")
    try:
        runs: list[list[Manifest]] = []
        everything: list[list[Manifest]] = []  # every run each execution sealed (nested too)
        files: list[list[dict[str, Any]]] = []
        texts: list[dict[str, bytes]] = []  # each execution's small text outputs, to diff
        codes: list[int] = []
        if ref is not None:
            st.verify(ref)
            m = st.load(ref)
            report = _CheckDraft(m.id, n)
            params = check_replayable(m, {})
            check_all_ranks(st, m)
            writable = sandbox_for(m, sandbox, trust)[0]
            source = os.path.join(scratch, "source")
            rebuild_source(m, st, source, scratch)
            make_inputs_available(m, st, source)
            report.seed = m.seeds.get("seed")
            for i in range(n):
                emit("executing", i)
                code, new, cwd = execute(
                    m,
                    st,
                    source,
                    params,
                    os.path.join(scratch, f"runs{i}.log"),
                    parent=None,
                    protocol=ChildProtocol(group=group),
                    stdout=stdout,
                    sandbox=None if writable is None else [*writable, scratch, str(st.root)],
                )
                codes.append(code)
                everything.append(new)
                runs.append([r for r in new if r.run.get("replay_of") == m.id])
                files.append(_hash_declared(m.outputs.get("declared") or [], source))
                texts.append(_text_of(files[-1], source))
                emit("executed", i)
        else:
            assert command is not None
            if not command:
                raise ReprokitError("nothing to check: give a command after --")
            report = _CheckDraft(" ".join(command), n)
            report.seed = check_seed(seed) if seed is not None else draw_seed()
            for i in range(n):
                log = os.path.join(scratch, f"runs{i}.log")
                env = ChildProtocol(
                    seed=report.seed, run_log=log, group=group, store=st.address
                ).child_env()
                env["PYTHONHASHSEED"] = str(report.seed)
                program = python_program(command)
                if program is not None:
                    # Seeded as `reprokit run` seeds it: by the start-up hook.
                    bootstrap_env(env, os.path.join(scratch, f"child{i}"), program)
                emit("executing", i)
                try:
                    proc = subprocess.run(
                        command, env=env, stdout=stdout if stdout is not None else sys.stderr
                    )
                except OSError as exc:
                    raise ReprokitError(f"cannot run {command[0]!r}: {exc.strerror}") from None
                codes.append(proc.returncode)
                new = new_runs(st, log)
                everything.append(new)
                runs.append([r for r in new if not r.run.get("parent")])
                declared = [{"path": p} for p in outputs]
                files.append(_hash_declared(declared, os.getcwd()))
                texts.append(_text_of(files[-1], os.getcwd()))
                emit("executed", i)
        first = runs[0]
        compared_all: list[dict[str, Any]] = []
        for i in range(1, n):
            _merge(
                report.outputs,
                {"outputs": {"exit_code": cmp.compare_exit_codes(codes[0], codes[i])}},
            )
            for path, result in cmp.compare_files(files[0], files[i]).items():
                line = first_line_difference(texts[0].get(path), texts[i].get(path))
                if line and result["verdict"] == cmp.DIFFERENT:
                    result = dict(result, first_line=line, detail=_line_detail(line))
                _merge(report.outputs, {"outputs": {f"file {path}": result}})
            for a, b in _pairs(first, runs[i], by_process=ref is not None):
                if a is None:
                    assert b is not None
                    _merge(
                        report.outputs,
                        {"outputs": {f"{child_label(b, runs[i])} run": _extra_run(b)}},
                    )
                    continue
                compared = compare_runs(a, b, st, 0.0, 0.0)
                compared_all.append(compared)
                label = child_label(a, first)
                prefix = f"{label} " if len(first) > 1 else ""
                nested = compare_children(st, a.id, b.id if b else None, everything[i], 0.0, 0.0)
                nested.extend(compare_ranks(st, a, b, 0.0, 0.0))  # a distributed run's ranks
                _merge(
                    report.outputs,
                    {"outputs": {prefix + k: v for k, v in compared["outputs"].items()}},
                )
                for child in nested:
                    _merge(
                        report.outputs,
                        {
                            "outputs": {
                                f"{label}/{child['child']} {k}": v
                                for k, v in child["outputs"].items()
                            }
                        },
                    )
                for where, result in [(label, compared)] + [
                    (f"{label}/{c['child']}", c) for c in nested
                ]:
                    div = (result["outputs"].get("checkpoints") or {}).get("first_divergence")
                    if div and (
                        report.first_divergence is None
                        or div["index"] < report.first_divergence["index"]
                    ):
                        report.first_divergence = dict(div, run=where)
        report.executions = [
            {"exit_code": codes[i], "runs": [r.id for r in runs[i]]} for i in range(n)
        ]
        if not report.deterministic:
            others = [r for rs in runs[1:] for r in rs]
            report.suspects = explain(first * (n - 1), others, compared_all, {})
            report.suspects.extend(_thread_suspects(first))
            changed = [
                k[len("file ") :]
                for k, v in report.outputs.items()
                if k.startswith("file ") and v["verdict"] != cmp.IDENTICAL
            ]
            if changed:
                report.suspects.append(
                    "files that differ between identical executions: "
                    + ", ".join(changed)
                    + " (time-dependent content such as timestamps, unseeded randomness, or "
                    "thread timing)"
                )
        return report.freeze()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _pairs(
    first: list[Manifest], other: list[Manifest], by_process: bool
) -> list[tuple[Manifest | None, Manifest | None]]:
    """The runs of two executions side by side. One process re-run: by name and order; runs
    from several processes (a command's pool workers): by name, params and order."""
    if by_process and len({r.run.get("process") for r in first}) <= 1:
        return [(a, counterpart(a, other)) for a in first]
    return pair_runs(first, other)


def _extra_run(b: Manifest) -> dict[str, Any]:
    return {
        "verdict": cmp.MISSING,
        "detail": f"run {b.id} was made by a later execution only",
    }


def _thread_suspects(runs: list[Manifest]) -> list[str]:
    out = []
    for m in runs:
        variables = m.environment.get("variables") or {}
        if not any(k in variables for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")):
            hw = m.hardware if isinstance(m.hardware, Mapping) else {}
            if hw.get("blas") or hw.get("torch"):
                out.append(
                    "thread-count-dependent reductions: OMP_NUM_THREADS/MKL_NUM_THREADS are "
                    "unset, so parallel BLAS or torch CPU sums may split work differently"
                )
                break
    return out


_TEXT_BYTES = 1024 * 1024


def _text_of(described: list[dict[str, Any]], base: str) -> dict[str, bytes]:
    """The content of each described output file (folder members too) up to 1 MB, by the path
    ``compare_files`` names it with: later executions overwrite the files."""
    out: dict[str, bytes] = {}
    for rec in described:
        rel = rec.get("path") or ""
        members = (
            [(f"{rel}/{f['path']}", f) for f in rec.get("files") or []]
            if rec.get("kind") == "folder"
            else [(rel, rec)]
        )
        for name, f in members:
            if not isinstance(f.get("size"), int) or f["size"] > _TEXT_BYTES:
                continue
            path = name if os.path.isabs(name) else os.path.join(base, *name.split("/"))
            try:
                with open(path, "rb") as fh:
                    out[name] = fh.read(_TEXT_BYTES + 1)
            except OSError:
                continue
    return out


def first_line_difference(a: bytes | None, b: bytes | None) -> dict[str, Any] | None:
    """The first line (1-based) at which two texts differ, with both lines; None for binary
    content, identical texts or a missing side."""
    if a is None or b is None or a == b or b"\0" in a or b"\0" in b:
        return None
    try:
        la, lb = a.decode("utf-8").splitlines(), b.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return None
    for i in range(max(len(la), len(lb))):
        x = la[i] if i < len(la) else None
        y = lb[i] if i < len(lb) else None
        if x != y:
            return {"line": i + 1, "first": x, "other": y}
    return {"line": len(la) + 1, "first": "", "other": ""}  # only the final newline differs


def _line_detail(line: dict[str, Any]) -> str:
    def show(text: str | None) -> str:
        if text is None:
            return "<no line>"
        return repr(text if len(text) <= 60 else text[:57] + "...")

    return f"first differs at line {line['line']}: {show(line['first'])} -> {show(line['other'])}"


def _hash_declared(declared: list[dict[str, Any]], base: str) -> list[dict[str, Any]]:
    return describe_declared([rec.get("path") or "" for rec in declared], base)


def parse_seeds(spec: str) -> list[int]:
    """``"0-9"`` or ``"1,5,9"`` (or a mix) -> a list of seeds."""
    seeds: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            if sep:
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise ArgumentError("seeds", f"expects e.g. 0-9 or 1,5,9, got {spec!r}") from None
    if not seeds:
        raise ArgumentError("seeds", "names no seed")
    return seeds


def seeds(
    ref: str,
    *,
    n: int | None = None,
    seed_list: list[int] | None = None,
    claims: Iterable[str] = (),
    store: Store | Path | str | None = None,
    stdout: Any = None,
    on_event: Callable[[str, Any], None] | None = None,
    sandbox: bool | None = None,
    trust: bool = False,
) -> SeedReport:
    """Re-execute run ``ref`` under N different seeds (0..N-1 unless ``seed_list``) and summarise.

    Each execution is recorded as a run; the runs share a ``group``. ``on_event(kind, seed)``
    hears ``"executing"`` before and ``"executed"`` after each seed's execution. ``sandbox``
    and ``trust`` as ``replay`` takes them (a run made on another machine runs in the sandbox).
    """
    emit = on_event or (lambda kind, data: None)
    chosen = list(seed_list) if seed_list else list(range(n if n is not None else 10))
    if len(chosen) < 2:
        raise ReprokitError("a seed-robustness report needs at least 2 seeds")
    for s in chosen:
        check_seed(s)
    parsed = [parse_claim(c) for c in claims]
    st = Store.at(store)
    st.verify(ref)
    m = st.load(ref)
    base_params = check_replayable(m, {})
    check_all_ranks(st, m)
    writable = sandbox_for(m, sandbox, trust)[0]
    command = (m.run.get("entry") or {}).get("kind") == "command"
    # A command's results are those of the tracked runs it made (its exit code is no number).
    known = results_of_children(child_runs(st, m.id)) if command else results_of(m)
    if not known:
        what = (
            "a command whose tracked runs returned no numbers and logged no metrics"
            if command
            else "a run that returned no numbers and logged no metrics"
        )
        raise ReprokitError(f"run {m.id} is {what}: there is nothing to summarise across seeds")
    for name, _op, _value in parsed:
        claim_key(name, known, f"run {m.id} did not produce")
    report = _SeedDraft(m.id, chosen)
    report.group = "seeds-" + os.urandom(4).hex()
    scratch = tempfile.mkdtemp(prefix="reprokit-seeds-")
    try:
        source = os.path.join(scratch, "source")
        rebuild_source(m, st, source, scratch)
        make_inputs_available(m, st, source)
        per_seed: list[dict[str, float]] = []
        tops: list[Manifest | None] = []
        for i, s in enumerate(chosen):
            params = dict(base_params)
            if "seed" in params:
                params["seed"] = s
            told = ChildProtocol(seed_override=s, seed=s, group=report.group)
            emit("executing", s)
            _code, new, _cwd = execute(
                m,
                st,
                source,
                params,
                os.path.join(scratch, f"runs{i}.log"),
                parent=None,
                replay_of=False,
                protocol=told,
                stdout=stdout,
                argv_seed=s,
                sandbox=None if writable is None else [*writable, scratch, str(st.root)],
            )
            emit("executed", s)
            grouped = [r for r in new if r.run.get("group") == report.group]
            if command:
                report.runs.append(",".join(r.id for r in grouped) or None)
                per_seed.append(results_of_children(grouped))
                # The command run itself stands for the execution when judging variation.
                tops.append(grouped[0] if grouped else None)
                continue
            # The execution of the swept run itself: a script that calls the tracked function
            # several times makes several runs per seed; the one summarised is the same call
            # (name and order in its process) as the run named.
            top = replayed_run(m, [r for r in grouped if not r.run.get("parent")])
            report.runs.append(top.id if top else None)
            tops.append(top)
            per_seed.append(results_of(top) if top else {})
        if not any(tops):
            # Nothing to summarise is no "robust" and no empty table that exits 0.
            raise ReprokitError(
                f"none of the {len(chosen)} executions of run {m.id} recorded a run to "
                "summarise (a command run's results are its children's; see reprokit check)"
            )
        _fill(report, per_seed, parsed)
        _judge_variation(report, tops, st)
        return report.freeze()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


_SEED_PARAM = re.compile(r"(^|\.)seed$")


def did_not_vary(seeds: list[int], runs: list[Manifest | None], store: Store | None) -> str | None:
    """Why a sweep of ``runs`` (one per seed) proves nothing about seeds, or None.

    Two tells: a seed-like param that stayed the same while the sweep's seed changed (the
    program fixes its own seed), and executions whose every output is byte-identical across
    different seeds (a hard-coded ``random.seed(1337)``, or a result that ignores the seed).
    """
    sealed = [r for r in runs if r is not None]
    if len(sealed) < 2 or len(set(seeds)) < 2:
        return None
    reasons = []
    for key in sorted(sealed[0].params):
        if not _SEED_PARAM.search(key):
            continue
        values = [r.params.get(key) for r in sealed]
        if all(v == values[0] for v in values) and values[0] is not None:
            reasons.append(
                f"its param {key} stayed {values[0]!r} in every execution while the sweep's seed "
                f"went {seeds[0]}..{seeds[-1]}: the program sets its own seed"
            )
    if store is not None and all(
        compare_runs(sealed[0], other, store, 0.0, 0.0)["verdict"] == cmp.IDENTICAL
        for other in sealed[1:]
    ):
        reasons.append(
            f"the {len(sealed)} executions are byte-identical under {len(set(seeds))} different "
            "seeds: nothing varied (a hard-coded seed such as random.seed(1337) overrides the "
            "sweep's, or the result does not depend on the seed)"
        )
    return "; ".join(reasons) or None


def _judge_variation(report: _SeedDraft, runs: list[Manifest | None], store: Store | None) -> None:
    reason = did_not_vary(report.seeds, runs, store)
    if reason is None:
        _judge_unvaried(report)
        return
    report.nothing_varied = reason
    for claim in report.claims.values():
        # No verdict either way: the sweep did not test the seed, so robustness is unknown.
        claim["verdict"] = "undetermined"
        claim["reason"] = reason


def _judge_unvaried(report: _SeedDraft) -> None:
    """The executions varied; name each result that did not, and refuse claims on them."""
    if len(set(report.seeds)) < 2:
        return
    for name, summary in report.results.items():
        vals = summary.get("values") or []
        if len(vals) >= 2 and all(v == vals[0] for v in vals):
            report.unvaried[name] = (
                f"the seed did not reach {name}: it was {vals[0]!r} under all {len(vals)} "
                "seeds while other outputs varied (a hard-coded seed such as "
                "random.seed(1337) in the code that computes it, or a result no seed can move, "
                "such as a saturated accuracy: the sweep cannot tell which)"
            )
    for key, claim in report.claims.items():
        name = key.rsplit(" ", 2)[0]
        if name in report.unvaried:
            claim["verdict"] = "undetermined"
            claim["reason"] = report.unvaried[name]


def _fill(
    report: _SeedDraft, per_seed: list[dict[str, float]], claims: list[tuple[str, str, float]]
) -> None:
    names = sorted({k for r in per_seed for k in r})
    for name in names:
        vals = [r[name] for r in per_seed if name in r]
        report.results[name] = summarize(vals)
    for name, op, value in claims:
        key = claim_key(name, report.results, "no run produced")
        report.claims[f"{key} {op} {value}"] = judge_claim(report.results[key], op, value)


def across_seeds(
    fn: Callable[..., Any],
    seeds: Iterable[int],
    claims: Iterable[str] = (),
    **params: Any,
) -> SeedReport:
    """Call ``fn(**params)`` once per seed in this process and summarise the results.

    A ``@reprokit.track``-ed ``fn`` records each call as a run of one group, seeded with that
    seed (and given ``seed=`` when it takes a ``seed`` parameter). The return value's numbers
    and, for tracked functions, each metric's last value are summarised.
    """
    chosen = [check_seed(s) for s in seeds]
    if len(chosen) < 2:
        raise ReprokitError("across_seeds needs at least 2 seeds")
    parsed = [parse_claim(c) for c in claims]
    target = getattr(fn, "__qualname__", repr(fn))
    report = _SeedDraft(target, chosen)
    report.group = "seeds-" + os.urandom(4).hex()
    inner = inspect_unwrap(fn)
    code = getattr(inner, "__code__", None)
    takes_seed = (
        code is not None and "seed" in code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    )
    per_seed: list[dict[str, float]] = []
    tops: list[Manifest | None] = []
    store: Store | None = None
    for s in chosen:
        sealed: list[str] = []
        STATE.sweep.update({"seed": s, "group": report.group, "sealed": sealed})
        set_sweep_seed(s)
        try:
            value = fn(**params, seed=s) if takes_seed else fn(**params)
        finally:
            STATE.sweep.clear()
            set_sweep_seed(None)
        found: dict[str, float] = {}
        if sealed:
            store = Store.at(STATE.last_store_root)
            m = store.load(sealed[-1])
            found = results_of(m)
            report.runs.append(m.id)
            tops.append(m)
        else:
            report.runs.append(None)
            tops.append(None)
            fake = Manifest({"schema": 1, "run": {}, "outputs": {"return": describe_value(value)}})
            found = results_of(fake)
        per_seed.append(found)
    _fill(report, per_seed, parsed)
    if all(t is not None for t in tops):
        _judge_variation(report, tops, store)
    return report.freeze()
