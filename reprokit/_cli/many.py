"""``reprokit replay REF... | --all | --name N`` with ``-j N`` / ``--executor``: many replays,
one report (the single-run replay stays in app.py)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from reprokit._cli.output import Bar, err
from reprokit._model.errors import ReprokitError
from reprokit._verbs.executors import EXECUTORS, make_executor
from reprokit._verbs.parallel import replay_runs


def add_options(p: argparse.ArgumentParser) -> None:
    """The options of ``replay`` that select many runs and say where they run."""
    p.add_argument("--all", action="store_true", help="every sealed run you made (not replays)")
    p.add_argument("--name", help="every sealed run of this name")
    p.add_argument(
        "-j", "--jobs", type=int, default=None, metavar="N", help="replays at once (default 1)"
    )
    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        default=None,
        help="local: a process pool here (default); slurm: one SLURM job array (submitit); "
        "dask: an existing Dask cluster (--scheduler)",
    )
    p.add_argument("--scheduler", metavar="ADDRESS", help="dask: the scheduler, tcp://HOST:PORT")
    p.add_argument("--partition", help="slurm: the partition")
    p.add_argument("--time", type=int, default=60, metavar="MIN", help="slurm: minutes per run")
    p.add_argument("--gpus", type=int, default=0, metavar="N", help="slurm: GPUs per run")
    p.add_argument(
        "--slurm-folder",
        default="reprokit-slurm",
        metavar="DIR",
        help="slurm: submitit's folder for job files and logs, on a shared filesystem",
    )
    p.add_argument(
        "--slurm-cluster",
        choices=("slurm", "local"),
        default="slurm",
        help="slurm: 'local' runs the job array with submitit's local executor (testing)",
    )


def sandbox_choice(args: argparse.Namespace) -> bool | None:
    """--sandbox: always; --no-sandbox: never; neither: for runs made on another machine."""
    if args.sandbox and args.no_sandbox:
        raise ReprokitError("--sandbox and --no-sandbox contradict each other; give one")
    return True if args.sandbox else False if args.no_sandbox else None


def wanted(args: argparse.Namespace) -> bool:
    """Whether this ``replay`` call is a many-run replay (a Namespace made by hand, with one
    ``ref``, is not)."""
    if not hasattr(args, "refs"):
        return False
    return bool(
        len(args.refs) != 1
        or args.all
        or args.name is not None
        or args.jobs is not None
        or args.executor
    )


def cmd_replay_many(args: argparse.Namespace) -> int:
    if args.in_place or args.keep or args.param:
        raise ReprokitError("--in-place, --keep and --param apply to the replay of one run")
    if not args.refs and not args.all and args.name is None:
        raise ReprokitError("name the runs to replay, or pass --all or --name")
    jobs = 1 if args.jobs is None else args.jobs
    if jobs < 1:
        raise ReprokitError(f"-j must be at least 1, got {jobs}")
    if args.scheduler and args.executor != "dask":
        raise ReprokitError("--scheduler applies to --executor dask")
    executor = make_executor(
        args.executor or "local",
        jobs=jobs,
        scheduler=args.scheduler,
        folder=args.slurm_folder,
        partition=args.partition,
        time_min=args.time,
        gpus=args.gpus,
        cluster=args.slurm_cluster,
    )
    bar = Bar(args, "replaying", unit="run")

    def start(total: int) -> None:
        if not args.quiet:
            err(f"replaying {total} run(s) with {executor.name} executor")
        if bar.tqdm is not None:
            bar.tqdm.reset(total=total)

    def heard(result: dict[str, Any]) -> None:
        bar.update(1, desc=f"replaying ({result['run'][-6:]} {result['verdict']})")

    try:
        report = replay_runs(
            args.refs,
            store=args.store,
            all_runs=args.all,
            name=args.name,
            rtol=args.rtol,
            atol=args.atol,
            executor=executor,
            on_result=heard,
            on_start=start,
            sandbox=sandbox_choice(args),
            trust=args.trust,
        )
    finally:
        bar.close()
    if args.json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
        return report.exit_code
    for r in report.results:
        line = f"{r['run']}  {r['verdict'].replace('_', ' '):<16}"
        if r.get("replay"):
            line += f" replay {r['replay']}"
        if r.get("reason"):
            line += f" {r['reason']}"
        sys.stdout.write(line.rstrip() + "\n")
        for cause in (r.get("causes") or [])[:1]:
            sys.stdout.write(f"    likely cause: {cause}\n")
    sys.stdout.write(report.summary + "\n")
    return report.exit_code
