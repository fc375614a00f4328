"""Replay end to end: real scripts in real repositories, through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import reprokit
from tests.conftest import clean_env, cli, git, make_repo, run_python

TRAIN = """
import random
import reprokit
import helper

@reprokit.track
def train(lr=0.1, epochs=4):
    w = 0.0
    for epoch in range(epochs):
        w += lr * random.random() * helper.SCALE
        reprokit.log_metric("loss", 1 - w, step=epoch)
        reprokit.checkpoint("w", w)
    return {"w": w}

if __name__ == "__main__":
    train(lr=0.2)
"""


def replay(repo: Path, *args: str, env: dict[str, str] | None = None):
    return cli(repo, "replay", *args, env=env)


def record(repo: Path, code: str, *args: str, script: str = "train.py", env=None):
    proc = run_python(repo, code, *args, script=script, env=env)
    assert proc.returncode == 0, proc.stderr
    return reprokit.load("latest", store=repo / ".reprokit")


def test_a_clean_run_replays_identical(repo):
    (repo / "helper.py").write_text("SCALE = 1.0\n")
    (repo / "train.py").write_text(TRAIN)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "train")
    m = record(repo, TRAIN)
    assert m.code["dirty"] is False
    proc = replay(repo, m.id)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stdout.startswith("verdict: identical")
    assert "checkpoints" in proc.stdout and "digest verified" in proc.stderr


def test_uncommitted_changes_and_a_deleted_untracked_helper_replay_identical(repo):
    (repo / "train.py").write_text(TRAIN)
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "train")
    (repo / "train.py").write_text(TRAIN.replace("epochs=4", "epochs=5"))  # uncommitted
    (repo / "helper.py").write_text("SCALE = 3.0\n")  # untracked
    m = record(repo, (repo / "train.py").read_text())
    assert m.code["dirty"] is True and m.params["epochs"] == 5
    # The working tree moves on: the helper is deleted, the script changed again, a new commit.
    (repo / "helper.py").unlink()
    (repo / "train.py").write_text("raise SystemExit('not this version')\n")
    git(repo, "commit", "-q", "-am", "moved on")
    proc = replay(repo, m.id)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "identical" in proc.stdout.splitlines()[0]
    assert not (repo / "helper.py").exists()  # the user's tree is untouched


def test_replay_works_after_the_branch_is_deleted_and_gc(repo):
    git(repo, "checkout", "-q", "-b", "exp")
    (repo / "helper.py").write_text("SCALE = 2.0\n")
    (repo / "train.py").write_text(TRAIN)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "exp")
    m = record(repo, TRAIN)
    git(repo, "checkout", "-q", "main")
    git(repo, "branch", "-q", "-D", "exp")
    git(repo, "gc", "-q", "--prune=now")
    proc = replay(repo, m.id)
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_a_clone_without_the_snapshot_falls_back_to_the_stored_patch(repo, tmp_path):
    (repo / "helper.py").write_text("SCALE = 1.0\n")
    (repo / "train.py").write_text(TRAIN)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "train")
    (repo / "helper.py").write_text("SCALE = 5.0\n")  # dirty: the tree lives only in this repo
    m = record(repo, TRAIN)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--no-local", str(repo), "clone")
    # The store travels; the repository that held the snapshot is gone.
    import shutil

    shutil.copytree(repo / ".reprokit", tmp_path / "store")
    shutil.rmtree(repo)
    env = clean_env(REPROKIT_STORE=str(tmp_path / "store"))
    missing = subprocess.run(["git", "cat-file", "-e", m.code["tree"]], cwd=clone)
    assert missing.returncode != 0
    proc = cli(clone, "replay", m.id, env=env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "rebuilt from the patch" in proc.stderr


@pytest.mark.parametrize("source", ["numpy default_rng", "SystemRandom"])
def test_an_rng_outside_the_seed_is_caught_at_its_first_checkpoint(repo, source):
    if source == "numpy default_rng":
        pytest.importorskip("numpy")
        draw = "import numpy as np\n    rng = np.random.default_rng()\n    draw = rng.random\n"
    else:
        draw = "import random\n    draw = random.SystemRandom().random\n"
    code = (
        "import reprokit\n"
        "@reprokit.track\n"
        "def train(steps=6):\n"
        f"    {draw}"
        "    w = 0.0\n"
        "    for i in range(steps):\n"
        "        w += 1.0 if i < 3 else draw()\n"
        "        reprokit.checkpoint('w', w)\n"
        "    return w\n"
        "train()\n"
    )
    m = record(repo, code)
    proc = replay(repo, m.id)
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert "first divergence at #3 (w)" in proc.stdout
    assert "RNG not under the seed's control" in proc.stdout
    data = json.loads(replay(repo, m.id, "--json").stdout)
    assert data["runs"][0]["outputs"]["checkpoints"]["first_divergence"]["index"] == 3


PERTURBED = """
import os, reprokit
@reprokit.track
def train():
    eps = float(os.environ.get("PERTURB", "0")) * 1e-12
    reprokit.checkpoint("x", [1.0 + eps, 2.0])
    return 1.0 + eps
train()
"""


def test_floats_perturbed_at_1e12_differ_exactly_and_agree_within_rtol(repo):
    m = record(repo, PERTURBED)
    env = clean_env(PERTURB="1")
    exact = replay(repo, m.id, env=env)
    assert exact.returncode == 1, exact.stderr + exact.stdout
    assert "return" in exact.stdout and "different" in exact.stdout
    loose = replay(repo, m.id, "--rtol", "1e-9", env=env)
    assert loose.returncode == 0, loose.stderr + loose.stdout
    assert loose.stdout.startswith("verdict: within tolerance")
    data = json.loads(replay(repo, m.id, "--rtol", "1e-9", "--json", env=env).stdout)
    ret = data["runs"][0]["outputs"]["return"]
    assert ret["verdict"] == "within_tolerance" and 0 < ret["max_abs"] < 1e-11


def test_a_command_whose_output_folder_has_a_timestamp_names_exactly_that_file(repo):
    (repo / "make_out.py").write_text(
        "import pathlib, time\n"
        "out = pathlib.Path('out'); out.mkdir(exist_ok=True)\n"
        "(out / 'stamp.txt').write_text(str(time.time_ns()))\n"
        "(out / 'model.txt').write_text('weights 1 2 3')\n"
    )
    git(repo, "add", "make_out.py")
    git(repo, "commit", "-q", "-m", "cmd")
    rec = cli(repo, "run", "--output", "out", "--", sys.executable, "make_out.py")
    assert rec.returncode == 0, rec.stderr
    m = reprokit.load("latest", store=repo / ".reprokit")
    proc = replay(repo, m.id)
    assert proc.returncode == 1, proc.stderr + proc.stdout
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("  file ")]
    assert [ln.split()[1] for ln in lines if "different" in ln] == ["out/stamp.txt"]
    assert any("out/model.txt" in ln and "identical" in ln for ln in lines)
    assert "exit_code" in proc.stdout


def test_a_script_with_two_run_blocks_has_both_matched_and_compared(repo):
    code = (
        "import random, reprokit\n"
        "for name in ('prepare', 'fit'):\n"
        "    with reprokit.run(name, seed=3) as r:\n"
        "        r.log_metric('x', random.random())\n"
    )
    record(repo, code)
    runs = json.loads(cli(repo, "ls", "--json").stdout)["runs"]
    first = next(r for r in runs if r["name"] == "prepare")
    data = json.loads(replay(repo, first["id"], "--json").stdout)
    assert data["verdict"] == "identical"
    assert len(data["runs"]) == 2
    names = {reprokit.load(r["replayed"], store=repo / ".reprokit").name for r in data["runs"]}
    assert names == {"prepare", "fit"}


def test_a_param_recorded_by_repr_is_not_replayable(repo):
    code = "import reprokit\n@reprokit.track\ndef train(model):\n    return 1\ntrain(object())\n"
    m = record(repo, code)
    proc = replay(repo, m.id)
    assert proc.returncode == 2
    assert "not replayable" in proc.stderr and "model" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_a_run_from_python_dash_c_is_not_replayable(repo):
    code = "import reprokit\nwith reprokit.run('c'):\n    pass\n"
    subprocess.run([sys.executable, "-c", code], cwd=repo, env=clean_env(), check=True)
    proc = replay(repo, "latest")
    assert proc.returncode == 2 and "python -c" in proc.stderr


def test_a_tampered_run_is_refused(repo):
    m = record(repo, PERTURBED)
    path = repo / ".reprokit" / "runs" / m.id / "checkpoints.jsonl"
    os.chmod(path, 0o644)
    path.write_text(path.read_text().replace("1.0", "1.5"))
    proc = replay(repo, m.id)
    assert proc.returncode == 1
    assert "checkpoints.jsonl was modified" in proc.stderr


def test_a_failed_run_replays_identical_when_it_fails_the_same_way(repo):
    code = (
        "import reprokit\n"
        "@reprokit.track\n"
        "def train(lr=0.5):\n"
        "    raise ValueError(f'lr {lr} diverged')\n"
        "try:\n"
        "    train()\n"
        "except ValueError:\n"
        "    pass\n"
    )
    m = record(repo, code)
    assert m.status == "failed"
    proc = replay(repo, m.id)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "error" in proc.stdout and "identical" in proc.stdout


def test_redacted_params_must_be_supplied_again(repo):
    code = (
        "import reprokit\n"
        "@reprokit.track\n"
        "def train(api_key='k-123', lr=0.1):\n"
        "    return len(api_key) + lr\n"
        "train()\n"
    )
    m = record(repo, code)
    refused = replay(repo, m.id)
    assert refused.returncode == 2 and "--param api_key=" in refused.stderr
    ok = replay(repo, m.id, "--param", "api_key=k-123")
    assert ok.returncode == 0, ok.stderr + ok.stdout


def test_json_report_has_the_documented_shape(repo):
    m = record(repo, PERTURBED)
    proc = replay(repo, m.id, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == {
        "schema",
        "run",
        "replay",
        "verdict",
        "tolerance",
        "source",
        "drift",
        "inputs",
        "runs",
        "causes",
    }
    assert data["schema"] == 1 and data["run"] == m.id and data["verdict"] == "identical"
    assert data["tolerance"] == {"rtol": 0.0, "atol": 0.0}
    assert data["source"]["verified"] is True
    [run] = data["runs"]
    assert set(run) == {"recorded", "replayed", "verdict", "outputs"}
    assert all("verdict" in o for o in run["outputs"].values())
    replayed = reprokit.load(run["replayed"], store=repo / ".reprokit")
    assert replayed.run["replay_of"] == m.id
    record_run = reprokit.load(data["replay"], store=repo / ".reprokit")
    assert record_run.run["entry"]["kind"] == "replay"
    assert record_run.outputs["verdict"] == "identical"


def test_in_place_runs_the_current_tree_and_says_how_it_differs(repo):
    m = record(repo, PERTURBED)
    (repo / "README.md").write_text("changed\n")
    proc = replay(repo, m.id, "--in-place")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "differs from the recorded tree in 1 file(s)" in proc.stderr
    assert "modified README.md" in proc.stderr


def test_keep_leaves_the_rebuilt_tree(repo):
    m = record(repo, PERTURBED)
    proc = replay(repo, m.id, "--keep")
    assert proc.returncode == 0, proc.stderr
    kept = Path(proc.stderr.split("kept in ")[1].split()[0])
    assert (kept / "train.py").exists()


def test_outside_git_the_snapshot_replays(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "helper.py").write_text("SCALE = 1.5\n")
    m = record(folder, TRAIN)
    assert m.code["kind"] == "snapshot"
    (folder / "helper.py").write_text("SCALE = 99\n")  # the snapshot, not the folder, is replayed
    proc = replay(folder, m.id)
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_the_python_api_returns_a_report(repo):
    m = record(repo, PERTURBED)
    report = reprokit.replay(m.id, store=repo / ".reprokit", stdout=subprocess.DEVNULL)
    assert report.identical and report.verdict == "identical"
    assert report.to_dict()["run"] == m.id


def test_a_package_module_function_replays_by_import_name(tmp_path):
    repo = make_repo(
        tmp_path / "pkgrepo",
        {
            "src/mypkg/__init__.py": "",
            "src/mypkg/train.py": (
                "import reprokit\n"
                "from mypkg import util\n"
                "@reprokit.track\n"
                "def fit(n=3):\n"
                "    return util.double(n)\n"
            ),
            "src/mypkg/util.py": "def double(x):\n    return 2 * x\n",
        },
    )
    env = clean_env(PYTHONPATH=str(repo / "src"))
    m = record(repo, "from mypkg.train import fit\nfit(4)\n", script="go.py", env=env)
    assert m.run["entry"]["module"] == "mypkg.train"
    proc = replay(repo, m.id)
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_param_cannot_change_a_recorded_value(repo):
    m = record(repo, PERTURBED)
    proc = replay(repo, m.id, "--param", "lr=0.5")
    assert proc.returncode == 2 and "only redacted params" in proc.stderr


def test_the_re_executed_run_carries_the_recorded_code_identity(repo):
    (repo / "helper.py").write_text("SCALE = 2.0\n")
    m = record(repo, TRAIN)
    data = json.loads(replay(repo, m.id, "--json").stdout)
    again = reprokit.load(data["runs"][0]["replayed"], store=repo / ".reprokit")
    assert again.code["digest"] == m.code["digest"] and again.code["verified_before_running"]
    proc = cli(repo, "diff", m.id, again.id)
    assert "code: same" in proc.stdout
