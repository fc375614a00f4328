"""Shared helpers: real git repositories in tmp_path, real subprocesses, the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without reprokit settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPROKIT_")}
    env.update(GIT_ENV)
    env.update(extra)
    return env


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, env=clean_env(), check=True, capture_output=True, text=True
    ).stdout


def make_repo(path: Path, files: dict[str, str | bytes] | None = None, commit: bool = True) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for rel, content in (files or {"README.md": "hello\n", "src/model.py": "W = 1\n"}).items():
        p = path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
    if commit:
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", "initial")
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit: README.md and src/model.py."""
    return make_repo(tmp_path / "repo")


def run_python(
    cwd: Path,
    code: str,
    *args: str,
    env: dict[str, str] | None = None,
    script: str = "job.py",
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Write ``code`` to ``cwd/script`` and run it with this interpreter."""
    (cwd / script).write_text(code)
    return subprocess.run(
        [sys.executable, script, *args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_pools(
    cwd: Path, code: str, *args: str, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """``run_python`` for a program that starts process pools and forks, guarded against a hang:
    one still running after ``timeout`` s has every thread of every process it started dump its
    stack, is killed with all of them, and fails the test with the stacks in the message.

    The guard is a signal handler (``faulthandler.register``, inherited by forks and installed
    by ``__main__`` in spawned workers), not ``faulthandler.dump_traceback_later``: the latter's
    watchdog thread does not exist in a forked child, and a child leaving through
    ``sys.exit()`` waits for that thread forever while Python finalizes (issue #10)."""
    import signal
    import time

    guarded = (
        "import faulthandler, signal\n"
        "faulthandler.register(signal.SIGUSR1, all_threads=True)\n" + code
    )
    (cwd / "job.py").write_text(guarded)
    proc = subprocess.Popen(
        [sys.executable, "job.py", *args],
        cwd=cwd,
        env=env or clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its pools, forks and helpers: one group to signal
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for sig in (signal.SIGUSR1, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            time.sleep(2)
        out, err = proc.communicate(timeout=60)
        pytest.fail(f"the pool program hung for {timeout:.0f} s; stacks:\n{err[-12000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def cli(
    cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m reprokit ARGS`` in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "reprokit", *args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# Two tracked functions, one calling the other: a nested run per call (program text).
NESTED_RUNS = """
@reprokit.track
def inner(i):
    return i

@reprokit.track
def outer(i):
    return inner(i)
"""
