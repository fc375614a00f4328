"""Parallel-replay benchmark for reprokit. Run by hand: ``python bench/parallel.py``.

In a throwaway git repository (temp folder) it records N runs (default 50) of ``model.train``,
a tracked function that burns about S seconds of CPU (default 1; the loop is calibrated here
first) and returns a deterministic number, then measures:

1. ``reprokit replay --all -j 1`` vs ``-j 2`` (vs ``-j CORES`` when there are more than 2):
   wall time, and the speed-up over ``-j 1`` (ideal: the core count);
2. the fixed cost each executor adds per run: K runs (default 10) of a program that does
   nothing, replayed with ``-j 1`` (one process, no pool), ``-j 2`` (process pool),
   ``--executor slurm --slurm-cluster local`` (submitit's local executor) and
   ``--executor dask`` (a ``LocalCluster`` with 2 worker processes started by the bench on
   127.0.0.1); wall time / K. Executors whose library is missing are skipped.

It prints a table and never asserts: timings depend on the machine (the load average is printed
beside them; the figures in bench/README.md say on what they were taken).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common
from _common import child_env, git, rmtree

PY = sys.executable

# The tracked function lives in a module: a replay imports it and calls it once. (A function
# of the script itself would make every replay re-run the whole script, all its calls.)
MODEL = """\
import reprokit

N = {n}


@reprokit.track
def train(i=0, n=N):
    acc = 0
    for k in range(n):
        acc = (acc * 31 + k + i) % 1000003
    return acc
"""

TRAIN = """\
import sys

import model

for i in range(int(sys.argv[1]), int(sys.argv[2])):
    model.train(i)
"""


def calibrate(seconds: float) -> int:
    """Loop iterations that take about ``seconds`` of CPU here."""
    n = 200_000
    while True:
        t = time.process_time()
        acc = 0
        for k in range(n):
            acc = (acc * 31 + k) % 1000003
        took = time.process_time() - t
        if took > 0.2:
            return int(n * seconds / took)
        n *= 2


def make_repo(root: Path, n_iter: int) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True)
    (repo / "model.py").write_text(MODEL.format(n=n_iter))
    (repo / "train.py").write_text(TRAIN)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "bench")
    return repo


def record(repo: Path, runs: int, env: dict[str, str]) -> None:
    """Record ``runs`` runs, two processes at once (the bench is about replay)."""
    half = runs // 2
    procs = [
        subprocess.Popen([PY, "train.py", str(a), str(b)], cwd=repo, env=env)
        for a, b in ((0, half), (half, runs))
        if b > a
    ]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit("recording failed")


def replay_all(repo: Path, env: dict[str, str], *extra: str) -> tuple[float, dict]:
    t = time.perf_counter()
    proc = subprocess.run(
        [PY, "-m", "reprokit", "replay", "--all", "-q", "--json", *extra],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    took = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"replay {' '.join(extra)} failed ({proc.returncode}): {proc.stderr}")
    return took, json.loads(proc.stdout)


def fresh_store(repo: Path) -> None:
    """Drop the replays' own records so every measurement replays the same runs."""
    store = repo / ".reprokit"
    for entry in json.loads(
        subprocess.run(
            [PY, "-m", "reprokit", "ls", "--json"],
            cwd=repo,
            env=child_env(),
            capture_output=True,
            text=True,
        ).stdout
    )["runs"]:
        if entry.get("replay_of") or entry.get("kind") == "replay":
            rmtree(store / "runs" / entry["id"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=50, help="recorded runs in [1] (default 50)")
    ap.add_argument("--seconds", type=float, default=1.0, help="CPU seconds per run in [1]")
    ap.add_argument("--fixed-runs", type=int, default=10, help="runs of an empty program in [2]")
    ap.add_argument("--skip-speedup", action="store_true", help="only [2]")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="reprokit-bench-parallel-"))
    _common.PYCACHE = str(root / "pycache")
    env = child_env()
    env["PYTHONHASHSEED"] = "0"
    rows: list[tuple[str, str]] = []
    # The cores this process may use (taskset/cgroups can give it fewer than the machine has).
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    print(f"machine: {cores} logical cores, load average {os.getloadavg()[0]:.1f} at start")
    try:
        if not args.skip_speedup:
            n_iter = calibrate(args.seconds)
            repo = make_repo(root / "speed", n_iter)
            t = time.perf_counter()
            record(repo, args.runs, env)
            print(f"[1] recorded {args.runs} runs of ~{args.seconds:g} s in "
                  f"{time.perf_counter() - t:.1f} s (2 processes)")  # fmt: skip
            results = {}
            for j in sorted({1, 2, cores}):
                fresh_store(repo)
                took, doc = replay_all(repo, env, "-j", str(j))
                assert doc["summary"] == {"identical": args.runs}, doc["summary"]
                results[j] = took
                print(
                    f"    -j {j}: {took:.1f} s for {args.runs} runs ({took / args.runs:.2f} s/run)"
                )
            for j, took in results.items():
                speed = results[1] / took
                rows.append((f"replay {args.runs} x ~{args.seconds:g} s runs, -j {j}",
                             f"{took:.1f} s  (speed-up {speed:.2f}x)"))  # fmt: skip

        repo = make_repo(root / "fixed", 1)
        record(repo, args.fixed_runs, env)
        k = args.fixed_runs
        cases: list[tuple[str, list[str]]] = [("-j 1 (in this process)", ["-j", "1"])]
        cases.append(("-j 2 (process pool)", ["-j", "2"]))
        try:
            import submitit  # noqa: F401

            folder = str(root / "slurm")
            cases.append(("slurm via submitit local executor",
                          ["--executor", "slurm", "--slurm-cluster", "local",
                           "--slurm-folder", folder]))  # fmt: skip
        except ImportError:
            print("[2] submitit not installed: slurm executor skipped")
        cluster = None
        try:
            from distributed import LocalCluster

            cluster = LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
            )
            address = cluster.scheduler_address
            cases.append(("dask LocalCluster, 2 workers",
                          ["--executor", "dask", "--scheduler", address]))  # fmt: skip
        except ImportError:
            print("[2] dask.distributed not installed: dask executor skipped")
        try:
            for label, extra in cases:
                fresh_store(repo)
                took, doc = replay_all(repo, env, *extra)
                assert doc["summary"] == {"identical": k}, doc["summary"]
                print(f"[2] {label}: {took:.2f} s for {k} runs")
                rows.append((f"fixed cost per run: {label}", f"{took / k * 1000:.0f} ms"))
        finally:
            if cluster is not None:
                cluster.close()
    finally:
        rmtree(root)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    print("\nSummary")
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


if __name__ == "__main__":
    main()
