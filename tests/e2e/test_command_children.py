"""A command run is judged by the tracked runs made inside it: replay, check and seeds compare
them (matched by name, params and order) and name the child that differed."""

from __future__ import annotations

import json
import sys

import pytest

from reprokit._store.store import Store
from tests.conftest import cli, git, make_repo

SCRIPTS = {
    # Two calls of one function and one of another; seeded by reprokit: deterministic.
    "seeded.py": """
import random
import reprokit

@reprokit.track
def train(lr=0.1):
    value = random.random() * lr
    reprokit.log_metric("loss", value)
    return value

@reprokit.track
def evaluate():
    return 1

if __name__ == "__main__":
    train()
    train(lr=0.2)
    evaluate()
""",
    # os.urandom is not under the seed's control: a different number every time.
    "unseeded.py": """
import os
import reprokit

@reprokit.track
def train(lr=0.1):
    value = int.from_bytes(os.urandom(4), "big")
    print(value)
    return value

@reprokit.track
def evaluate():
    return 1

if __name__ == "__main__":
    train()
    evaluate()
""",
    # A sweep in a spawn pool: children finish in any order, their params tell them apart.
    "sweep.py": """
import multiprocessing as mp
import reprokit

@reprokit.track
def train(lr=0.1):
    return lr * 10

if __name__ == "__main__":
    with mp.get_context("spawn").Pool(2) as p:
        print(p.map(train, [0.1, 0.2, 0.3]))
""",
    "untracked.py": "print('hello')\n",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("cmd") / "repo", SCRIPTS)
    ids = {}
    for script in SCRIPTS:
        out = cli(repo, "run", "--json", "--", "python", script)
        assert out.returncode == 0, out.stderr
        ids[script] = json.loads(out.stdout)["run"]
    git(repo, "status")
    return repo, ids


def test_replay_of_a_command_compares_each_child_and_says_identical(project):
    repo, ids = project
    out = cli(repo, "replay", ids["seeded.py"])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "child train#0" in out.stdout and "child train#1" in out.stdout
    assert "child evaluate" in out.stdout


def test_replay_of_a_command_names_the_child_that_differed(project):
    repo, ids = project
    out = cli(repo, "replay", ids["unseeded.py"], "--json")
    assert out.returncode == 1, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["verdict"] == "different"
    verdicts = {r.get("child", "command"): r["verdict"] for r in report["runs"]}
    assert verdicts == {"command": "identical", "train": "different", "evaluate": "identical"}


def test_replay_pairs_pool_worker_children_by_params(project):
    repo, ids = project
    out = cli(repo, "replay", ids["sweep.py"], "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    children = [r for r in json.loads(out.stdout)["runs"] if r.get("child")]
    assert len(children) == 3
    assert all(r["verdict"] == "identical" for r in children)


def test_check_of_a_command_run_finds_the_nondeterministic_child(project):
    repo, ids = project
    out = cli(repo, "check", ids["unseeded.py"], "--json")
    assert out.returncode == 1, out.stdout + out.stderr
    outputs = json.loads(out.stdout)["outputs"]
    assert outputs["train return"]["verdict"] == "different"
    assert outputs["evaluate return"]["verdict"] == "identical"


def test_check_of_a_deterministic_command_run_agrees(project):
    repo, ids = project
    out = cli(repo, "check", ids["seeded.py"])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "train#1 return" in out.stdout


def test_check_of_a_command_line_with_pool_workers_agrees(project):
    repo, _ids = project
    out = cli(repo, "check", "--json", "--", "python", "sweep.py")
    assert out.returncode == 0, out.stdout + out.stderr


def test_seeds_on_a_command_run_summarises_its_children(project):
    repo, ids = project
    out = cli(repo, "seeds", ids["seeded.py"], "-n", "3", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    results = json.loads(out.stdout)["results"]
    # "return" is shared by the three children: each one's is named by its label.
    assert results["evaluate.return"]["values"] == [1.0, 1.0, 1.0]
    assert results["train#0.return"]["n"] == 3
    assert results["train#1.metric loss"]["n"] == 3
    assert results["train#0.return"]["std"] > 0  # three seeds, three different draws


def test_seeds_on_a_command_without_numbers_exits_2(project):
    repo, ids = project
    out = cli(repo, "seeds", ids["untracked.py"], "-n", "2")
    assert out.returncode == 2
    assert "nothing to summarise" in out.stderr
    assert out.stdout == ""


def test_child_runs_of_a_command_are_recorded_under_it(project):
    repo, ids = project
    store = Store(repo / ".reprokit")
    parents = {e.manifest.run.get("parent") for e in store.entries() if e.manifest}
    assert ids["seeded.py"] in parents


def test_a_command_replay_that_could_compare_only_the_exit_code_says_so(repo):
    (repo / "t.py").write_text("import random\nprint('result', random.random())\n")
    git(repo, "add", "t.py")
    git(repo, "commit", "-qm", "t")
    assert cli(repo, "run", "--", sys.executable, "t.py").returncode == 0
    proc = cli(repo, "replay", "latest")
    assert proc.returncode == 0, proc.stderr
    assert "note: only the exit code was compared" in proc.stderr
