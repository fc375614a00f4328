"""Capture-overhead benchmark for reprokit. Run by hand: ``python bench/capture.py``.

Builds a throwaway git repository (200 committed .py modules in a few subfolders, plus the bench
scripts, and one uncommitted edit to a tracked file) in a temp folder and measures, each against
a baseline taken in the same run:

1. ``import reprokit`` in a fresh interpreter vs ``python -c pass``   (budget <= 15 ms)
2. one ``@reprokit.track`` run, whole process, vs the same script without reprokit
                                                                          (budget <= 40 ms)
3. per-run cost inside a 100-call sweep in one process                   (budget <= 2 ms/run)
4. ``reprokit._model.digest.sha256_file`` vs ``hashlib.file_digest`` on 512 MB  (budget >= 90 %)

It prints a table with PASS/FAIL per budget but never asserts: timings depend on the machine.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import _common
from _common import child_env, git, rmtree

PY = sys.executable
HEAVY = ("git", "yaml", "psutil", "numpy")

TRAIN_BODY = """\
def train(lr=0.1):
    acc = 0.0
    for i in range(20000):
        acc += lr * (i % 7)
    return acc
"""

TRACKED = f"""\
import reprokit


@reprokit.track
{TRAIN_BODY}

if __name__ == "__main__":
    train()
"""

PLAIN = f"""\
{TRAIN_BODY}

if __name__ == "__main__":
    train()
"""

SWEEP = f"""\
import json
import sys
import time

import reprokit

{TRAIN_BODY}

tracked = reprokit.track(train)


def main():
    n = int(sys.argv[1])
    train(lr=0.5)
    tracked(lr=0.5)  # warm-up: first call captures code, environment, hardware
    t0 = time.perf_counter()
    for i in range(n):
        train(lr=0.001 * (i + 1))
    t1 = time.perf_counter()
    for i in range(n):
        tracked(lr=0.001 * (i + 1))
    t2 = time.perf_counter()
    print(json.dumps({{"untracked_s": t1 - t0, "tracked_s": t2 - t1}}))
    if len(sys.argv) > 2:  # profile one more round of tracked calls
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
        for i in range(n):
            tracked(lr=0.001 * (i + 1))
        prof.disable()
        prof.dump_stats(sys.argv[2])


if __name__ == "__main__":
    main()
"""

MODULE = '''\
"""Generated module {i} for the reprokit capture benchmark."""

CONSTANT_{i} = {i}


def f_{i}(x):
    return x * {i} + CONSTANT_{i}


class Thing{i}:
    def __init__(self, value=0):
        self.value = value

    def step(self):
        self.value = f_{i}(self.value)
        return self.value
'''


# -- helpers -------------------------------------------------------------------------------------


def make_repo(root: Path, n_modules: int = 200) -> Path:
    repo = root / "repo"
    subdirs = ["data", "models", "training", "utils", "eval"]
    for i in range(n_modules):
        path = repo / "proj" / subdirs[i % len(subdirs)] / f"mod_{i:03d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(MODULE.format(i=i))
    (repo / "train_tracked.py").write_text(TRACKED)
    (repo / "train_plain.py").write_text(PLAIN)
    (repo / "sweep.py").write_text(SWEEP)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "generated")
    # The one uncommitted change, to a tracked file: every capture must snapshot it.
    with open(repo / "proj" / "models" / "mod_001.py", "a") as fh:
        fh.write("\nUNCOMMITTED = True\n")
    return repo


def timed(cmd: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=child_env(), capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return dt, proc


def interleaved(a: list[str], b: list[str], n: int, cwd: Path) -> tuple[list[float], list[float]]:
    """n timings each of commands a and b, alternating which goes first."""
    ta, tb = [], []
    for i in range(n):
        order = ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta))
        for cmd, sink in order:
            sink.append(timed(cmd, cwd)[0])
    return ta, tb


def ms(s: float) -> str:
    return f"{s * 1e3:.1f} ms"


def parse_importtime(stderr: str) -> dict[str, tuple[int, int]]:
    """{module: (self us, cumulative us)} from ``-X importtime`` output."""
    out = {}
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s+)(\S+)", line)
        if m:
            out[m.group(4)] = (int(m.group(1)), int(m.group(2)))
    return out


def importtime(args: list[str], cwd: Path, repeat: int = 5) -> dict[str, tuple[float, float]]:
    """Median (self, cumulative) import time in ms per module over ``repeat`` processes."""
    samples: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for _ in range(repeat):
        _, proc = timed([PY, "-X", "importtime", *args], cwd)
        for mod, v in parse_importtime(proc.stderr).items():
            samples[mod].append(v)
    return {
        mod: (statistics.median(s for s, _ in v) / 1e3, statistics.median(c for _, c in v) / 1e3)
        for mod, v in samples.items()
    }


def print_import_top(
    label: str, times: dict[str, tuple[float, float]], bare: set[str], top: int
) -> None:
    extra = {m: v for m, v in times.items() if m not in bare}
    total = sum(s for s, _ in extra.values())
    print(f"  {label}: {len(extra)} modules beyond a bare interpreter, {total:.1f} ms self time")
    print(f"    {'self ms':>8} {'cum ms':>8}  module")
    for mod, (s, c) in sorted(extra.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"    {s:8.2f} {c:8.2f}  {mod}")


def count_runs(repo: Path) -> int:
    runs = repo / ".reprokit" / "runs"
    return sum(1 for d in runs.iterdir() if (d / "manifest.yaml").exists()) if runs.exists() else 0


def first_warning(stderr: str) -> str | None:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    return lines[0][:200] if lines else None


# -- the four measurements ----------------------------------------------------------------------


def bench_import(repo: Path, n: int, results: list) -> set[str]:
    print(f"\n[1] import reprokit: median of {n} fresh processes each, interleaved")
    bare, rk = interleaved([PY, "-c", "pass"], [PY, "-c", "import reprokit"], n, repo)
    mb, mr = statistics.median(bare), statistics.median(rk)
    print(f"  python -c pass             {ms(mb)}  (min {ms(min(bare))})")
    print(f"  python -c 'import reprokit' {ms(mr)}  (min {ms(min(rk))})")
    results.append(("import reprokit (over bare python)", mr - mb, "<= 15 ms", mr - mb <= 0.015))

    probe = (
        "import json, sys, reprokit; "
        f"print(json.dumps({{m: m in sys.modules for m in {list(HEAVY)!r}}}))"
    )
    loaded = json.loads(timed([PY, "-c", probe], repo)[1].stdout)
    heavy = [m for m, v in loaded.items() if v]
    print(
        "  in sys.modules after import: "
        + ", ".join(f"{m}={'YES' if v else 'no'}" for m, v in loaded.items())
    )
    results.append(
        (
            "no git/yaml/psutil/numpy at import",
            0.0 if not heavy else None,
            "none loaded",
            not heavy,
            ", ".join(heavy) or "none",
        )
    )

    bare_mods = set(importtime(["-c", "pass"], repo, repeat=3))
    rk_times = importtime(["-c", "import reprokit"], repo)
    print_import_top("-X importtime, import reprokit (median of 5)", rk_times, bare_mods, 12)
    return bare_mods


def bench_one_run(repo: Path, n: int, bare_mods: set[str], pkg_dir: str, results: list) -> None:
    print(f"\n[2] one tracked run, whole process: median of {n} processes each, interleaved")
    plain = [PY, "train_plain.py"]
    tracked = [PY, "train_tracked.py"]
    before = count_runs(repo)
    timed(plain, repo)
    _, warm = timed(tracked, repo)  # warm-up: creates the store, warms the page cache
    warning = first_warning(warm.stderr)
    tp, tt = interleaved(plain, tracked, n, repo)
    recorded = count_runs(repo) - before
    mp, mt = statistics.median(tp), statistics.median(tt)
    print(f"  untracked script   {ms(mp)}  (min {ms(min(tp))})")
    print(f"  tracked script     {ms(mt)}  (min {ms(min(tt))})")
    print(f"  runs recorded: {recorded} (expected {n + 1})")
    if warning:
        print(f"  tracked script stderr: {warning}")
    results.append(("one tracked run, whole process", mt - mp, "<= 40 ms", mt - mp <= 0.040))

    rk_times = importtime(["train_tracked.py"], repo, repeat=1)
    print_import_top("-X importtime, tracked script (1 process)", rk_times, bare_mods, 15)

    prof = repo.parent / "tracked.prof"
    timed([PY, "-m", "cProfile", "-o", str(prof), "train_tracked.py"], repo)
    print_profile(prof, pkg_dir, what="tracked script, 1 process")


def print_profile(prof: Path, pkg_dir: str, top: int = 15, what: str = "tracked script") -> None:
    st = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
    total = max(ct for _, _, _, ct, _ in st.values())

    def name(key: tuple) -> str:
        file, line, func = key
        if file.startswith(pkg_dir):
            file = "reprokit/" + os.path.relpath(file, pkg_dir)
        elif file == "~":
            return func
        else:
            file = os.path.basename(file)
        return f"{file}:{line}({func})"

    own = [k for k in st if k[0].startswith(pkg_dir)]
    print(
        f"  cProfile, {what} ({total * 1e3:.0f} ms profiled in total): "
        f"top {top} reprokit functions by cumulative time"
    )
    print(f"    {'cum ms':>8} {'self ms':>8} {'calls':>6}  function")
    for k in sorted(own, key=lambda k: -st[k][3])[:top]:
        cc, nc, tt, ct, _ = st[k]
        print(f"    {ct * 1e3:8.2f} {tt * 1e3:8.2f} {nc:6d}  {name(k)}")

    # Where it ends up: self time of everything reprokit calls, directly or not.
    callees: dict[tuple, set] = defaultdict(set)
    for k, (_, _, _, _, callers) in st.items():
        for c in callers:
            callees[c].add(k)
    seen, todo = set(own), list(own)
    while todo:
        for c in callees[todo.pop()]:
            if c not in seen:
                seen.add(c)
                todo.append(c)
    print(
        "  self time of functions reached from reprokit (top 10; shared functions count "
        "all their calls)"
    )
    print(f"    {'self ms':>8} {'calls':>6}  function")
    for k in sorted(seen, key=lambda k: -st[k][2])[:10]:
        print(f"    {st[k][2] * 1e3:8.2f} {st[k][1]:6d}  {name(k)}")


def bench_sweep(repo: Path, n: int, pkg_dir: str, results: list, procs: int = 3) -> None:
    print(
        f"\n[3] {n}-call sweep in one process (after one warm-up call each): "
        f"median of {procs} processes"
    )
    before = count_runs(repo)
    per_call, warning = [], None
    for _ in range(procs):
        _, proc = timed([PY, "sweep.py", str(n)], repo)
        data = json.loads(proc.stdout.strip().splitlines()[-1])
        per_call.append((data["tracked_s"] - data["untracked_s"]) / n)
        print(
            f"  {n} untracked calls {ms(data['untracked_s']):>10}   "
            f"{n} tracked calls {ms(data['tracked_s']):>10}   "
            f"overhead {per_call[-1] * 1e3:.2f} ms/run"
        )
        warning = warning or first_warning(proc.stderr)
    recorded = count_runs(repo) - before
    print(f"  runs recorded: {recorded} (expected {procs * (n + 1)})")
    if warning:
        print(f"  sweep stderr: {warning}")
    per = statistics.median(per_call)
    results.append(("per run in a sweep", per, "<= 2 ms", per <= 0.002))

    prof = repo.parent / "sweep.prof"
    timed([PY, "sweep.py", str(n), str(prof)], repo)
    print_profile(prof, pkg_dir, top=10, what=f"{n} more tracked calls of the sweep")


def bench_hash(tmp: Path, size_mb: int, results: list) -> None:
    from reprokit._model.digest import sha256_file

    print(f"\n[4] artifact hashing, {size_mb} MB file in page cache: best of 3, interleaved")
    path = tmp / "artifact.bin"
    chunk = 1 << 20
    with open(path, "wb") as fh:
        for _ in range(size_mb):
            fh.write(os.urandom(chunk))
    with open(path, "rb") as fh:  # warm read: into the page cache
        while fh.read(8 * chunk):
            pass
    t_rk, t_hl = [], []
    digests = set()
    for _ in range(3):
        t0 = time.perf_counter()
        hexdigest, size = sha256_file(path)
        t_rk.append(time.perf_counter() - t0)
        digests.add(hexdigest)
        t0 = time.perf_counter()
        with open(path, "rb") as fh:
            digests.add(hashlib.file_digest(fh, "sha256").hexdigest())
        t_hl.append(time.perf_counter() - t0)
    path.unlink()
    mbs = lambda t: size_mb / t  # noqa: E731
    ratio = min(t_hl) / min(t_rk)
    print(f"  hashlib.file_digest      {mbs(min(t_hl)):7.0f} MB/s  ({ms(min(t_hl))})")
    print(f"  reprokit sha256_file     {mbs(min(t_rk)):7.0f} MB/s  ({ms(min(t_rk))})")
    print(f"  same digest: {len(digests) == 1}; size reported: {size == size_mb * chunk}")
    results.append(("sha256_file vs hashlib.file_digest", ratio, ">= 90 %", ratio >= 0.90))


# -- main ---------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--import-procs", type=int, default=30, help="processes per case in [1]")
    ap.add_argument("--run-procs", type=int, default=15, help="processes per case in [2]")
    ap.add_argument("--sweep", type=int, default=100, help="calls per case in [3]")
    ap.add_argument("--hash-mb", type=int, default=512, help="artifact size in [4]")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (path printed)")
    ap.add_argument(
        "--no-pyc",
        action="store_true",
        help="inherit the environment as is (with PYTHONDONTWRITEBYTECODE=1 every process "
        "compiles reprokit from source); default: bytecode cached in the temp folder",
    )
    args = ap.parse_args()

    spec = importlib.util.find_spec("reprokit")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"reprokit is not importable by {PY}")
    pkg_dir = os.path.realpath(spec.submodule_search_locations[0]) + os.sep

    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="reprokit-bench-"))
    results: list = []
    try:
        if not args.no_pyc:
            _common.PYCACHE = str(tmp / "pycache")
        repo = make_repo(tmp)
        print(f"python {sys.version.split()[0]} ({PY}), {os.cpu_count()} CPUs")
        print(
            "bytecode: "
            + (
                f"cached under {_common.PYCACHE}"
                if _common.PYCACHE
                else "as the environment says (PYTHONDONTWRITEBYTECODE="
                f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r})"
            )
        )
        # Fill the bytecode cache (and the page cache) before anything is timed.
        timed([PY, "-c", "import reprokit"], repo)
        timed([PY, "train_tracked.py"], repo)
        print(f"repo: {repo} (200 committed modules + 3 scripts, 1 uncommitted edit)")
        bare_mods = bench_import(repo, args.import_procs, results)
        bench_one_run(repo, args.run_procs, bare_mods, pkg_dir, results)
        bench_sweep(repo, args.sweep, pkg_dir, results)
        bench_hash(tmp, args.hash_mb, results)
    finally:
        if args.keep:
            print(f"\nkept {tmp}")
        else:
            rmtree(tmp)

    print(f"\nSummary (total bench time {time.perf_counter() - started:.0f} s)")
    print(f"  {'figure':<38} {'measured':>12}  {'budget':<12} result")
    for row in results:
        label, value, budget, ok = row[:4]
        if len(row) > 4:
            shown = row[4]
        elif budget.endswith("%"):
            shown = f"{value * 100:.1f} %"
        else:
            shown = f"{value * 1e3:.2f} ms"
        print(f"  {label:<38} {shown:>12}  {budget:<12} {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
