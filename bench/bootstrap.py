"""Start-up cost of the hook ``reprokit run`` puts in a Python child. Run by hand:
``python bench/bootstrap.py [-n 40]``.

Measured against a baseline taken in the same run, interleaved (so machine load hits both):

1. a script that does nothing, whole process, with the hook vs without   (budget <= 5 ms):
   the hook's start-up (seeding armed, argparse watched) and its report at exit;
2. a script that imports ``random``, whole process: the hook seeds it as it loads (no budget);
3. a small argparse script, whole process: with the hook (argparse recorded, the report
   written twice, its own files listed at exit) vs without              (no budget; shown);
4. the empty script as one of a launcher's workers (torchrun, accelerate launch): the hook as
   the launcher hands it on, reporting into the workers' folder          (budget <= 5 ms).

Each as wall-clock time and as the child's CPU time (user + system, from getrusage), which a
loaded machine disturbs less.

Bytecode is cached in a temp folder, as an installed package has it. It prints medians and
PASS/FAIL but never asserts: timings depend on the machine. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common
from _common import child_env, rmtree

from reprokit._model.protocol import ChildProtocol, variable
from reprokit._record.bootstrap import bootstrap_env

PY = sys.executable
EMPTY = "pass\n"
SEEDED = "import random\nrandom.random()\n"
ARGPARSE = """\
import argparse
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=0.1)
p.add_argument("--epochs", type=int, default=3)
args = p.parse_args()
"""


def _time(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def measure(
    script: str, folder: Path, n: int, args: list[str], worker: bool = False
) -> list[tuple[float, float]]:
    """[(median without the hook, median with it)] in seconds, wall then CPU time, over ``n``
    interleaved pairs. ``worker``: the program is a launcher's worker."""
    path = folder / "prog.py"
    path.write_text(script)
    plain = child_env()
    hooked = dict(plain)
    report = str(folder / "child.json")
    bootstrap_env(hooked, report, {"launcher": "torchrun"} if worker else None)
    if worker:
        # What a worker inherits: the launcher keeps the hook on the path and the workers'
        # folder, and takes its own report file out of the environment.
        hooked.pop(variable("child_report"))
        report = report + ".workers"
    ChildProtocol(seed=0).apply(hooked)
    plain["PYTHONHASHSEED"] = hooked["PYTHONHASHSEED"] = "0"
    argv = [PY, str(path), *args]
    for _ in range(3):  # warm the bytecode cache and the page cache
        _time(argv, folder, plain)
        _time(argv, folder, hooked)
    base, hook = [], []
    for _ in range(n):
        base.append(_time(argv, folder, plain))
        hook.append(_time(argv, folder, hooked))
    if not os.path.exists(report) or (worker and not os.listdir(report)):
        raise SystemExit("the hook did not report: it did not run")
    return [
        (statistics.median(b[i] for b in base), statistics.median(h[i] for h in hook))
        for i in (0, 1)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=40, help="interleaved pairs per measurement")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="reprokit-bench-bootstrap-"))
    _common.PYCACHE = str(tmp / "pycache")
    try:
        rows = []
        empty = measure(EMPTY, tmp, args.n, [])
        for (base, hook), what in zip(empty, ("wall", "CPU"), strict=True):
            over = (hook - base) * 1000
            rows.append((f"empty script, {what}", base, hook, over, "<= 5 ms", over <= 5.0))
        for (base, hook), what in zip(
            measure(SEEDED, tmp, args.n, []), ("wall", "CPU"), strict=True
        ):
            over = (hook - base) * 1000
            rows.append((f"imports random (seeded), {what}", base, hook, over, "-", None))
        for (base, hook), what in zip(
            measure(ARGPARSE, tmp, args.n, ["--lr", "0.2"]), ("wall", "CPU"), strict=True
        ):
            over = (hook - base) * 1000
            rows.append((f"argparse script, {what}", base, hook, over, "-", None))
        for (base, hook), what in zip(
            measure(EMPTY, tmp, args.n, [], worker=True), ("wall", "CPU"), strict=True
        ):
            over = (hook - base) * 1000
            rows.append((f"launcher's worker, {what}", base, hook, over, "<= 5 ms", over <= 5.0))
        print(f"python {sys.version.split()[0]}, {args.n} pairs each, medians")
        print(f"{'':34}{'plain':>10}{'hooked':>10}{'overhead':>11}  budget")
        for name, b, h, o, budget, ok in rows:
            verdict = "" if ok is None else ("PASS" if ok else "FAIL")
            print(f"{name:34}{b * 1000:>8.1f}ms{h * 1000:>8.1f}ms{o:>9.1f}ms  {budget} {verdict}")
    finally:
        rmtree(tmp)


if __name__ == "__main__":
    main()
