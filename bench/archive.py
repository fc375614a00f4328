"""Archive-speed benchmark for reprokit. Run by hand: ``python bench/archive.py``.

Builds a throwaway git repository in a temp folder with a committed ``train.py``
(``@reprokit.track def train`` that writes one big artifact to the git-ignored ``out/`` folder and
calls ``reprokit.log_artifact`` on it) and records one run. Then, in the same run:

- reprokit: ``python -m reprokit archive <run id> -o out.tar.gz --max-artifact-size <> file``
  (whole process: verify, source rebuild, the artifact, REPRODUCE.md, RO-Crate, checksums);
- tar -6:   ``tar czf ref.tar.gz out/artifact.bin`` (gzip's default level 6, the level
  reprokit's ``_Writer`` uses): the budget's reference;
- tar -9:   ``tar -I 'gzip -9' -cf ref.tar.gz out/artifact.bin``, for comparison.

The three commands run interleaved (the order rotates every round), ``--rounds`` times each,
from a warm page cache. The figure is tar time / reprokit time on the best round of each
(budget >= 80 % against tar -6, i.e. reprokit at most 1.25x tar at the same level); the ratio
against tar -9 is reported beside it. One more archive runs in this process under cProfile
(``reprokit.archive(...)``), and its time is split into compression (zlib), gzip's CRC, SHA-256
hashing while packing, a separate hashing pass (``sha256_file``), file reads, writes, and the
rest (Python overhead, source rebuild, templates).

Artifact content (``--size`` MB, default 1024): 1 MiB chunks alternating between random bytes
(``os.urandom``, incompressible) and CSV text of floats (8 distinct 1 MiB blocks of
``%.6f``/``%.4e`` numbers from a seeded generator, cycled: gzip's 32 KiB window cannot see the
repetition, so the text compresses like real float text, about 2.3x).

Runtime on a 2-core VM: about 3 min with ``--size 256``; the default 1 GB takes about 12 min.
Prints a table with PASS/FAIL but never asserts: timings depend on the machine.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import cProfile
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
MB = 1 << 20

TRAIN = """\
import os
import random
import sys

import reprokit

MB = 1 << 20


def float_blocks(n=8):
    rng = random.Random(1234)
    blocks = []
    for _ in range(n):
        lines, size = [], 0
        while size < MB:
            row = [f"{rng.gauss(0, 1):.6f}" for _ in range(6)]
            row += [f"{rng.expovariate(3.0):.4e}", str(rng.randrange(10000))]
            line = ",".join(row) + "\\n"
            lines.append(line)
            size += len(line)
        blocks.append("".join(lines).encode()[:MB])
    return blocks


@reprokit.track
def train(size_mb=1024):
    os.makedirs("out", exist_ok=True)
    text = float_blocks()
    with open("out/artifact.bin", "wb") as fh:
        for i in range(size_mb):
            fh.write(os.urandom(MB) if i % 2 == 0 else text[(i // 2) % len(text)])
    reprokit.log_artifact("out/artifact.bin")
    return size_mb


if __name__ == "__main__":
    train(size_mb=int(sys.argv[1]))
"""


# -- helpers -------------------------------------------------------------------------------------


def timed(cmd: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=child_env(), capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return dt, proc


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True)
    (repo / "train.py").write_text(TRAIN)
    (repo / ".gitignore").write_text("out/\n*.tar.gz\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "generated")
    return repo


def warm(path: Path) -> None:
    with open(path, "rb") as fh:
        while fh.read(8 * MB):
            pass


def secs(s: float) -> str:
    return f"{s:.2f} s"


# -- measurements --------------------------------------------------------------------------------


def bench_wall(repo: Path, rid: str, size: int, rounds: int) -> dict[str, list[float]]:
    out_dir = repo.parent / "archives"
    out_dir.mkdir(exist_ok=True)
    limit = str(size + MB)
    rk_out, t9_out, t6_out = (str(out_dir / n) for n in ("rk.tar.gz", "t9.tar.gz", "t6.tar.gz"))
    cases = {
        "reprokit": (
            [PY, "-m", "reprokit", "archive", rid, "-o", rk_out, "--max-artifact-size", limit],
            rk_out,
        ),
        "tar -9": (["tar", "-I", "gzip -9", "-cf", t9_out, "out/artifact.bin"], t9_out),
        "tar -6": (["tar", "czf", t6_out, "out/artifact.bin"], t6_out),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    sizes: dict[str, int] = {}
    names = list(cases)
    print(f"\n[1] wall time, {rounds} rounds, order rotating each round")
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        line = []
        for name in order:
            cmd, produced = cases[name]
            dt, _ = timed(cmd, repo)
            times[name].append(dt)
            sizes[name] = os.path.getsize(produced)
            os.unlink(produced)
            line.append(f"{name} {secs(dt)}")
        print(f"  round {r + 1}: " + ", ".join(line))
    for name in names:
        t = times[name]
        print(
            f"  {name:<9} best {secs(min(t))}  median {secs(statistics.median(t))}  "
            f"{size / MB / min(t):6.1f} MB/s  output {sizes[name] / MB:7.1f} MB "
            f"({size / sizes[name]:.2f}x)"
        )
    return times


def bench_profile(repo: Path, rid: str, size: int, pkg_dir: str) -> dict[str, float]:
    import reprokit

    out = repo.parent / "archives" / "prof.tar.gz"
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    reprokit.archive([rid], out, store=repo / ".reprokit", max_artifact_size=size + MB)
    prof.disable()
    wall = time.perf_counter() - t0
    out.unlink()
    st = pstats.Stats(prof).stats  # type: ignore[attr-defined]

    def find(pred) -> list[tuple]:  # noqa: ANN001
        return [k for k in st if pred(k)]

    def self_time(keys: list[tuple]) -> float:
        return sum(st[k][2] for k in keys)

    def cum(keys: list[tuple]) -> float:
        return sum(st[k][3] for k in keys)

    compress = find(lambda k: k[0] == "~" and "zlib.Compress" in k[2])
    crc = find(lambda k: k[0] == "~" and "zlib.crc32" in k[2])
    sha_update = find(lambda k: k[0] == "~" and "_hashlib.HASH" in k[2] and "update" in k[2])
    sha256_file = find(lambda k: k[0].startswith(pkg_dir) and k[2] == "sha256_file")
    reads = find(lambda k: k[0] == "~" and ("'read' of '_io" in k[2] or "readinto" in k[2]))
    writes = find(lambda k: k[0] == "~" and "'write' of '_io" in k[2])

    # SHA-256 inside the packing pass: update() called from _Hashing.read.
    in_pass = 0.0
    for k in sha_update:
        for caller, (_, _, tt, _) in st[k][4].items():
            if caller[0].startswith(pkg_dir) and caller[2] == "read":
                in_pass += tt
    # The separate pass: sha256_file (file_digest's reads + hashing), cumulative.
    sep_pass = cum(sha256_file)
    sep_calls = sum(st[k][1] for k in sha256_file)
    # Reads inside the separate pass are already in sep_pass: count only the others.
    sep_reads = 0.0
    for k in reads:
        for caller, (_, _, tt, _) in st[k][4].items():
            if caller[2] == "file_digest":
                sep_reads += tt
    parts = {
        "zlib compression (Compress.compress/flush)": self_time(compress),
        "gzip CRC-32 (zlib.crc32)": self_time(crc),
        "SHA-256 in the packing pass (_Hashing.read)": in_pass,
        f"separate hashing pass: sha256_file x{sep_calls} (read + hash)": sep_pass,
        "file reads in the packing pass": self_time(reads) - sep_reads,
        "writes (tar -> gzip -> file)": self_time(writes),
    }
    rest = wall - sum(parts.values())
    parts["the rest: Python overhead, verify, source rebuild, templates"] = rest
    print(
        f"\n[2] cProfile of reprokit.archive(...) in this process: {secs(wall)} "
        f"({size / MB / wall:.1f} MB/s under the profiler)"
    )
    print(f"    {'s':>7} {'share':>6}  part")
    for label, v in parts.items():
        print(f"    {v:7.2f} {v / wall * 100:5.1f} %  {label}")
    files = [sha256_file[0]] if sha256_file else []
    for k in files:
        callers = ", ".join(f"{os.path.basename(c[0])}:{c[2]} x{v[1]}" for c, v in st[k][4].items())
        print(f"    sha256_file called from: {callers}")
    chunk_calls = sum(st[k][1] for k in compress)
    print(
        f"    zlib.Compress calls: {chunk_calls} (~{size / max(chunk_calls, 1) / 1024:.0f} KiB "
        "per call: tarfile's copy buffer)"
    )
    return {"wall": wall, **parts}


# -- main ---------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="artifact size in MB (default 1024)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the three commands")
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile breakdown")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (path printed)")
    ap.add_argument(
        "--no-pyc",
        action="store_true",
        help="inherit the environment as is; default: bytecode cached in the temp folder",
    )
    args = ap.parse_args()

    spec = importlib.util.find_spec("reprokit")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"reprokit is not importable by {PY}")
    pkg_dir = os.path.realpath(spec.submodule_search_locations[0]) + os.sep
    size = args.size * MB

    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="reprokit-bench-archive-"))
    results: list = []
    try:
        if not args.no_pyc:
            _common.PYCACHE = str(tmp / "pycache")
        gz = subprocess.run(["gzip", "--version"], capture_output=True, text=True).stdout
        print(
            f"python {sys.version.split()[0]} ({PY}), {gz.splitlines()[0]}, {os.cpu_count()} CPUs"
        )
        repo = make_repo(tmp)
        t0 = time.perf_counter()
        _, proc = timed([PY, "train.py", str(args.size)], repo)
        runs = sorted(p.name for p in (repo / ".reprokit" / "runs").iterdir())
        if len(runs) != 1:
            raise SystemExit(f"expected one recorded run, found {len(runs)}")
        rid = runs[0]
        artifact = repo / "out" / "artifact.bin"
        print(
            f"recorded run {rid} with a {artifact.stat().st_size / MB:.0f} MB artifact "
            f"in {secs(time.perf_counter() - t0)} (half os.urandom, half float CSV text)"
        )
        if proc.stderr.strip():
            print(f"  train.py stderr: {proc.stderr.strip().splitlines()[0][:200]}")
        warm(artifact)
        times = bench_wall(repo, rid, size, args.rounds)
        rk, t9, t6 = min(times["reprokit"]), min(times["tar -9"]), min(times["tar -6"])
        results.append(("tar -6 / reprokit (same level)", t6 / rk, ">= 80 %", t6 / rk >= 0.80))
        results.append(("tar -9 / reprokit (for comparison)", t9 / rk, "-", True))
        results.append(
            ("reprokit throughput", size / MB / rk, "-", None, f"{size / MB / rk:.1f} MB/s")
        )
        if not args.no_profile:
            bench_profile(repo, rid, size, pkg_dir)
    finally:
        if args.keep:
            print(f"\nkept {tmp}")
        else:
            rmtree(tmp)

    print(f"\nSummary (total bench time {time.perf_counter() - started:.0f} s, {args.size} MB)")
    print(f"  {'figure':<34} {'measured':>12}  {'budget':<10} result")
    for row in results:
        label, value, budget, ok = row[:4]
        shown = row[4] if len(row) > 4 else f"{value * 100:.1f} %"
        verdict = "-" if ok is None else ("PASS" if ok else "FAIL")
        print(f"  {label:<34} {shown:>12}  {budget:<10} {verdict}")


if __name__ == "__main__":
    main()
