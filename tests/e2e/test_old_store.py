"""A store written by the previous release (0.1.0, before the layered layout) still reads,
verifies, diffs, replays and archives: the on-disk format did not change.

The fixture is a real project (git repository and store) recorded by that release's code:
``python train.py 0.2`` (a tracked function with metrics, checkpoints and a copied artifact,
on a dirty tree) and ``reprokit run --name cmd --seed 5 --output model.txt -- python train.py
0.3`` (a command run with a nested tracked run).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.conftest import cli

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "store-0.1.0.tar.gz"


@pytest.fixture
def old_project(tmp_path: Path) -> Path:
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "project"


def _runs(project: Path) -> list[dict]:
    proc = cli(project, "ls", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["runs"]


def test_old_store_lists_and_verifies(old_project):
    runs = _runs(old_project)
    assert sorted(r["name"] for r in runs) == ["cmd", "train", "train"]
    assert all(r["status"] == "completed" for r in runs)
    for r in runs:
        proc = cli(old_project, "verify", r["id"])
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"intact: {r['id']}")


def test_old_store_replays_identically(old_project):
    runs = _runs(old_project)
    top_train = next(r for r in runs if r["name"] == "train" and not r.get("parent"))
    # Its runs record no host: they count as made elsewhere (README, "Threat model"), so they
    # replay in the sandbox, or, where there is none, only with --trust.
    proc = cli(old_project, "replay", top_train["id"], "--json", "--trust")
    assert proc.returncode == 0, proc.stderr
    assert "sandbox: " in proc.stderr and "records no host" in proc.stderr
    report = json.loads(proc.stdout)
    assert report["verdict"] == "identical"
    outputs = report["runs"][0]["outputs"]
    assert {"return", "metric loss", "checkpoints", "file model.txt"} <= set(outputs)
    cmd = next(r for r in runs if r["name"] == "cmd")
    proc = cli(old_project, "replay", cmd["id"], "--json", "--trust")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["verdict"] == "identical"


def test_old_store_diffs_and_archives(old_project, tmp_path):
    runs = _runs(old_project)
    trains = [r["id"] for r in runs if r["name"] == "train"]
    proc = cli(old_project, "diff", *trains, "--json")
    assert proc.returncode == 0, proc.stderr
    params = json.loads(proc.stdout)["sections"]["params"]
    assert [p["key"] for p in params] == ["lr"]
    out = tmp_path / "paper.tar.gz"
    proc = cli(old_project, "archive", "--all", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    proc = cli(tmp_path, "verify", str(out))
    assert proc.returncode == 0, proc.stderr
