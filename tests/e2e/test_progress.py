"""Progress bars (issue #13): on stderr only when it is a terminal, never with -q, never in a
pipe. The real CLI is run on a pseudo-terminal (the ``pty`` module) to see them."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

from tests.conftest import clean_env, cli, git, make_repo, run_python

TRAIN = """
import random
import reprokit
from pathlib import Path

@reprokit.track
def train(lr=0.1):
    reprokit.log_metric("loss", random.random() - lr)
    Path("model.bin").write_bytes(bytes(200_000))
    reprokit.log_artifact("model.bin")
    return lr * 2

train()
"""

BAR = "%|"  # what every tqdm bar with a total draws


def on_pty(cwd: Path, *args: str) -> tuple[int, str, str]:
    """Run ``python -m reprokit ARGS`` with its stderr on a pseudo-terminal (100 columns);
    (exit code, stdout, what the terminal received)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    received: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal closed it
                return
            if not chunk:
                return
            received.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reprokit", *args],
            cwd=cwd,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
        )
        os.close(slave)
        stdout, _ = proc.communicate(timeout=300)
        reader.join(30)
    finally:
        os.close(master)
    return proc.returncode, stdout.decode(), b"".join(received).decode("utf-8", "replace")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = make_repo(tmp_path_factory.mktemp("progress") / "repo")
    (repo / "train.py").write_text(TRAIN)
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "train")
    for _ in range(2):
        proc = run_python(repo, TRAIN, script="train.py")
        assert proc.returncode == 0, proc.stderr
    return repo


@pytest.mark.parametrize(
    ("args", "label"),
    [
        (["check", "latest"], "check"),
        (["seeds", "latest", "-n", "2"], "seeds"),
        (["replay", "latest"], "replay latest: "),
        (["replay", "train@1", "train@2"], "replaying"),
    ],
)
def test_a_bar_shows_on_a_terminal_and_nothing_in_a_pipe(project, args, label):
    code, stdout, terminal = on_pty(project, *args)
    assert code == 0, stdout + terminal
    assert label in terminal and BAR in terminal, terminal
    assert BAR not in stdout and "\r" not in stdout  # the data stays clean
    piped = cli(project, *args)
    assert piped.returncode == 0, piped.stderr
    assert BAR not in piped.stderr and "\r" not in piped.stderr
    assert piped.stdout.split()[0] == stdout.split()[0]


def test_quiet_silences_the_bar_on_a_terminal(project):
    code, _stdout, terminal = on_pty(project, "check", "latest", "-q")
    assert code == 0
    assert BAR not in terminal and "check" not in terminal


def test_archive_and_verify_of_an_archive_show_bars(project, tmp_path):
    paper = tmp_path / "paper.tar.gz"
    code, stdout, terminal = on_pty(project, "archive", "train@1", "-o", str(paper))
    assert code == 0, stdout + terminal
    assert "archiving to paper.tar.gz" in terminal
    assert "packing model.bin" in terminal and BAR in terminal  # an artifact, byte by byte
    code, stdout, terminal = on_pty(project, "verify", str(paper))
    assert code == 0, stdout + terminal
    assert "verifying paper.tar.gz" in terminal
    assert stdout.startswith("intact: ")
    piped = cli(project, "verify", str(paper))
    assert piped.returncode == 0 and "verifying" not in piped.stderr


def test_export_shows_a_bar_before_it_reaches_the_server(project):
    # Port 9 (discard) refuses the connection: exit 2, and the bar was there meanwhile.
    code, stdout, terminal = on_pty(
        project, "export", "mlflow", "--tracking-uri", "http://127.0.0.1:9", "train@1"
    )
    assert code == 2
    assert "exporting to mlflow" in terminal
    assert terminal.rstrip().splitlines()[-1].startswith("reprokit: error: ")
