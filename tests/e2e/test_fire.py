"""`reprokit run -- python script.py` on programs whose command line python-fire parses: the
arguments fire calls with are the run's params, typed, and a replay can change one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import cli, make_repo

pytest.importorskip("fire")

# Third-party style: fire, an unseeded RNG, no `import reprokit`.
TRAIN = """\
import random

import fire


def main(lr=0.1, epochs=3, name="base", fast=False, layers=(1, 2)):
    w = 0.5
    for _ in range(epochs):
        w -= lr * (w - random.random())
    with open("result.txt", "w") as fh:
        fh.write(f"{w!r} {name} {fast} {layers}\\n")


if __name__ == "__main__":
    fire.Fire(main)
"""
TRAINER = """\
import random

import fire


class Trainer:
    def __init__(self, lr=0.1, warmup=0):
        self.lr = lr

    def train(self, epochs=3, verbose=False):
        w = 0.5
        for _ in range(epochs):
            w -= self.lr * (w - random.random())
        with open("result.txt", "w") as fh:
            fh.write(f"{w!r} {verbose}\\n")


if __name__ == "__main__":
    fire.Fire(Trainer)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "repo",
        {"train.py": TRAIN, "trainer.py": TRAINER, ".gitignore": "result.txt\n.reprokit/\n"},
    )


def _record(cwd: Path, *args: str):
    out = cli(cwd, "run", "--seed", "0", "--output", "result.txt", "--", sys.executable, *args)
    assert out.returncode == 0, out.stderr
    return out


def _show(cwd: Path, ref: str = "latest") -> dict:
    out = cli(cwd, "show", ref, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_arguments_fire_calls_with_are_typed_params(project: Path) -> None:
    _record(project, "train.py", "--lr", "0.2", "--fast", "--layers", "[3,4]", "--name=deep")
    m = _show(project)
    assert m["params"] == {"lr": 0.2, "epochs": 3, "name": "deep", "fast": True, "layers": [3, 4]}
    assert set(m["run"]["param_sources"].values()) == {"fire"}  # not fire's own argparse flags
    assert m["run"]["entry"]["argv"][-1] == "--name=deep"


def test_diff_shows_the_changed_fire_flag(project: Path) -> None:
    _record(project, "train.py", "--lr", "0.1")
    _record(project, "train.py", "--lr", "0.2")
    ids = [r["id"] for r in json.loads(cli(project, "ls", "--json").stdout)["runs"]]
    out = cli(project, "diff", ids[1], ids[0])
    assert out.returncode == 0, out.stderr
    assert "params:\n  lr: 0.1 -> 0.2\n" in out.stdout


def test_replay_with_a_changed_fire_flag_runs_what_recording_it_would(project: Path) -> None:
    _record(project, "train.py", "--lr", "0.2", "--fast")
    wanted = (project / "result.txt").read_text()
    _record(project, "train.py", "--lr", "0.1")
    assert cli(project, "replay", "latest").returncode == 0  # unchanged: identical
    out = cli(
        project, "replay", "latest", "--in-place", "--param", "lr=0.2", "--param", "fast=true"
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "this replay changed params on purpose: fast False -> True, lr 0.1 -> 0.2" in out.stdout
    assert (project / "result.txt").read_text() == wanted


def test_a_fire_class_records_its_init_and_method_arguments(project: Path) -> None:
    _record(project, "trainer.py", "train", "--epochs", "2", "--lr=0.3")
    wanted = (project / "result.txt").read_text()
    m = _show(project)
    assert m["params"] == {"lr": 0.3, "warmup": 0, "epochs": 2, "verbose": False}
    _record(project, "trainer.py", "train", "--epochs", "2")
    out = cli(project, "replay", "latest", "--in-place", "--param", "lr=0.3")
    assert out.returncode == 1, out.stdout + out.stderr
    assert (project / "result.txt").read_text() == wanted


def test_a_positional_fire_argument_cannot_be_changed_by_a_replay(project: Path) -> None:
    _record(project, "train.py", "0.2", "5")
    m = _show(project)
    assert (m["params"]["lr"], m["params"]["epochs"]) == (0.2, 5)
    out = cli(project, "replay", "latest", "--param", "lr=0.3")
    assert out.returncode == 2
    assert "'lr' cannot be supplied again" in out.stderr
