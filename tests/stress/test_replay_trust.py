"""Replaying a run someone else made: a forged manifest (sealed in a valid ledger, as a stranger's
store would be) cannot point the replay outside its folder nor set variables that change how
programs load."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from reprokit._model.yaml import dump
from reprokit._store.store import Store, new_run_id
from tests.conftest import clean_env, cli, make_repo, run_python

pytestmark = pytest.mark.stress

TRAIN = """
import json, os
import reprokit

@reprokit.track(seed=0)
def train(lr=0.1):
    with open(os.environ["SEEN"], "w") as fh:
        json.dump({k: v for k, v in os.environ.items()}, fh)
    with open("written-here.txt", "w") as fh:
        fh.write("x")
    return lr

if __name__ == "__main__":
    train()
"""


def forge(repo: Path, change) -> str:
    """Seal a copy of the latest run with ``change`` applied to its manifest; its new id."""
    st = Store(repo / ".reprokit")
    rid = st.resolve("latest")
    data = yaml.safe_load((st.runs / rid / "manifest.yaml").read_text())
    new = new_run_id()
    data["run"]["id"] = new
    change(data)
    _, folder = st.new_run_dir(new)
    for p in (st.runs / rid).iterdir():
        if p.name != "manifest.yaml":
            shutil.copyfile(p, Path(folder) / p.name)
    st.seal(new, dump(data))
    return new


@pytest.fixture
def recorded(tmp_path):
    repo = make_repo(tmp_path / "repo", {"train.py": TRAIN})
    env = clean_env(SEEN=str(tmp_path / "seen.json"))
    res = run_python(repo, TRAIN, env=env, script="train.py")
    assert res.returncode == 0, res.stderr
    return repo, env, tmp_path


@pytest.mark.parametrize("cwd", ["../../..", "/", "../x"])
def test_a_forged_cwd_outside_the_tree_is_refused(recorded, cwd):
    repo, env, tmp_path = recorded

    def change(d):
        d["run"]["cwd"] = cwd

    rid = forge(repo, change)
    res = cli(repo, "replay", rid, env=env)
    if cwd == "/":  # an absolute cwd has always meant "the tree's root"
        assert res.returncode == 0, res.stderr
        return
    assert res.returncode == 2, res.stderr
    assert "outside the source tree" in res.stderr
    assert not (tmp_path / "written-here.txt").exists()


def test_recorded_loader_variables_are_never_applied(recorded):
    repo, env, tmp_path = recorded
    forged = {
        "LD_PRELOAD": "/forged/evil.so",
        "LD_LIBRARY_PATH": "/forged",
        "PYTHONPATH": "/forged",
        "PYTHONSTARTUP": "/forged/start.py",
        "PYTHONHOME": "/forged",
        "BASH_ENV": "/forged/env.sh",
        "PATH": "/forged",
        "OMP_NUM_THREADS": "3",
    }

    def change(d):
        d["environment"]["variables"] = forged

    rid = forge(repo, change)
    res = cli(repo, "replay", rid, env=env)
    assert res.returncode in (0, 1), res.stderr
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen.get("OMP_NUM_THREADS") == "3"
    leaked = [k for k, v in forged.items() if k != "OMP_NUM_THREADS" and seen.get(k) == v]
    assert not leaked


def test_a_forged_source_file_outside_the_tree_is_refused(recorded):
    repo, env, _ = recorded

    def change(d):
        d["run"]["entry"]["file_rel"] = "../../../../etc/passwd"

    rid = forge(repo, change)
    res = cli(repo, "replay", rid, env=env)
    assert res.returncode == 2 and "outside the source tree" in res.stderr


WRITER = """
import sys, reprokit

@reprokit.track(seed=0)
def train(out="model.txt"):
    try:
        with open(out, "w") as fh:
            fh.write("from the run")
    except OSError:
        pass
    return 1

if __name__ == "__main__":
    train(out=sys.argv[1])
"""


def test_a_sandboxed_local_replay_cannot_overwrite_an_absolute_path_in_the_checkout(tmp_path):
    from reprokit._reexec.sandbox import available

    if available()[0] is None:
        pytest.skip(f"no sandbox here: {available()[1]}")
    repo = make_repo(tmp_path / "repo", {"train.py": WRITER})
    target = repo / "results.txt"
    res = run_python(repo, WRITER, str(target), script="train.py")
    assert res.returncode == 0, res.stderr
    target.write_text("the user's own edits")
    res = cli(repo, "replay", "latest", "--sandbox")
    assert res.returncode in (0, 1), res.stderr
    assert target.read_text() == "the user's own edits"


def _bwrap_or_skip() -> None:
    from reprokit._reexec.sandbox import available

    if available()[0] is None:
        pytest.skip(f"no sandbox here: {available()[1]}")


def _recorded_elsewhere(tmp_path: Path) -> tuple[Path, Path]:
    """A run of WRITER recorded as another machine would record it (another machine id)."""
    repo = make_repo(tmp_path / "repo", {"train.py": WRITER})
    target = tmp_path / "results.txt"  # outside the checkout: only the sandbox protects it
    other = tmp_path / "colleague-machine-id"
    other.write_text("0123456789abcdef0123456789abcdef\n")
    env = clean_env(REPROKIT_MACHINE_ID_FILE=str(other))
    res = run_python(repo, WRITER, str(target), script="train.py", env=env)
    assert res.returncode == 0, res.stderr
    target.write_text("the user's own edits")
    return repo, target


def test_the_manifest_records_a_salted_host_digest_never_the_machine_id(tmp_path):
    repo, _ = _recorded_elsewhere(tmp_path)
    shown = json.loads(cli(repo, "show", "latest", "--json").stdout)
    host = shown["hardware"]["host"]
    assert host.startswith("sha256:") and len(host) == len("sha256:") + 64
    store = (repo / ".reprokit").rglob("*")
    assert not any(b"0123456789abcdef" in p.read_bytes() for p in store if p.is_file())


def test_a_run_recorded_on_another_machine_replays_in_the_sandbox_by_default(tmp_path):
    _bwrap_or_skip()
    repo, target = _recorded_elsewhere(tmp_path)
    res = cli(repo, "replay", "latest")
    assert res.returncode == 0, res.stderr
    assert "sandbox: bubblewrap" in res.stderr and "another machine" in res.stderr
    assert target.read_text() == "the user's own edits"
    # --no-sandbox opts out: the run's code then runs with the user's rights
    res = cli(repo, "replay", "latest", "--no-sandbox")
    assert res.returncode == 0, res.stderr
    assert "sandbox:" not in res.stderr
    assert target.read_text() == "from the run"


def test_a_run_made_here_is_not_sandboxed_unless_asked(tmp_path):
    repo = make_repo(tmp_path / "repo", {"train.py": WRITER})
    target = tmp_path / "results.txt"
    assert run_python(repo, WRITER, str(target), script="train.py").returncode == 0
    target.write_text("the user's own edits")
    res = cli(repo, "replay", "latest")
    assert res.returncode == 0, res.stderr
    assert "sandbox:" not in res.stderr
    assert target.read_text() == "from the run"


def test_without_a_sandbox_a_run_from_another_machine_asks_for_trust(tmp_path):
    repo, target = _recorded_elsewhere(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git"))
    env = clean_env(PATH=str(bin_dir))
    res = cli(repo, "replay", "latest", env=env)
    assert res.returncode == 2, res.stderr
    assert "another machine" in res.stderr and "--trust" in res.stderr
    assert target.read_text() == "the user's own edits"
    res = cli(repo, "replay", "latest", "--trust", env=env)
    assert res.returncode == 0, res.stderr
    assert "running its code as trusted" in res.stderr


OUTPUTS = """
import os, sys
fixed, noisy = sys.argv[1], sys.argv[2]
with open(fixed, "w") as fh:
    fh.write("the same every time")
with open(noisy, "w") as fh:
    fh.write(os.urandom(8).hex())
"""


def test_absolute_declared_outputs_are_written_in_the_replay_folder_not_over_the_users(tmp_path):
    repo = make_repo(tmp_path / "repo", {"w.py": OUTPUTS})
    fixed = tmp_path / "elsewhere" / "fixed.txt"  # outside the repository
    fixed.parent.mkdir()
    noisy = repo / "results" / "noisy.txt"  # inside it, named by its absolute path
    noisy.parent.mkdir()
    res = cli(
        repo, "run", "--output", str(fixed), "--output", str(noisy), "--",
        sys.executable, "w.py", str(fixed), str(noisy),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    fixed.write_text("the user's own edits")
    noisy.write_text("the user's own results")
    res = cli(repo, "replay", "latest", "--json")
    assert res.returncode == 1, res.stderr  # the noisy file really differs
    outputs = json.loads(res.stdout)["runs"][0]["outputs"]
    assert outputs[f"file {fixed}"]["verdict"] == "identical"
    assert outputs["file results/noisy.txt"]["verdict"] == "different"
    assert fixed.read_text() == "the user's own edits"
    assert noisy.read_text() == "the user's own results"


SELF_PATH = """
import os, sys, reprokit

@reprokit.track(seed=0)
def train(lr=0.1):
    # as minGPT does: the run's settings, with the script's own absolute path
    with open("args.txt", "w") as fh:
        fh.write(f"script={os.path.abspath(__file__)} cwd={os.getcwd()} lr={lr}\\n")
    reprokit.log_artifact("args.txt")
    return lr

if __name__ == "__main__":
    train()
"""


def test_in_the_sandbox_the_rebuilt_tree_is_where_the_recorded_one_was(tmp_path):
    _bwrap_or_skip()
    repo = make_repo(tmp_path / "repo", {"train.py": SELF_PATH})
    res = run_python(repo, SELF_PATH, script="train.py")
    assert res.returncode == 0, res.stderr
    recorded = (repo / "args.txt").read_text()
    assert str(repo) in recorded
    res = cli(repo, "replay", "latest", "--sandbox")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"the rebuilt tree appears at {repo} inside the sandbox" in res.stderr
    assert "verdict: identical" in res.stdout
    assert (repo / "args.txt").read_text() == recorded  # the checkout itself is untouched
    # without the sandbox the path differs, and the report says why
    res = cli(repo, "replay", "latest")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "args.txt contains the replay folder's path" in res.stdout


def test_the_recorded_tree_path_is_made_in_the_sandbox_when_it_no_longer_exists(tmp_path):
    _bwrap_or_skip()
    repo = make_repo(tmp_path / "repo", {"train.py": SELF_PATH})
    assert run_python(repo, SELF_PATH, script="train.py").returncode == 0
    recorded = (repo / "args.txt").read_text()
    moved = tmp_path / "moved"
    repo.rename(moved)  # the store travels with the checkout; the recorded path is gone
    res = cli(moved, "replay", "latest", "--sandbox")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"appears at {repo} inside the sandbox" in res.stderr
    assert not repo.exists()  # made in the sandbox only
    assert (moved / "args.txt").read_text() == recorded


def test_check_and_seeds_of_a_run_from_another_machine_run_in_the_sandbox(tmp_path):
    _bwrap_or_skip()
    repo, target = _recorded_elsewhere(tmp_path)
    for verb in (["check", "latest"], ["seeds", "latest", "-n", "2"]):
        res = cli(repo, *verb)
        assert res.returncode in (0, 2), res.stdout + res.stderr
        assert target.read_text() == "the user's own edits", verb
    res = cli(repo, "check", "latest", "--no-sandbox")
    assert res.returncode == 0, res.stdout + res.stderr
    assert target.read_text() == "from the run"


def test_a_sandboxed_replay_whose_inputs_link_into_the_recorded_tree_runs_in_its_own_folder(
    tmp_path,
):
    """Showing the tree at its recorded path would hide the data its input links point at:
    the replay runs from its own folder instead, and still finds the data."""
    _bwrap_or_skip()
    from tests.e2e.test_inputs import TRAIN

    files = {".gitignore": "data/\n__pycache__/\n", "train.py": TRAIN, "config.txt": "lr=1\n"}
    repo = make_repo(tmp_path / "repo", files)
    (repo / "data").mkdir()
    (repo / "data" / "train.csv").write_text("1,2\n3,4\n")
    res = run_python(repo, TRAIN, script="train.py")
    assert res.returncode == 0, res.stderr
    res = cli(repo, "replay", "latest", "--sandbox")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "data/train.csv" in res.stderr  # checked and linked into the rebuilt tree
    assert "appears at" not in res.stderr
    assert "verdict: identical" in res.stdout


def test_without_the_sandbox_a_param_path_into_the_checkout_is_written_in_the_replay_folder(
    tmp_path,
):
    repo = make_repo(tmp_path / "repo", {"train.py": WRITER})
    target = repo / "results.txt"  # an absolute path into the user's checkout
    assert run_python(repo, WRITER, str(target), script="train.py").returncode == 0
    target.write_text("the user's own edits")
    res = cli(repo, "replay", "latest", "--no-sandbox")
    assert res.returncode == 0, res.stdout + res.stderr
    assert target.read_text() == "the user's own edits"
