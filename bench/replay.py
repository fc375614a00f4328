"""Replay-overhead benchmark for reprokit. Run by hand: ``python bench/replay.py``.

For each repository size (200 and 20,000 committed small files in nested folders, plus a
committed ``train.py`` and one uncommitted edit to a tracked file) it builds a throwaway git
repository in a temp folder, records one run of ``train.py`` (``@reprokit.track def train``
with a few ``log_metric`` and ``checkpoint`` calls), then measures, in the same run:

- baseline: ``python train.py`` run directly (it records a run too: same work, same capture);
- replay:   ``python -m reprokit replay <run id> -q``, interleaved with the baseline.

The FIXED replay overhead is replay - baseline: verify + rebuild of the source tree (checkout
and tree verification) + environment drift + comparison + recording the replay, i.e. all but
the re-executed run's own time.                 (budgets: <= 1 s on 200 files, <= 3 s on 20,000)

Two what-ifs, with reprokit unchanged, are timed beside them (3 processes each): git's parallel
checkout (``checkout.workers=0`` passed as config through the environment) and the scratch folder
on tmpfs (``TMPDIR=/dev/shm``). One more replay per size runs under cProfile and is broken down
by phase: verify, rebuild_source, environment_drift, child process, comparison, recording the
replay, removing the rebuilt tree, and startup outside ``replay()``. The bench prints a
table with PASS/FAIL per budget but never asserts: timings depend on the machine. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common
from _common import child_env, git, rmtree

PY = sys.executable

TRAIN = """\
import reprokit


@reprokit.track
def train(lr=0.1):
    acc = 0.0
    for epoch in range(3):
        for i in range(20000):
            acc += lr * (i % 7)
        reprokit.log_metric("loss", 1.0 / (1.0 + acc), step=epoch)
        reprokit.checkpoint(f"epoch-{epoch}", acc)
    reprokit.log_metric("final_acc", acc)
    return acc


if __name__ == "__main__":
    train()
"""

SMALL = "VALUE_{i} = {i}\n"

# -- helpers -------------------------------------------------------------------------------------


SHM = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def small_path(i: int) -> str:
    """pkg/aNN/bNN/mNNNNN.py: 100 files a folder, 20 folders under each of n/2000 top folders."""
    return f"pkg/a{i // 2000:02d}/b{(i // 100) % 20:02d}/m{i:05d}.py"


def make_repo(root: Path, n_files: int) -> Path:
    repo = root / f"repo-{n_files}"
    made: set[str] = set()
    for i in range(n_files):
        rel = small_path(i)
        folder = os.path.join(repo, os.path.dirname(rel))
        if folder not in made:
            os.makedirs(folder, exist_ok=True)
            made.add(folder)
        with open(os.path.join(repo, rel), "w") as fh:
            fh.write(SMALL.format(i=i))
    (repo / "train.py").write_text(TRAIN)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "generated")
    # The one uncommitted change, to a tracked file: the run's tree is a snapshot tree, not HEAD.
    with open(repo / small_path(0), "a") as fh:
        fh.write("UNCOMMITTED = True\n")
    return repo


def timed(
    cmd: list[str], cwd: Path, extra_env: dict[str, str] | None = None
) -> tuple[float, subprocess.CompletedProcess]:
    env = dict(child_env(), **(extra_env or {}))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return dt, proc


def interleaved(
    cases: list[tuple[list[str], dict[str, str] | None, int]], cwd: Path
) -> list[list[float]]:
    """Timings of each (command, extra environment, count), rotating which goes first."""
    out: list[list[float]] = [[] for _ in cases]
    for i in range(max(n for _, _, n in cases)):
        for j in range(len(cases)):
            c = (i + j) % len(cases)
            cmd, env, n = cases[c]
            if i < n:
                out[c].append(timed(cmd, cwd, env)[0])
    return out


def ms(s: float) -> str:
    return f"{s * 1e3:.1f} ms"


def count_runs(repo: Path) -> int:
    runs = repo / ".reprokit" / "runs"
    return sum(1 for d in runs.iterdir() if (d / "manifest.yaml").exists()) if runs.exists() else 0


def first_warning(stderr: str) -> str | None:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    return lines[0][:200] if lines else None


def recorded_run(repo: Path) -> str:
    from reprokit import load

    return load("latest", store=repo / ".reprokit").id


# -- the profile breakdown ------------------------------------------------------------------------


def print_breakdown(prof: Path, wall: float, pkg_dir: str, top: int = 15) -> dict[str, float]:
    """Print where one profiled replay spent its time, by phase; return {phase: seconds}.

    Phases are found by function name wherever they sit in the call tree, so the breakdown
    survives code moving between helpers. They never nest in each other.
    """
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

    def keys(module: str, func: str) -> list[tuple]:
        """Profile keys of ``func`` in ``module`` (a reprokit module, or a stdlib file name)."""
        if module.startswith("_"):
            want = os.path.join(pkg_dir, *module.split(".")) + ".py"
            return [k for k in st if k[0] == want and k[2] == func]
        return [k for k in st if os.path.basename(k[0]) == module + ".py" and k[2] == func]

    def cum(module: str, func: str) -> float:
        return sum(st[k][3] for k in keys(module, func))

    def edge(module: str, func: str, caller_module: str, caller: str | None = None) -> float:
        """Time in ``func`` when called from reprokit's ``caller_module`` (or its ``caller``)."""
        cfile = os.path.join(pkg_dir, *caller_module.split(".")) + ".py"
        return sum(
            t[3]
            for k in keys(module, func)
            for c, t in st[k][4].items()
            if c[0] == cfile and caller in (None, c[2])
        )

    in_replay = cum("_replay", "replay")
    if not in_replay:
        print("  (_replay.replay() not found in the profile)")
        return {}
    phases = {
        "verify (ledger, digests) + load": cum("_store", "verify")
        + edge("_store", "load", "_replay", "replay"),
        "rebuild_source": cum("_replay", "rebuild_source"),
        "environment_drift": cum("_replay", "environment_drift"),
        "child process (the re-executed run)": edge("subprocess", "run", "_replay"),
        "comparison": sum(
            cum("_replay", f)
            for f in ("_new_runs", "_siblings", "compare_runs", "explain", "_compare_command")
        ),
        "record the replay (Run start + finish)": edge("_run", "start", "_replay")
        + edge("_run", "finish", "_replay")
        + edge("_run", "__init__", "_replay"),
        "remove the rebuilt tree": edge("shutil", "rmtree", "_replay", "replay"),
    }
    phases["other, inside replay()"] = in_replay - sum(phases.values())
    phases["startup, imports, CLI (outside replay())"] = total - in_replay
    print(
        f"  one replay under cProfile: {wall:.2f} s wall, {total:.2f} s profiled, "
        f"{in_replay:.2f} s inside _replay.replay()"
    )
    print(f"    {'ms':>8}  phase")
    subs = {  # phase: [(module, function called from the phase's function)]
        "rebuild_source": [("_replay", f) for f in ("_repo_with", "_checkout", "tree_of")],
        "environment_drift": [
            ("_capture.environment", "capture_environment"),
            ("_capture.hardware", "capture_hardware"),
        ],
    }
    for label, t in phases.items():
        print(f"    {t * 1e3:8.1f}  {label}")
        for module, func in subs.get(label, []):
            t_sub = edge(module, func, "_replay", label)
            print(f"    {'':8}    {t_sub * 1e3:8.1f}  {func}")

    own = [k for k in st if k[0].startswith(pkg_dir)]
    print(f"  top {top} reprokit functions by cumulative time")
    print(f"    {'cum ms':>8} {'self ms':>8} {'calls':>6}  function")
    for k in sorted(own, key=lambda k: -st[k][3])[:top]:
        _, nc, tt, ct, _ = st[k]
        print(f"    {ct * 1e3:8.1f} {tt * 1e3:8.1f} {nc:6d}  {name(k)}")
    n_git = sum(st[k][1] for k in keys("_capture.git", "git"))
    print(f"  git commands run through reprokit's git() helper: {n_git}")
    return phases


# -- the measurement -------------------------------------------------------------------------------


def bench_size(tmp: Path, n_files: int, k: int, budget: float, pkg_dir: str, results: list) -> None:
    print(f"\n[{n_files} files] building the repository")
    t0 = time.perf_counter()
    repo = make_repo(tmp, n_files)
    print(
        f"  {repo}: {n_files} committed small files + train.py, 1 uncommitted edit "
        f"({time.perf_counter() - t0:.1f} s to build)"
    )
    base = [PY, "train.py"]
    dt, first = timed(base, repo)  # the recorded run; fills the bytecode and page caches
    rid = recorded_run(repo)
    print(f"  recorded run {rid} ({ms(dt)})")
    if first_warning(first.stderr):
        print(f"  train.py stderr: {first_warning(first.stderr)}")
    rep = [PY, "-m", "reprokit", "replay", rid, "-q"]
    dt, warm = timed(rep, repo)  # warm-up, and a check that the replay is identical
    verdict = (warm.stdout.strip().splitlines() or ["(no verdict)"])[0]
    print(f"  warm-up replay ({dt:.2f} s): {verdict}")

    # What-ifs, reprokit itself unchanged: (1) git's parallel checkout, one worker per core,
    # passed as config through the environment; (2) the scratch folder (rebuilt tree) on tmpfs.
    whatifs = {
        "checkout.workers=0": {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "checkout.workers",
            "GIT_CONFIG_VALUE_0": "0",
        }
    }
    if SHM is not None:
        whatifs[f"TMPDIR={SHM}"] = {"TMPDIR": SHM}
    kw = max(1, min(k, 3))
    before = count_runs(repo)
    print(f"  timing: median of {k} processes each ({kw} for each what-if), interleaved")
    tb, tr, *tw = interleaved(
        [(base, None, k), (rep, None, k), *((rep, env, kw) for env in whatifs.values())], repo
    )
    recorded = count_runs(repo) - before
    mb, mr = statistics.median(tb), statistics.median(tr)
    print(f"    python train.py (baseline)          {ms(mb):>10}  (min {ms(min(tb))})")
    print(f"    reprokit replay <id> -q             {ms(mr):>10}  (min {ms(min(tr))})")
    print(f"    overhead (replay - baseline)        {ms(mr - mb):>10}")
    results.append(
        (f"replay overhead, {n_files} files", mr - mb, f"<= {budget:g} s", mr - mb <= budget)
    )
    for label, t in zip(whatifs, tw, strict=True):
        mw = statistics.median(t)
        print(f"    what-if {label:<27} {ms(mw):>10}  (overhead {ms(mw - mb)})")
        results.append((f"  what-if {label}", mw - mb, f"<= {budget:g} s", mw - mb <= budget))
    expected = k + 2 * (k + kw * len(whatifs))
    print(
        f"  runs recorded while timing: {recorded} (expected {expected}: 1 a baseline, 2 a replay)"
    )

    prof = tmp / f"replay-{n_files}.prof"
    wall, _ = timed([PY, "-m", "cProfile", "-o", str(prof), *rep[1:]], repo)
    print_breakdown(prof, wall, pkg_dir)
    t0 = time.perf_counter()
    rmtree(repo)
    print(f"  (removing the repository took {time.perf_counter() - t0:.1f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=7, help="processes per case and size")
    ap.add_argument(
        "--sizes",
        default="200,20000",
        help="comma-separated file counts (default 200,20000; budgets: 1 s up to 200, else 3 s)",
    )
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
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout

    started = time.perf_counter()
    scratch_dirs = [Path(tempfile.gettempdir()), *([Path(SHM)] if SHM else [])]
    scratch_before = {p for d in scratch_dirs for p in d.glob("reprokit-replay-*")}
    tmp = Path(tempfile.mkdtemp(prefix="reprokit-bench-replay-"))
    results: list = []
    try:
        if not args.no_pyc:
            _common.PYCACHE = str(tmp / "pycache")
        print(
            f"python {sys.version.split()[0]} ({PY}), {git_version.strip()}, {os.cpu_count()} CPUs"
        )
        print(
            "bytecode: "
            + (
                f"cached under {_common.PYCACHE}"
                if _common.PYCACHE
                else "as the environment says (PYTHONDONTWRITEBYTECODE="
                f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r})"
            )
        )
        for n in (int(s) for s in args.sizes.split(",") if s.strip()):
            bench_size(tmp, n, args.procs, 1.0 if n <= 200 else 3.0, pkg_dir, results)
    finally:
        if args.keep:
            print(f"\nkept {tmp}")
        else:
            rmtree(tmp)
        # Every replay must remove its scratch folder (the rebuilt tree) itself.
        left = {
            d
            for d in {p for s in scratch_dirs for p in s.glob("reprokit-replay-*")} - scratch_before
            if (d / "source" / "pkg").is_dir()  # other people's replays may run meanwhile
        }
        if left:
            print(f"\nnote: replays left {len(left)} scratch folder(s): {sorted(left)[:3]}")

    print(f"\nSummary (total bench time {time.perf_counter() - started:.0f} s)")
    print(f"  {'figure':<34} {'measured':>12}  {'budget':<10} result")
    for label, value, budget, ok in results:
        print(f"  {label:<34} {ms(value):>12}  {budget:<10} {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
