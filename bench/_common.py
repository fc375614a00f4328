"""What the benchmarks share: the child processes' environment, git in a temp repository,
removing a temp folder that holds a store's read-only files, and one child's wall time and peak
memory."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

PYCACHE: str | None = None  # set by a bench's main(): a bytecode cache in its temp folder


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPROKIT_")}
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    if PYCACHE is not None:
        # Measure what an installed package costs: bytecode cached, as pip leaves it. The cache
        # lives in the temp folder, so nothing is written next to the sources.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = PYCACHE
    return env


def rmtree(path: Path) -> None:
    """shutil.rmtree that also removes the store's read-only files and folders."""

    def fix(func, p, _exc):  # noqa: ANN001
        parent = os.path.dirname(p)
        for q in (parent, p):
            try:
                os.chmod(q, os.stat(q).st_mode | stat.S_IWUSR | stat.S_IRUSR | stat.S_IXUSR)
            except OSError:
                pass
        func(p)

    if not path.exists():
        return
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=fix)
    else:
        shutil.rmtree(path, onerror=fix)


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost",
         "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        check=True,
        stdout=subprocess.DEVNULL,
        env=child_env(),
    )  # fmt: skip


def wall_and_rss(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one child process, from wait4()."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[-2:])} failed: {err.strip()[-800:]}")
    return wall, usage.ru_maxrss / 1024
