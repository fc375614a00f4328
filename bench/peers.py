"""reprokit side by side with Sacred, W&B (offline) and MLflow: ``python bench/peers.py``.

One toy training function (8 params; 5 metrics logged over 10 steps; 2 checkpoints; a dict
returned) is recorded by every tool in the same temp git repository, and every figure is taken
against a baseline measured in the same run:

- import: ``python -c "import X"`` over ``python -c pass``
- one tracked run, whole process: wall time and peak memory over the same script untracked
- per run in a sweep: one process, ``--runs`` tracked calls over as many untracked calls, in
  wall time and in CPU (process) time; the fsyncs a run makes and the wall time spent inside
  them (``strace -f -w -c`` over a sweep, where strace is installed) split the wall time into
  "durable writes" and the rest; a 4 KiB new-file fsync and the creation of a folder and a
  file on the same disk are shown beside; the same sweep with the store in memory (``--memory``,
  a tmpfs: ``/dev/shm`` by default) gives the tool's own work, file system aside
- ``log_metric`` per point, inside one run
- store bytes per run

It installs nothing: a peer that is not importable is reported "not installed" (``pip install
'reprokit-verdict[bench]'`` brings them). It asserts nothing; reprokit's budgets are printed
beside its figures. See bench/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common
from _common import child_env, git, rmtree, wall_and_rss

PY = sys.executable
TOOLS = ("reprokit", "sacred", "wandb", "mlflow")
TITLES = {"reprokit": "reprokit", "sacred": "Sacred", "wandb": "W&B (offline)",
          "mlflow": "MLflow (SQLite)"}  # fmt: skip

TOY = '''\
"""The toy every tool records: 8 params, 5 metrics over 10 steps, 2 checkpoints, a dict."""
import os
import pickle

PARAMS = dict(lr=0.01, batch_size=32, epochs=10, weight_decay=1e-4, dropout=0.1, hidden=64,
              layers=2, seed=0)


def steps(params):
    """(step, metrics, weights at the 2 checkpoint steps else None) for 10 steps."""
    w = [params["lr"] * i for i in range(64)]
    for step in range(10):
        w = [x * 0.99 + params["weight_decay"] for x in w]
        loss = 1.0 / (step + 1 + params["lr"])
        metrics = {"loss": loss, "accuracy": 1 - loss / 2, "val_loss": loss * 1.1,
                   "val_accuracy": 1 - loss / 1.8, "lr_now": params["lr"] * 0.9 ** step}
        yield step, metrics, (w if step in (4, 9) else None)


def result(params):
    return {"final_loss": 1.0 / (10 + params["lr"]), "final_accuracy": 0.95, "steps": 10}


def save(weights, step):
    path = os.path.join(os.environ["TOY_TMP"], f"weights-{step}.pkl")
    with open(path, "wb") as fh:
        pickle.dump(weights, fh)
    return path


def plain_run(params):
    for step, metrics, w in steps(params):
        if w is not None:
            save(w, step)
    return result(params)
'''

# Each adapter defines tracked_run(params) and points(n) -> seconds for n log calls in one run.
ADAPTERS = {
    "plain": """
def tracked_run(params):
    return plain_run(params)
""",
    "reprokit": """
import reprokit


@reprokit.track(store=os.environ["TOY_STORE"])
def train(lr, batch_size, epochs, weight_decay, dropout, hidden, layers, seed):
    params = dict(lr=lr, batch_size=batch_size, epochs=epochs, weight_decay=weight_decay,
                  dropout=dropout, hidden=hidden, layers=layers, seed=seed)
    for step, metrics, w in steps(params):
        for name, value in metrics.items():
            reprokit.log_metric(name, value, step=step)
        if w is not None:
            save(w, step)
            reprokit.checkpoint(f"weights-{step}", w)
    return result(params)


def tracked_run(params):
    return train(**params)


def points(n):
    with reprokit.run("points", store=os.environ["TOY_STORE"]):
        t0 = time.perf_counter()
        for i in range(n):
            reprokit.log_metric("loss", i * 0.5, step=i)
        return time.perf_counter() - t0
""",
    "sacred": """
from sacred import Experiment
from sacred.observers import FileStorageObserver

ex = Experiment("toy")
ex.add_config(PARAMS)
ex.observers.append(FileStorageObserver(os.environ["TOY_STORE"]))


@ex.main
def train(_run, lr, batch_size, epochs, weight_decay, dropout, hidden, layers, seed):
    params = dict(lr=lr, batch_size=batch_size, epochs=epochs, weight_decay=weight_decay,
                  dropout=dropout, hidden=hidden, layers=layers, seed=seed)
    for step, metrics, w in steps(params):
        for name, value in metrics.items():
            _run.log_scalar(name, value, step)
        if w is not None:
            _run.add_artifact(save(w, step))
    return result(params)


@ex.command
def log_points(_run, n=0):
    t0 = time.perf_counter()
    for i in range(n):
        _run.log_scalar("loss", i * 0.5, i)
    return time.perf_counter() - t0


def tracked_run(params):
    return ex.run(config_updates=params).result


def points(n):
    return ex.run("log_points", config_updates={"n": n}).result
""",
    "wandb": """
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
import wandb


def tracked_run(params):
    run = wandb.init(project="toy", config=params, dir=os.environ["TOY_STORE"])
    for step, metrics, w in steps(params):
        run.log(metrics, step=step)
        if w is not None:
            run.save(save(w, step), base_path=os.environ["TOY_TMP"], policy="now")
    out = result(params)
    run.summary.update(out)
    run.finish()
    return out


def points(n):
    run = wandb.init(project="toy", dir=os.environ["TOY_STORE"])
    t0 = time.perf_counter()
    for i in range(n):
        run.log({"loss": i * 0.5}, step=i)
    elapsed = time.perf_counter() - t0
    run.finish()
    return elapsed
""",
    "mlflow": """
import mlflow

mlflow.set_tracking_uri("sqlite:///" + os.path.join(os.environ["TOY_STORE"], "mlflow.db"))
mlflow.set_experiment("toy")


def tracked_run(params):
    with mlflow.start_run():
        mlflow.log_params(params)
        for step, metrics, w in steps(params):
            mlflow.log_metrics(metrics, step=step)
            if w is not None:
                mlflow.log_artifact(save(w, step))
        out = result(params)
        mlflow.log_dict(out, "result.json")
    return out


def points(n):
    with mlflow.start_run():
        t0 = time.perf_counter()
        for i in range(n):
            mlflow.log_metric("loss", i * 0.5, step=i)
        return time.perf_counter() - t0
""",
}

MAIN = """
import json, sys, time


def fsync_latency(tag):
    # Seconds of write(4 KiB) + fsync of a new file, 15 times, beside the tool's store. The
    # files stay until the bench ends: on ext4 without a journal, inodes deleted in the last
    # minutes slow every file created after them (the allocator steps over them).
    import os

    out = []
    for i in range(15):
        path = os.path.join(os.environ["TOY_TMP"], f"fsync-{tag}-{i}")
        t = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"x" * 4096)
        os.fsync(fd)
        os.close(fd)
        out.append(time.perf_counter() - t)
    return out


def create_cost(tag):
    # Seconds of mkdir + one new empty file in it, 15 times: what a new inode costs here now.
    import os

    out = []
    for i in range(15):
        folder = os.path.join(os.environ["TOY_TMP"], f"create-{tag}-{i}")
        t = time.perf_counter()
        os.mkdir(folder)
        os.close(os.open(os.path.join(folder, "f"), os.O_WRONLY | os.O_CREAT, 0o644))
        out.append(time.perf_counter() - t)
    return out


def main():
    what = sys.argv[1]
    if what == "one":
        tracked_run(PARAMS)
    elif what == "sweep":
        n, cap = int(sys.argv[2]), float(sys.argv[3])
        tracked_run(PARAMS)  # warm-up: what a tool does once per process
        plain_run(PARAMS)
        before, made = fsync_latency("before"), create_cost("before")
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(n):
            plain_run(dict(PARAMS, lr=0.001 * (i + 1)))
        t1, c1 = time.perf_counter(), time.process_time()
        done = 0
        for i in range(n):
            tracked_run(dict(PARAMS, lr=0.001 * (i + 1)))
            done += 1
            if time.perf_counter() - t1 > cap:
                break
        t2, c2 = time.perf_counter(), time.process_time()
        fsync = before + fsync_latency("after")
        made += create_cost("after")
        print(json.dumps({"untracked_s": (t1 - t0) / n, "tracked_s": (t2 - t1) / done,
                          "untracked_cpu_s": (c1 - c0) / n, "tracked_cpu_s": (c2 - c1) / done,
                          "runs": done, "fsync_s": sorted(fsync)[len(fsync) // 2],
                          "create_s": sorted(made)[len(made) // 2]}))
    elif what == "points":
        n, cap = int(sys.argv[2]), float(sys.argv[3])
        small = max(100, n // 100)
        probe = points(small)  # a short round first: slow tools get fewer points
        if probe > 0 and probe / small * n > cap:
            n = max(small, int(cap / (probe / small)))
        print(json.dumps({"per_point_s": points(n) / n, "points": n}))


if __name__ == "__main__":
    main()
"""


def available(tool: str) -> bool:
    return importlib.util.find_spec(tool) is not None


def make_repo(root: Path, tools: list[str]) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True)
    (repo / "toy.py").write_text(TOY)
    for tool in ["plain", *tools]:
        body = "import os\nimport time\n\nfrom toy import PARAMS, plain_run, result, save, steps\n"
        (repo / f"run_{tool}.py").write_text(body + ADAPTERS[tool] + MAIN)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "toy")
    return repo


def env_for(root: Path, tool: str, tag: str) -> dict[str, str]:
    env = child_env()
    store = root / "stores" / f"{tool}-{tag}"
    tmp = root / "tmp" / f"{tool}-{tag}"
    store.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    env.update(TOY_STORE=str(store), TOY_TMP=str(tmp), PYTHONHASHSEED="0", WANDB_DIR=str(store),
               WANDB_CACHE_DIR=str(tmp), WANDB_CONFIG_DIR=str(tmp))  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run_child(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    """The stdout of one child process (RuntimeError with its stderr's tail if it fails)."""
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[-3:])} failed: {proc.stderr.strip()[-800:]}")
    return proc.stdout


def fsync_latency(folder: Path, tag: str, n: int = 30) -> float:
    """Median seconds of write(4 KiB) + fsync of a new file in ``folder`` (the files stay until
    the bench ends: see the child's ``fsync_latency``)."""
    times = []
    for i in range(n):
        path = folder / f"fsync-{tag}-{i}"
        t0 = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"x" * 4096)
        os.fsync(fd)
        os.close(fd)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def count_fsyncs(repo: Path, root: Path, tool: str, runs: int) -> tuple[float, float] | None:
    """(fsync-family calls per run, wall seconds spent inside them per run): strace -f -w -c
    over a sweep of ``runs`` minus a sweep of 1 (-w: the calls' wall-clock time, which is what
    a durable write costs the caller; the calls are timed as they ran in the sweep, on the
    files each run actually wrote)."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    counts, seconds = [], []
    for n in (1, runs + 1):
        env = env_for(root, tool, f"strace-{n}")
        out = root / f"strace-{tool}-{n}.txt"
        argv = [strace, "-f", "-qq", "-w", "-c", "-o", str(out), "-e",
                "trace=fsync,fdatasync,sync_file_range,syncfs,sync",
                PY, f"run_{tool}.py", "sweep", str(n), "600"]  # fmt: skip
        proc = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            return None
        total, spent = 0, 0.0
        for line in out.read_text().splitlines():
            m = re.match(r"\s*[\d.]+\s+([\d.]+)\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
            if m and m.group(3) != "total":
                total += int(m.group(2))
                spent += float(m.group(1))
        counts.append(total)
        seconds.append(spent)
    # The sweep runs n plain and n tracked calls after one warm-up tracked call.
    return (counts[1] - counts[0]) / runs, (seconds[1] - seconds[0]) / runs


def store_bytes(folder: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def median_pair(a: list[str], b: list[str], n: int, cwd: Path, envs: tuple) -> tuple:
    """Interleaved runs of two commands: (medians of wall, medians of peak RSS) for a and b."""
    wa, wb, ra, rb = [], [], [], []
    for _ in range(n):
        w, r = wall_and_rss(a, cwd, envs[0])
        wa.append(w)
        ra.append(r)
        w, r = wall_and_rss(b, cwd, envs[1])
        wb.append(w)
        rb.append(r)
    return (statistics.median(wa), statistics.median(wb)), (statistics.median(ra),
                                                            statistics.median(rb))  # fmt: skip


def measure(tool: str, repo: Path, root: Path, args: argparse.Namespace) -> dict[str, float]:
    out: dict[str, float] = {}
    envp = env_for(root, "plain", tool)
    print(f"  {tool}: import", flush=True)
    (bare, imp), _ = median_pair([PY, "-c", "pass"], [PY, "-c", f"import {tool}"],
                                 args.procs, repo, (envp, envp))  # fmt: skip
    out["import_ms"] = (imp - bare) * 1e3
    print(f"  {tool}: one run, whole process", flush=True)
    env1 = env_for(root, tool, "one")
    (plain, tracked), (rss_plain, rss_tracked) = median_pair(
        [PY, "run_plain.py", "one"], [PY, f"run_{tool}.py", "one"], args.procs, repo,
        (envp, env1))  # fmt: skip
    out["one_ms"] = (tracked - plain) * 1e3
    out["one_plain_ms"] = plain * 1e3
    out["peak_mib"] = rss_tracked - rss_plain
    print(f"  {tool}: {args.runs}-run sweep", flush=True)
    per, base, fs, cpu, made = [], [], [], [], []
    for k in range(args.sweeps):
        envs = env_for(root, tool, f"sweep-{k}")
        text = run_child([PY, f"run_{tool}.py", "sweep", str(args.runs), str(args.cap)],
                               repo, envs)  # fmt: skip
        res = json.loads(text.strip().splitlines()[-1])
        per.append(res["tracked_s"] - res["untracked_s"])
        cpu.append(res["tracked_cpu_s"] - res["untracked_cpu_s"])
        made.append(res["create_s"])
        fs.append(res["fsync_s"])
        base.append(res["untracked_s"])
        runs_done = res["runs"] + 1  # and the warm-up run
        out["runs_done"] = res["runs"]
        out["bytes_per_run"] = store_bytes(Path(envs["TOY_STORE"])) / runs_done
    out["sweep_ms"] = statistics.median(per) * 1e3
    out["sweep_ms_min"], out["sweep_ms_max"] = min(per) * 1e3, max(per) * 1e3
    out["sweep_plain_ms"] = statistics.median(base) * 1e3
    out["fsync_ms"] = statistics.median(fs) * 1e3
    out["cpu_ms"] = statistics.median(cpu) * 1e3
    out["create_us"] = statistics.median(made) * 1e6
    if args.memory is not None:
        # The same sweep with the store in memory (tmpfs): the tool's own work, with a file
        # system whose new files and fsyncs cost next to nothing.
        print(f"  {tool}: {args.runs}-run sweep, store in memory", flush=True)
        wall, total = [], []
        for k in range(args.sweeps):
            envs = env_for(root, tool, f"memory-{k}")
            envs["TOY_STORE"] = envs["WANDB_DIR"] = os.path.join(args.memory, f"{tool}-{k}")
            os.makedirs(envs["TOY_STORE"])
            text = run_child([PY, f"run_{tool}.py", "sweep", str(args.runs), str(args.cap)],
                             repo, envs)  # fmt: skip
            res = json.loads(text.strip().splitlines()[-1])
            wall.append(res["tracked_s"] - res["untracked_s"])
            total.append(res["tracked_cpu_s"] - res["untracked_cpu_s"])
        out["memory_ms"] = statistics.median(wall) * 1e3
        out["memory_cpu_ms"] = statistics.median(total) * 1e3
    print(f"  {tool}: fsyncs per run", flush=True)
    fsyncs = count_fsyncs(repo, root, tool, args.strace_runs)
    if fsyncs is not None:
        out["fsyncs"], out["in_fsync_ms"] = fsyncs[0], fsyncs[1] * 1e3
    print(f"  {tool}: log_metric per point", flush=True)
    envm = env_for(root, tool, "points")
    text = run_child([PY, f"run_{tool}.py", "points", str(args.points), str(args.cap)],
                           repo, envm)  # fmt: skip
    res = json.loads(text.strip().splitlines()[-1])
    out["point_us"] = res["per_point_s"] * 1e6
    out["points"] = res["points"]
    return out


BUDGETS = {"import_ms": "≤ 15 ms", "one_ms": "≤ 40 ms", "peak_mib": "≤ +8 MiB",
           "sweep_ms": "≤ 2 ms", "fsyncs": "1", "beyond_ms": "≤ 1 ms", "memory_cpu_ms": "≤ 1 ms",
           "point_us": "≤ 2 µs"}  # fmt: skip


def table(results: dict[str, dict[str, float] | None], fsync_s: float) -> str:
    tools = list(results)
    ref = results.get("reprokit")
    head = "| | " + " | ".join(TITLES[t] for t in tools) + " | reprokit's budget |"
    rows = [head, "|---" * (len(tools) + 2) + "|"]

    def row(label: str, key: str, fmt: str, ratio: bool = True) -> None:
        cells = []
        for t in tools:
            r = results[t]
            if r is None:
                cells.append("not installed")
                continue
            if key not in r:
                cells.append("n/a")
                continue
            cell = fmt.format(r[key]) if r[key] >= 0.5 or key != "import_ms" else "< 1 ms"
            if ratio and t != "reprokit" and ref and ref.get(key, 0) > 0 and r[key] > 0:
                times = r[key] / ref[key]
                cell += f" ({times:.1f}×)" if times < 10 else f" ({times:.0f}×)"
            cells.append(cell)
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {BUDGETS.get(key, '')} |")

    for r in results.values():
        if r is not None and "in_fsync_ms" in r:
            r["beyond_ms"] = max(0.0, r["sweep_ms"] - r["in_fsync_ms"])
    row("`import` over bare python", "import_ms", "{:.0f} ms")
    row("one tracked run, whole process, over the untracked script", "one_ms", "{:.0f} ms")
    row("peak memory of that process over the untracked script", "peak_mib", "+{:.1f} MiB")
    row("per run in a sweep (wall)", "sweep_ms", "{:.2f} ms")
    row("fsyncs per run", "fsyncs", "{:.1f}", ratio=False)
    row("one fsync during that sweep (4 KiB, new file; median)", "fsync_ms", "{:.2f} ms", False)
    row("time inside those fsyncs per run (strace -w, in a sweep)", "in_fsync_ms", "{:.2f} ms",
        False)  # fmt: skip
    row("one new folder + one new file in it, during that sweep (median)", "create_us",
        "{:.0f} µs", False)  # fmt: skip
    row("per run beyond the fsync (wall − time in fsync)", "beyond_ms", "{:.2f} ms")
    row("CPU per run (process time) over the untracked call", "cpu_ms", "{:.2f} ms")
    row("the same sweep, store in memory (tmpfs): per run (wall)", "memory_ms", "{:.2f} ms")
    row("… its CPU per run: the tool's own work beyond the durable writes (at most)",
        "memory_cpu_ms", "{:.2f} ms")  # fmt: skip
    row("`log_metric` per point", "point_us", "{:.1f} µs")
    row("store bytes per run", "bytes_per_run", "{:,.0f} B")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tools", default=",".join(TOOLS), help="comma-separated (default: all)")
    ap.add_argument("--procs", type=int, default=7, help="processes per whole-process figure")
    ap.add_argument("--runs", type=int, default=100, help="runs in a sweep")
    ap.add_argument("--sweeps", type=int, default=3, help="sweep processes per tool")
    ap.add_argument(
        "--cap",
        type=float,
        default=60.0,
        help="seconds a slow tool's sweep or points loop may take (fewer runs)",
    )
    ap.add_argument("--points", type=int, default=100_000, help="log_metric points")
    ap.add_argument("--strace-runs", type=int, default=20, help="runs counted under strace")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    ap.add_argument(
        "--memory",
        default="/dev/shm" if os.path.isdir("/dev/shm") else None,
        help="a tmpfs folder for the in-memory sweep (default /dev/shm; '' to skip it)",
    )
    ap.add_argument(
        "--dir",
        default=None,
        help="where the temp folder (repository, stores) is made (default: the system's temp "
        "folder; on a disk whose temp folder sees heavy churn, a folder elsewhere on it)",
    )
    args = ap.parse_args()
    tools = [t for t in args.tools.split(",") if t]
    root = Path(tempfile.mkdtemp(prefix="reprokit-peers-", dir=args.dir))
    _common.PYCACHE = str(root / "pycache")
    if args.memory:
        args.memory = tempfile.mkdtemp(prefix="reprokit-peers-", dir=args.memory)
    else:
        args.memory = None
    try:
        installed = [t for t in tools if available(t)]
        repo = make_repo(root, installed)
        fsyncs = [fsync_latency(root, "start")]
        results: dict[str, dict[str, float] | None] = {}
        for tool in tools:
            if tool not in installed:
                results[tool] = None
                print(f"  {tool}: not installed", flush=True)
                continue
            if tool == "mlflow":  # create the SQLite store and its schema outside the timings
                for tag in ["one", "points", "strace-1", f"strace-{args.strace_runs + 1}",
                            *(f"sweep-{k}" for k in range(args.sweeps))]:  # fmt: skip
                    run_child([PY, "-c", "import run_mlflow"], repo, env_for(root, tool, tag))
            try:
                results[tool] = measure(tool, repo, root, args)
            except Exception as exc:
                print(f"  {tool}: failed: {exc}", flush=True)
                results[tool] = None
            fsyncs.append(fsync_latency(root, tool))
        fsync_s = statistics.median(fsyncs)
        ref = results.get("reprokit") or {}
        print()
        print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; in {root.parent}; "
              f"fsync (4 KiB, new file) "
              f"median {fsync_s * 1e3:.2f} ms over the run "
              f"({min(fsyncs) * 1e3:.2f}–{max(fsyncs) * 1e3:.2f} ms between tools); untracked "
              f"script {ref.get('one_plain_ms', 0):.0f} ms, untracked toy call "
              f"{ref.get('sweep_plain_ms', 0):.3f} ms")  # fmt: skip
        slow = [TITLES[t] for t, r in results.items() if r and r.get("create_us", 0) > 150]
        if slow:
            print(f"  note: creating a folder and a file took over 150 µs during the sweeps of "
                  f"{', '.join(slow)}: file creation is slow on this disk right now (on ext4 "
                  "without a journal, files deleted in the last minutes slow every new one); "
                  "run again a few minutes after deleting many files")  # fmt: skip
        for t, r in results.items():
            if r is not None:
                print(f"  {TITLES[t]}: sweep {r['sweep_ms_min']:.2f}–{r['sweep_ms_max']:.2f} ms "
                      f"per run over {args.sweeps} processes ({int(r['runs_done'])} runs each); "
                      f"{int(r['points'])} points logged")  # fmt: skip
        print()
        print(table(results, fsync_s))
    finally:
        if args.keep:
            print(f"kept {root}" + (f" and {args.memory}" if args.memory else ""))
        else:
            rmtree(root)
            if args.memory:
                rmtree(Path(args.memory))


if __name__ == "__main__":
    main()
