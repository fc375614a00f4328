"""GPU-host check and figures. Run by hand on a machine with an NVIDIA GPU and PyTorch:
``python bench/gpu.py``.

Builds a throwaway git repository and measures / checks, each against a baseline in the same run:

1. one tracked run as a whole process, with torch imported and CUDA initialised, vs the same
   script untracked (interleaved pairs, medians), and the hardware capture alone;
2. what the manifest says of the GPU (name, memory, driver, CUDA, compute capability, source);
3. verdicts on CUDA: ``index_add_`` with float atomics recorded without deterministic mode is
   audited with ``reprokit check`` (expected: not deterministic, a CUDA cause named), and the same
   program with ``deterministic=True`` (expected: deterministic).

It prints what it found and never asserts: figures depend on the machine (bench/README.md).

``python bench/gpu.py --cpu`` runs step 1 alone with PyTorch on the CPU (no GPU needed): what a
process that imports torch pays for one tracked run. Besides the whole-process figure (which
torch's own import time, varying by tens of milliseconds, makes noisy), each process reports
the time from torch's import to its end, which is what reprokit adds without that noise.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common
from _common import child_env, wall_and_rss

PY = sys.executable

TRAIN = """\
import sys
import torch
import reprokit

DET = len(sys.argv) > 1 and sys.argv[1] == "det"


@reprokit.track(deterministic=DET)
def train(n=1 << 20):
    dev = torch.device("cuda")
    x = torch.randn(n, device=dev)
    index = torch.randint(0, 64, (n,), device=dev)
    out = torch.zeros(64, device=dev)
    if DET:
        out = out.double()
        x = x.double()
    out.index_add_(0, index, x)  # float atomics: order-dependent sums without deterministic mode
    reprokit.checkpoint("sums", out.cpu())
    return float(out.sum().item())


print(train())
"""

PLAIN = """\
import time
import torch
t0 = time.perf_counter()
torch.zeros(1, device=DEVICE)
print(1)
print(time.perf_counter() - t0)
"""

TRACKED = """\
import time
import torch
t0 = time.perf_counter()
import reprokit
torch.zeros(1, device=DEVICE)


@reprokit.track
def f(x=1):
    return x


print(f())
print(time.perf_counter() - t0)
"""


def _env(**extra: str) -> dict[str, str]:
    env = child_env()  # (bytecode cached in a temp folder, as an installed package has it)
    env.update(
        GIT_AUTHOR_NAME="b",
        GIT_AUTHOR_EMAIL="b@example.com",
        GIT_COMMITTER_NAME="b",
        GIT_COMMITTER_EMAIL="b@example.com",
        PYTHONHASHSEED="0",
    )
    env.update(extra)
    return env


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, env=_env(), check=True, capture_output=True)


def _timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, seconds after torch's import as the process measured them)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-400:]}")
    return wall, float(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    import torch

    cpu = "--cpu" in sys.argv[1:]
    if not cpu and not torch.cuda.is_available():
        print("no CUDA device: nothing to check here (--cpu measures step 1 with torch on the CPU)")
        return 2
    device = "cpu" if cpu else "cuda"
    repo = Path(tempfile.mkdtemp(prefix="reprokit-gpu-"))
    _common.PYCACHE = tempfile.mkdtemp(prefix="reprokit-gpu-pycache-")
    _git(repo, "init", "-q", "-b", "main")
    for name, text in (("train.py", TRAIN), ("plain.py", PLAIN), ("tracked.py", TRACKED)):
        (repo / name).write_text(text.replace("DEVICE", repr(device)))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "bench")

    what = "on the CPU" if cpu else "and CUDA initialised"
    print(f"[1] whole process, torch imported {what} (median of interleaved pairs)")
    _timed([PY, "plain.py"], repo)  # warm caches
    _timed([PY, "tracked.py"], repo)
    plain, tracked = [], []
    for _ in range(int(os.environ.get("GPU_BENCH_PAIRS", "8"))):
        plain.append(_timed([PY, "plain.py"], repo))
        tracked.append(_timed([PY, "tracked.py"], repo))
    mp, mt = statistics.median(p[0] for p in plain), statistics.median(t[0] for t in tracked)
    ip, it = statistics.median(p[1] for p in plain), statistics.median(t[1] for t in tracked)
    print(
        f"    untracked {mp * 1000:.0f} ms, tracked {mt * 1000:.0f} ms: +{(mt - mp) * 1000:.0f} ms"
    )
    print(
        f"    after torch's import: untracked {ip * 1000:.1f} ms, tracked {it * 1000:.1f} ms: "
        f"+{(it - ip) * 1000:.1f} ms (import reprokit, the run, its seal)"
    )
    pp = statistics.median(wall_and_rss([PY, "plain.py"], repo, _env())[1] for _ in range(3))
    pt = statistics.median(wall_and_rss([PY, "tracked.py"], repo, _env())[1] for _ in range(3))
    print(f"    peak memory: untracked {pp:.1f} MiB, tracked {pt:.1f} MiB: +{pt - pp:.1f} MiB")
    if cpu:
        return 0
    code = (
        "import time, torch; from reprokit._capture.hardware import capture_hardware;"
        "t=time.perf_counter(); hw=capture_hardware(); d=time.perf_counter()-t;"
        "import json; print(json.dumps({'ms': d*1000, 'gpus': hw.get('gpus'),"
        "'source': hw.get('gpu_source'), 'torch': hw.get('torch')}, default=str))"
    )
    proc = subprocess.run([PY, "-c", code], env=_env(), capture_output=True, text=True)
    hw = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {}
    print(f"    hardware capture alone: {hw.get('ms', float('nan')):.1f} ms")
    print("[2] the GPU as recorded")
    print(f"    source {hw.get('source')}; gpus {json.dumps(hw.get('gpus'))}")
    print(f"    torch {json.dumps(hw.get('torch'))}")

    print("[3] verdicts on CUDA")
    for label, args in (("index_add_, default mode", []), ("index_add_, deterministic", ["det"])):
        rec = subprocess.run(
            [PY, "train.py", *args], cwd=repo, env=_env(), capture_output=True, text=True
        )
        if rec.returncode != 0:
            print(f"    {label}: the program failed: {rec.stderr.strip()[-400:]}")
            continue
        chk = subprocess.run(
            [PY, "-m", "reprokit", "check", "latest", "-n", "3", "--json"],
            cwd=repo,
            env=_env(),
            capture_output=True,
            text=True,
        )
        try:
            report = json.loads(chk.stdout)
        except ValueError:
            print(f"    {label}: check exit {chk.returncode}: {chk.stderr.strip()[-400:]}")
            continue
        rep = subprocess.run(
            [PY, "-m", "reprokit", "replay", "latest", "--json"],
            cwd=repo,
            env=_env(),
            capture_output=True,
            text=True,
        )
        try:
            verdict = json.loads(rep.stdout)["verdict"]
        except (ValueError, KeyError):
            verdict = f"exit {rep.returncode}: {rep.stderr.strip()[-200:]}"
        print(
            f"    {label}: check exit {chk.returncode}, deterministic={report['deterministic']}; "
            f"replay verdict {verdict} (exit {rep.returncode})"
        )
        for s in report.get("suspects") or []:
            print(f"      suspect: {s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
