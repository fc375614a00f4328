"""Replaying many runs at once: one job per run, an executor to run them, one report.

Each job is a plain dict (the store's address, the run id, tolerances, where to work), so it can
travel to a worker process, a SLURM node or a Dask worker; :func:`replay_job` runs one there and
returns a plain dict too. Every replay records its verdict in the store like a single replay.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from reprokit._model import compare as cmp
from reprokit._model.errors import ReprokitError, TamperedError
from reprokit._model.manifest import top_level
from reprokit._store.store import Store
from reprokit._verbs.executors import Executor, LocalExecutor
from reprokit._verbs.replay import replay

OK = (cmp.IDENTICAL, cmp.WITHIN)
TAIL = 2000  # characters of a replayed program's output kept when it did not reproduce


def replay_job(job: dict[str, Any]) -> dict[str, Any]:
    """Replay one run as ``job`` says; a dict with the verdict (never raises for a run that
    cannot be replayed: that is a verdict of its own, with the reason)."""
    out: dict[str, Any] = {"run": job["run"], "host": _host()}
    cwd = os.getcwd()
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - read back below
        prefix="reprokit-replay-", suffix=".log", delete=False
    )
    # The replayed program's stderr goes to the log too: many replays at once must not
    # interleave on one terminal (this runs in a worker process, or alone).
    saved_err = os.dup(2)
    try:
        os.dup2(log.fileno(), 2)
        if job.get("cwd") and os.path.isdir(job["cwd"]):
            os.chdir(job["cwd"])
        report = replay(
            job["run"],
            store=job["store"],
            rtol=job.get("rtol", 0.0),
            atol=job.get("atol", 0.0),
            stdout=log,
            source_dir=job.get("source_dir"),
            python=job.get("python"),
            data_root=job.get("data_root"),
            sandbox=job.get("sandbox"),
            trust=bool(job.get("trust")),
        )
        out.update(verdict=report.verdict, replay=report.replay_id, causes=report.causes)
        if report.inputs_problem:
            out["inputs_problem"] = report.inputs_problem
    except TamperedError as exc:
        out.update(verdict="tampered", reason=str(exc))
    except ReprokitError as exc:
        out.update(verdict="not_replayable", reason=str(exc))
    except Exception as exc:  # a bug: said as such, never a verdict
        out.update(verdict="error", reason=f"internal error: {type(exc).__name__}: {exc}")
    finally:
        os.dup2(saved_err, 2)
        os.close(saved_err)
        os.chdir(cwd)
        log.close()
        if out.get("verdict") not in OK:
            try:
                with open(log.name, encoding="utf-8", errors="replace") as fh:
                    text = fh.read()
                if text:
                    out["output_tail"] = text[-TAIL:]
            except OSError:
                pass
        os.unlink(log.name)
    return out


def _host() -> str:
    try:
        return os.uname().nodename
    except AttributeError:  # pragma: no cover - Windows
        import platform

        return platform.node()


class ManyReplayReport:
    """The verdicts of replaying several runs. ``to_dict()`` is the JSON form."""

    def __init__(self, executor: str, jobs: int) -> None:
        self.executor = executor
        self.jobs = jobs
        self.results: list[dict[str, Any]] = []  # in the order the runs were given

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r["verdict"]] = out.get(r["verdict"], 0) + 1
        return dict(sorted(out.items()))

    @property
    def exit_code(self) -> int:
        """0 every run reproduced; 1 some run differs (or was tampered with); 2 none differs
        but some could not be replayed, so there is no verdict for them (a replay that wrote
        into its inputs, or was stopped writing into them, among those)."""
        if all(r["verdict"] in OK and not r.get("inputs_problem") for r in self.results):
            return 0
        if any(
            r["verdict"] in (cmp.DIFFERENT, "tampered") and not r.get("inputs_problem")
            for r in self.results
        ):
            return 1
        return 2

    @property
    def summary(self) -> str:
        parts = ", ".join(f"{n} {v.replace('_', ' ')}" for v, n in self.counts.items())
        return f"{len(self.results)} runs: {parts or 'none'}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "executor": self.executor,
            "jobs": self.jobs,
            "summary": self.counts,
            "runs": self.results,
        }


def select_runs(
    store: Store, refs: Sequence[str] = (), *, all_runs: bool = False, name: str | None = None
) -> list[str]:
    """The run ids ``refs`` name, plus (``all_runs``) every sealed run the user made, or
    (``name``) every such run of that name; oldest first. Re-executions, replay verdicts and
    nested runs (re-executed with the run around them) are left out of ``all_runs``/``name``."""
    ids = [store.resolve(r) for r in refs]
    if all_runs or name is not None:
        for entry in store.entries(head=True):
            m = entry.manifest
            if m is None:
                continue
            run = m.run
            if not top_level(run):
                continue
            if name is not None and run.get("name") != name:
                continue
            ids.append(entry.id)
    ids = sorted(set(ids))
    if not ids:
        what = f"named {name!r}" if name is not None else "to replay"
        raise ReprokitError(f"no sealed runs {what} in store {store.address}")
    return ids


def replay_many(
    jobs: Sequence[dict[str, Any]],
    executor: Executor | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> ManyReplayReport:
    """Run :func:`replay_job` for each job with ``executor`` (default: one at a time here);
    ``on_result`` hears each result as it arrives."""
    executor = executor or LocalExecutor(1)
    report = ManyReplayReport(executor.name, getattr(executor, "jobs", 1))
    results: dict[int, dict[str, Any]] = {}
    for i, outcome in executor.map(replay_job, list(jobs)):
        if isinstance(outcome, BaseException):
            outcome = {
                "run": jobs[i]["run"],
                "verdict": "error",
                "reason": f"the job was lost: {type(outcome).__name__}: {outcome}",
            }
        results[i] = outcome
        if on_result is not None:
            on_result(outcome)
    report.results = [results[i] for i in sorted(results)]
    return report


def replay_runs(
    refs: Sequence[str] = (),
    *,
    store: Store | str | None = None,
    all_runs: bool = False,
    name: str | None = None,
    rtol: float = 0.0,
    atol: float = 0.0,
    executor: Executor | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    sandbox: bool | None = None,
    trust: bool = False,
) -> ManyReplayReport:
    """Replay the runs ``refs`` names (or ``all_runs``, or every run called ``name``) with
    ``executor``; one report with a verdict per run. ``sandbox`` and ``trust`` as ``replay``
    takes them (by default, runs made on another machine replay in the sandbox)."""
    if rtol < 0 or atol < 0:
        raise ReprokitError("rtol and atol must not be negative")
    st = Store.at(store)
    ids = select_runs(st, refs, all_runs=all_runs, name=name)
    if on_start is not None:
        on_start(len(ids))
    jobs = [
        {
            "run": rid,
            "store": st.address,
            "rtol": rtol,
            "atol": atol,
            "cwd": os.getcwd(),
            "sandbox": sandbox,
            "trust": trust,
        }
        for rid in ids
    ]
    return replay_many(jobs, executor, on_result)
