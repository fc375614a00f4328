"""Replaying many runs: -j N with a process pool, submitit's local executor, a Dask cluster
started on 127.0.0.1, and verify ARCHIVE --replay -j N. One report, exit 0 only if all are
identical."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli, git, make_repo, run_python

TRAIN = """
import os, sys, reprokit

@reprokit.track
def train(lr=0.1):
    w = 0.0
    for step in range(3):
        w += lr * (step + 1)
        reprokit.log_metric("w", w, step=step)
    return w

@reprokit.track
def noisy():
    return os.urandom(4).hex()

if __name__ == "__main__":
    for lr in sys.argv[1:]:
        if lr == "noisy":
            noisy()
        else:
            train(float(lr))
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "repo", {"train.py": TRAIN})
    git(repo, "add", "-A")
    return repo


def record(repo: Path, *args: str) -> list[str]:
    proc = run_python(repo, TRAIN, *args, script="train.py")
    assert proc.returncode == 0, proc.stderr
    out = cli(repo, "ls", "--json")
    return [r["id"] for r in json.loads(out.stdout)["runs"]]


def test_several_refs_replay_in_parallel_with_one_report(project):
    ids = record(project, "0.1", "0.2", "0.3")
    proc = cli(project, "replay", *ids, "-j", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "3 runs: 3 identical"
    assert sorted(line.split()[0] for line in lines[:-1]) == sorted(ids)
    assert "replaying 3 run(s) with local executor" in proc.stderr


def test_one_differing_run_makes_the_exit_code_1_and_json_says_which(project):
    record(project, "0.1", "noisy")
    proc = cli(project, "replay", "--all", "-j", "2", "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema"] == 1 and doc["executor"] == "local" and doc["jobs"] == 2
    assert doc["summary"] == {"different": 1, "identical": 1}
    verdicts = {r["verdict"] for r in doc["runs"]}
    assert verdicts == {"identical", "different"}


def test_all_skips_replays_and_name_selects_one_name(project):
    record(project, "0.1", "noisy")
    first = cli(project, "replay", "--name", "train", "-j", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.splitlines()[-1] == "1 runs: 1 identical"
    # The replay just made (a verdict and a re-execution) is not replayed by --all.
    again = cli(project, "replay", "--all", "--json")
    assert len(json.loads(again.stdout)["runs"]) == 2


def test_a_run_that_cannot_be_replayed_gives_exit_2_not_a_verdict(project):
    record(project, "0.1")
    code = "import reprokit\nwith reprokit.run('inline', seed=1):\n    pass\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = cli(project, "replay", "--all", "-j", "2")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "not replayable" in out.stdout
    assert out.stdout.splitlines()[-1] == "2 runs: 1 identical, 1 not replayable"


def test_each_call_of_an_imported_function_in_one_process_replays_identical(tmp_path):
    # A sweep: one process calls a module's tracked function several times. Each replay calls
    # it once; the later calls (ordinal 1, 2, ...) must still find their counterpart.
    model = TRAIN.split('if __name__ == "__main__":')[0]
    repo = make_repo(tmp_path / "sweep", {"model.py": model})
    proc = run_python(repo, "import model\nfor lr in (0.1, 0.2, 0.3):\n    model.train(lr)\n")
    assert proc.returncode == 0, proc.stderr
    out = cli(repo, "replay", "--all", "-j", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines()[-1] == "3 runs: 3 identical"


def test_unknown_ref_or_bad_options_exit_2(project):
    record(project, "0.1")
    assert cli(project, "replay", "nope", "latest", "-j", "2").returncode == 2
    bad = cli(project, "replay", "--all", "--scheduler", "tcp://127.0.0.1:1")
    assert bad.returncode == 2 and "--executor dask" in bad.stderr
    assert cli(project, "replay", "--all", "-j", "0").returncode == 2


def test_slurm_executor_runs_a_job_array_with_submitits_local_executor(project, tmp_path):
    pytest.importorskip("submitit")
    ids = record(project, "0.1", "0.2")
    proc = cli(
        project,
        "replay",
        *ids,
        "--executor",
        "slurm",
        "--slurm-cluster",
        "local",
        "--slurm-folder",
        str(tmp_path / "slurm"),
        "--json",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["executor"] == "slurm" and doc["summary"] == {"identical": 2}
    assert any((tmp_path / "slurm").rglob("*.pkl")), "submitit wrote no job files"


@pytest.fixture
def dask_scheduler():
    distributed = pytest.importorskip("distributed")
    # A LocalCluster sets MKL_NUM_THREADS, OMP_NUM_THREADS, ... in this process's environment
    # (for its workers): put it back, or later tests inherit the variables.
    saved = dict(os.environ)
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()
        os.environ.clear()
        os.environ.update(saved)


def test_dask_executor_sends_the_replays_to_a_running_cluster(project, dask_scheduler):
    assert dask_scheduler.startswith("tcp://127.0.0.1:")
    ids = record(project, "0.1", "0.2", "noisy")
    proc = cli(
        project, "replay", *ids, "--executor", "dask", "--scheduler", dask_scheduler, "--json"
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["executor"] == "dask"
    assert doc["summary"] == {"different": 1, "identical": 2}


def test_verify_archive_replays_its_runs_in_parallel(project, tmp_path):
    record(project, "0.1", "0.2")
    arc = tmp_path / "paper.tar.gz"
    assert cli(project, "archive", "--all", "-o", str(arc)).returncode == 0
    proc = cli(project, "verify", str(arc), "--replay", "-j", "2", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert [r["verdict"] for r in doc["replays"]] == ["identical", "identical"]
