"""Inputs end to end: a gitignored data folder recorded, checked and made available at replay."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tarfile
from pathlib import Path

import pytest

import reprokit
from reprokit._store.store import Store
from tests.conftest import cli, git, make_repo, run_python

TRAIN = """
import reprokit

@reprokit.track
def train(scale=2):
    with open("data/train.csv") as fh:
        rows = [line.split(",") for line in fh.read().split()]
    return sum(int(v) for row in rows for v in row) * scale

if __name__ == "__main__":
    print(train())
"""


@pytest.fixture
def data_repo(tmp_path: Path) -> Path:
    """The common layout: code in git, data/ ignored by git."""
    repo = make_repo(
        tmp_path / "repo",
        {".gitignore": "data/\n__pycache__/\n", "train.py": TRAIN, "config.txt": "lr=1\n"},
    )
    (repo / "data").mkdir()
    (repo / "data" / "train.csv").write_text("1,2\n3,4\n")
    return repo


def record(repo: Path, code: str = TRAIN, script: str = "train.py") -> reprokit.Manifest:
    proc = run_python(repo, code, script=script)
    assert proc.returncode == 0, proc.stderr
    return reprokit.load("latest", store=repo / ".reprokit")


def test_a_file_the_program_opened_is_recorded_as_an_observed_input(data_repo):
    m = record(data_repo)
    (rec,) = m.inputs
    assert rec["path"] == "data/train.csv"
    assert rec["size"] == 8 and rec["files"] == 1
    assert rec["sha256"] == hashlib.sha256(b"1,2\n3,4\n").hexdigest()
    assert m.data["inputs"]["observed"] == [rec]


def test_gitignored_data_unchanged_replays_identical(data_repo):
    m = record(data_repo)
    proc = cli(data_repo, "replay", m.id)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stdout.startswith("verdict: identical")
    assert "inputs: 1 unchanged, 0 changed" in proc.stderr
    assert "linked into the rebuilt tree: data" in proc.stderr  # the ignored folder, whole


def test_a_changed_input_is_named_first_among_the_causes(data_repo):
    m = record(data_repo)
    before = m.inputs[0]["sha256"]
    (data_repo / "data" / "train.csv").write_text("1,2\n3,5\n")  # one byte changed
    proc = cli(data_repo, "replay", m.id, "--json")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    report = json.loads(proc.stdout)
    assert report["verdict"] == "different"
    changed = report["drift"]["inputs"][0]
    assert changed["path"] == "data/train.csv" and changed["recorded_sha256"] == before
    assert changed["now_sha256"] != before and changed["now_size"] == changed["recorded_size"]
    assert report["causes"][0].startswith(f"input data/train.csv changed: sha256 {before[:12]}")
    assert "size 8 → 8" in report["causes"][0]
    text = cli(data_repo, "replay", m.id)
    assert "  input data/train.csv changed" in text.stderr  # in the drift report
    assert "  1. input data/train.csv changed" in text.stdout


def test_a_missing_input_is_exit_2_naming_path_and_digest(data_repo):
    m = record(data_repo)
    digest = m.inputs[0]["sha256"]
    shutil.rmtree(data_repo / "data")
    proc = cli(data_repo, "replay", m.id)
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "verdict" not in proc.stdout
    line = proc.stderr.strip().splitlines()[-1]
    assert "data/train.csv" in line and digest[:12] in line and "missing" in line


def test_data_root_points_replay_at_moved_data(data_repo, tmp_path):
    m = record(data_repo)
    elsewhere = tmp_path / "mounted"
    elsewhere.mkdir()
    shutil.move(str(data_repo / "data"), str(elsewhere / "data"))
    assert cli(data_repo, "replay", m.id).returncode == 2
    proc = cli(data_repo, "replay", m.id, "--data-root", str(elsewhere))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert f"data root {elsewhere}" in proc.stderr


def test_files_of_the_source_tree_and_of_the_environment_are_not_inputs(data_repo):
    code = TRAIN.replace(
        'with open("data/train.csv") as fh:',
        'open("config.txt").read(); import json, os; open(json.__file__).read()\n'
        '    open("out.txt", "w").write("x"); open("out.txt").read()\n'
        '    with open("data/train.csv") as fh:',
    )
    m = record(data_repo, code)
    assert [r["path"] for r in m.inputs] == ["data/train.csv"]
    # The re-executed run, in a rebuilt tree that is no repository, tells the same.
    proc = cli(data_repo, "replay", m.id, "--json")
    assert proc.returncode == 0, proc.stderr
    again = reprokit.load(
        json.loads(proc.stdout)["runs"][0]["replayed"], store=data_repo / ".reprokit"
    )
    assert again.inputs == m.inputs


def test_a_secret_file_is_listed_by_path_only(data_repo):
    (data_repo / "data" / ".env").write_text("API_TOKEN=abc\n")
    code = TRAIN.replace("    with open", '    open("data/.env").read()\n    with open')
    m = record(data_repo, code)
    secret = next(r for r in m.inputs if r["path"] == "data/.env")
    assert secret == {"path": "data/.env", "kind": "file", "secret": True}


def test_declared_inputs_file_and_folder_through_track_and_log_input(data_repo):
    (data_repo / "data" / "images").mkdir()
    for i in range(3):
        (data_repo / "data" / "images" / f"{i}.bin").write_bytes(bytes([i]) * (i + 1))
    code = """
import reprokit

@reprokit.track(inputs=["data/images"])
def train():
    reprokit.log_input("data/train.csv", name="train", source="s3://bucket/train.csv")
    return 1

train()
"""
    m = record(data_repo, code)
    declared = {r["path"]: r for r in m.data["inputs"]["declared"]}
    folder = declared["data/images"]
    assert folder["kind"] == "folder" and folder["files"] == 3 and folder["size"] == 6
    assert declared["data/train.csv"]["name"] == "train"
    assert declared["data/train.csv"]["source"] == "s3://bucket/train.csv"
    # The folder's digest names its listing, kept in the store and checked by verify.
    listing = data_repo / ".reprokit" / "objects" / folder["sha256"][:2] / folder["sha256"]
    assert listing.read_text().splitlines()[0].endswith(" 1 0.bin")
    assert cli(data_repo, "verify", m.id).returncode == 0


def test_a_changed_file_inside_a_folder_input_is_named(data_repo):
    (data_repo / "data" / "images").mkdir()
    for i in range(3):
        (data_repo / "data" / "images" / f"{i}.bin").write_bytes(b"x")
    proc = cli(data_repo, "run", "--input", "data/images", "--", "python", "-c", "print(1)")
    assert proc.returncode == 0, proc.stderr
    (data_repo / "data" / "images" / "1.bin").write_bytes(b"y")
    proc = cli(data_repo, "replay", "latest")
    assert proc.returncode == 0, proc.stderr  # the output did not change...
    assert "input data/images changed" in proc.stderr  # ...but the drift says the data did
    assert "1.bin (modified)" in proc.stderr


def test_run_input_that_does_not_exist_is_exit_2_and_no_run(data_repo):
    proc = cli(data_repo, "run", "--input", "data/nope.csv", "--", "python", "-c", "print(1)")
    assert proc.returncode == 2
    assert "data/nope.csv" in proc.stderr
    assert not (data_repo / ".reprokit" / "runs").exists() or not os.listdir(
        data_repo / ".reprokit" / "runs"
    )


def test_diff_shows_the_input_that_differs(data_repo):
    a = record(data_repo)
    (data_repo / "data" / "train.csv").write_text("1,2\n3,5\n")
    b = record(data_repo)
    proc = cli(data_repo, "diff", a.id, b.id)
    assert proc.returncode == 0, proc.stderr
    assert f"data/train.csv: {a.inputs[0]['sha256']}"[:40] in proc.stdout
    assert "inputs:" in proc.stdout


def test_git_tracked_input_is_marked_in_tree_and_not_linked(tmp_path):
    repo = make_repo(tmp_path / "repo", {"data.csv": "1,2\n", "train.py": "x = 1\n"})
    code = """
import reprokit
with reprokit.run("r", inputs=["data.csv"]):
    pass
"""
    (repo / "train.py").write_text(code)
    git(repo, "commit", "-qam", "train")
    m = record(repo, code)
    assert m.inputs[0]["in_tree"] is True
    proc = cli(repo, "replay", m.id)
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_archive_with_inputs_replays_anywhere_and_lists_them(data_repo, tmp_path):
    m = record(data_repo)
    out = tmp_path / "paper.tar.gz"
    proc = cli(data_repo, "archive", m.id, "-o", str(out), "--name", "paper", "--with-inputs")
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(out) as tf:
        assert "paper/inputs/data/train.csv" in tf.getnames()
        readme = tf.extractfile("paper/REPRODUCE.md").read().decode()
    assert f"| data/train.csv | file | 8 | 1 | `{m.inputs[0]['sha256']}` |" in readme
    assert "| yes |" in readme and "--replay --data-root DIR" in readme
    elsewhere = tmp_path / "reviewer"
    elsewhere.mkdir()
    proc = cli(elsewhere, "verify", str(out), "--replay")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert f"{m.id}: identical" in proc.stdout


def test_archive_without_inputs_needs_the_data_root(data_repo, tmp_path):
    m = record(data_repo)
    out = tmp_path / "paper.tar.gz"
    assert cli(data_repo, "archive", m.id, "-o", str(out), "--name", "paper").returncode == 0
    with tarfile.open(out) as tf:
        assert not any(n.startswith("paper/inputs/") for n in tf.getnames())
        readme = tf.extractfile("paper/REPRODUCE.md").read().decode()
    assert "no: not asked for (--with-inputs)" in readme
    elsewhere = tmp_path / "reviewer"
    elsewhere.mkdir()
    proc = cli(elsewhere, "verify", str(out), "--replay")
    assert proc.returncode == 2  # could not tell: not a verdict of difference
    assert "data/train.csv" in proc.stdout and "missing" in proc.stdout
    proc = cli(elsewhere, "verify", str(out), "--replay", "--data-root", str(data_repo))
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_a_packed_input_edited_in_the_archive_is_named(data_repo, tmp_path):
    m = record(data_repo)
    out = tmp_path / "paper.tar.gz"
    cli(data_repo, "archive", m.id, "-o", str(out), "--name", "paper", "--with-inputs")
    folder = tmp_path / "x"
    with tarfile.open(out) as tf:
        tf.extractall(folder, filter="data")
    target = folder / "paper" / "inputs" / "data" / "train.csv"
    target.chmod(0o644)
    target.write_text("1,2\n3,5\n")
    sums = (folder / "paper" / "CHECKSUMS.sha256").read_text().splitlines()
    fixed = [  # a tamperer who also rewrites the checksums
        f"{hashlib.sha256(target.read_bytes()).hexdigest()}  inputs/data/train.csv"
        if line.endswith("  inputs/data/train.csv")
        else line
        for line in sums
    ]
    (folder / "paper" / "CHECKSUMS.sha256").write_text("\n".join(fixed) + "\n")
    forged = tmp_path / "forged.tar.gz"
    with tarfile.open(forged, "w:gz") as tf:
        tf.add(folder / "paper", arcname="paper")
    proc = cli(tmp_path, "verify", str(forged))
    assert proc.returncode == 1
    assert "inputs/data/train.csv does not match the recorded input" in proc.stderr


def test_files_beyond_the_observation_budget_are_counted_by_folder_and_still_available(
    data_repo,
):
    for i in range(4):
        (data_repo / "data" / f"part{i}.csv").write_text(f"{i},1\n")
    code = """
import reprokit
import reprokit._record.inputs as budget
budget.OBSERVED_HASH_FILES = budget.OBSERVED_LIST_FILES = 1  # a tiny budget, for the test
budget.BACKGROUND_HASH_FILES = 0  # and nothing hashed off the caller's path

@reprokit.track
def train():
    return sum(len(open(f"data/part{i}.csv").read()) for i in range(4))

train()
"""
    m = record(data_repo, code)
    section = m.data["inputs"]
    assert [r.get("sha256") is not None for r in section["observed"]] == [True, False]
    assert section["observed_limits"]["unlisted"] == [{"folder": "data", "files": 2, "size": 8}]
    proc = cli(data_repo, "replay", m.id)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "data: not checked (2 files read beyond the observation budget" in proc.stderr
    shutil.rmtree(data_repo / "data")
    assert cli(data_repo, "replay", m.id).returncode == 2


def test_files_beyond_the_seal_budget_are_hashed_in_the_background_while_the_run_goes_on(
    data_repo,
):
    for i in range(4):
        (data_repo / "data" / f"part{i}.csv").write_text(f"{i},1\n")
    code = """
import threading, time
import reprokit
import reprokit._record.api
import reprokit._record.inputs as budget
budget.OBSERVED_HASH_FILES = budget.OBSERVED_LIST_FILES = 1  # the seal hashes one, lists one

# Another thread, as PyTorch's or a BLAS pool's: the hasher keeps out of single-threaded
# processes.
threading.Thread(target=time.sleep, args=(600,), daemon=True).start()

@reprokit.track
def train():
    total = sum(len(open(f"data/part{i}.csv").read()) for i in range(4))
    # The training that follows the loading: long enough for the background thread.
    hasher = reprokit._record.api.current_run()._inputs._hasher
    deadline = time.monotonic() + 60
    while hasher.files < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    return total

train()
"""
    m = record(data_repo, code)
    section = m.data["inputs"]
    digests = {r["path"]: r.get("sha256") for r in section["observed"]}
    assert digests == {
        f"data/part{i}.csv": hashlib.sha256(f"{i},1\n".encode()).hexdigest() for i in range(4)
    }
    assert "observed_limits" not in section  # nothing beyond any budget
    assert not any(r.get("changed_during_run") for r in section["observed"])


def test_a_single_threaded_program_gets_no_hashing_thread_and_its_seal_hashes_what_it_read(
    data_repo,
):
    for i in range(4):
        (data_repo / "data" / f"part{i}.csv").write_text(f"{i},1\n")
    code = """
import threading, time
import reprokit
import reprokit._record.api

@reprokit.track
def train():
    total = sum(len(open(f"data/part{i}.csv").read()) for i in range(4))
    time.sleep(0.6)  # two of the hasher's rounds, had it started
    assert threading.active_count() == 1, threading.enumerate()
    assert reprokit._record.api.current_run()._inputs._hasher._thread is None
    return total

train()
"""
    m = record(data_repo, code)
    digests = {r["path"]: r.get("sha256") for r in m.data["inputs"]["observed"]}
    assert digests == {
        f"data/part{i}.csv": hashlib.sha256(f"{i},1\n".encode()).hexdigest() for i in range(4)
    }


def test_an_observed_file_changed_during_the_run_is_flagged(data_repo):
    code = """
import reprokit

@reprokit.track
def train():
    with open("data/train.csv") as fh:
        text = fh.read()
    with open("data/train.csv.tmp", "w") as fh:
        fh.write("5,5\\n")
    import os
    os.replace("data/train.csv.tmp", "data/train.csv")  # another writer, in effect
    return len(text)

train()
"""
    m = record(data_repo, code)
    (rec,) = [r for r in m.data["inputs"]["observed"] if r["path"] == "data/train.csv"]
    assert rec["changed_during_run"] is True


def test_the_determinism_check_gets_the_inputs_too(data_repo):
    m = record(data_repo)
    proc = cli(data_repo, "check", m.id)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    shutil.rmtree(data_repo / "data")
    proc = cli(data_repo, "check", m.id)
    assert proc.returncode == 2 and "data/train.csv" in proc.stderr


def test_the_ro_crate_names_each_input_as_an_object_of_its_run(data_repo, tmp_path):
    rocrate = pytest.importorskip("rocrate.rocrate")
    m = record(data_repo)
    out = tmp_path / "paper.tar.gz"
    proc = cli(data_repo, "archive", m.id, "-o", str(out), "--name", "paper", "--with-inputs")
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(out) as tf:
        tf.extractall(tmp_path / "x", filter="data")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the library warns about malformed crates
        crate = rocrate.ROCrate(str(tmp_path / "x" / "paper"))
    [action] = [e for e in crate.get_entities() if e.type == "CreateAction"]
    [data] = [o for o in action["object"] if getattr(o, "id", "") == "inputs/data/train.csv"]
    assert data["sha256"] == m.inputs[0]["sha256"] and data["contentSize"] == "8"


def test_a_recorded_command_replays_with_the_inputs_its_tracked_calls_read(data_repo):
    proc = cli(data_repo, "run", "--", sys.executable, "train.py")
    assert proc.returncode == 0, proc.stderr
    store = Store(data_repo / ".reprokit")
    [command] = [e.manifest for e in store.entries() if e.manifest.run["parent"] is None]
    assert command.run["entry"]["kind"] == "command"
    # The program's reads, its tracked call's and reprokit's own not among them (git, caches).
    assert [r["path"] for r in command.inputs] == ["data/train.csv"]
    proc = cli(data_repo, "replay", command.id)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "linked into the rebuilt tree: data" in proc.stderr
    shutil.rmtree(data_repo / "data")
    proc = cli(data_repo, "replay", command.id)
    assert proc.returncode == 2 and "data/train.csv" in proc.stderr


WRITES_ITS_INPUT = """
import reprokit

@reprokit.track(inputs=["data/train.csv"])
def train():
    with open("data/train.csv") as fh:
        total = sum(int(v) for v in fh.read().replace(",", " ").split())
    with open("data/train.csv", "a") as fh:  # writes into its own input
        fh.write("9,9\\n")
    return total

if __name__ == "__main__":
    print(train())
"""


def record_a_program_that_writes_into_its_input(repo: Path) -> reprokit.Manifest:
    m = record(repo, WRITES_ITS_INPUT)
    (repo / "data" / "train.csv").write_text("1,2\n3,4\n")  # the data as it was recorded
    assert m.data["inputs"]["declared"][0]["sha256"] == hashlib.sha256(b"1,2\n3,4\n").hexdigest()
    return m


def test_an_input_the_replayed_program_modified_is_named_and_exit_2(data_repo):
    # Without a sandbox the input is the user's own file: the replay cannot stop the write, so it
    # checks every input again afterwards and never lets a modification pass silently.
    m = record_a_program_that_writes_into_its_input(data_repo)
    proc = cli(data_repo, "replay", m.id, "--json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    (modified,) = report["inputs"]["modified_by_replay"]
    assert modified["path"] == "data/train.csv"
    assert modified["before_sha256"] == hashlib.sha256(b"1,2\n3,4\n").hexdigest()
    assert modified["after_sha256"] == hashlib.sha256(b"1,2\n3,4\n9,9\n").hexdigest()
    assert "the replayed program modified its input data/train.csv" in proc.stderr
    assert report["causes"][0].startswith("the replayed program modified its input")


def test_inputs_are_read_only_in_the_sandboxed_replay(data_repo):
    from reprokit._reexec.sandbox import available

    if available()[0] is None:
        pytest.skip(f"no sandbox here: {available()[1]}")
    m = record_a_program_that_writes_into_its_input(data_repo)
    proc = cli(data_repo, "replay", m.id, "--sandbox")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert (data_repo / "data" / "train.csv").read_text() == "1,2\n3,4\n"  # untouched
    assert "tried to write into a read-only input" in proc.stderr
    assert "Read-only file system" in proc.stderr


def test_a_replay_that_only_reads_its_inputs_is_not_blamed(data_repo):
    m = record(data_repo)
    proc = cli(data_repo, "replay", m.id, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert "modified_by_replay" not in report["inputs"]
    assert report["inputs"]["located"]["data/train.csv"]["at"] == str(
        data_repo / "data" / "train.csv"
    )


# A run reads an 8 MiB file, waits until the background hasher (slowed to 4 KiB chunks) has
# taken the open from the log, then sends itself {signal}: it lands mid-hash.
SIGNALLED_WHILE_HASHING = """
import os, signal, threading, time
import reprokit
import reprokit._record.api
import reprokit._record.inputs as budget

budget._Hasher.CHUNK = 4096
threading.Thread(target=time.sleep, args=(600,), daemon=True).start()  # (as PyTorch's)

@reprokit.track
def train():
    with open("data/big.bin", "rb") as fh:
        fh.read()
    hasher = reprokit._record.api.current_run()._inputs._hasher
    deadline = time.monotonic() + 60
    while hasher._index == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(os.getpid(), signal.{signal})
    time.sleep(60)

train()
"""


def test_a_run_killed_while_its_inputs_are_hashed_seals_no_digest(data_repo):
    (data_repo / "data" / "big.bin").write_bytes(os.urandom(8 << 20))
    proc = run_python(data_repo, SIGNALLED_WHILE_HASHING.format(signal="SIGKILL"))
    assert proc.returncode == -9, proc.stderr
    (entry,) = Store.at(data_repo / ".reprokit").entries()
    assert entry.state == "incomplete" and entry.manifest is None


def test_a_run_terminated_while_its_inputs_are_hashed_seals_only_true_digests(data_repo):
    blob = os.urandom(8 << 20)
    (data_repo / "data" / "big.bin").write_bytes(blob)
    proc = run_python(data_repo, SIGNALLED_WHILE_HASHING.format(signal="SIGTERM"))
    assert proc.returncode != 0
    m = reprokit.load("latest", store=data_repo / ".reprokit")
    (rec,) = [r for r in m.data["inputs"]["observed"] if r["path"] == "data/big.bin"]
    assert rec["sha256"] == hashlib.sha256(blob).hexdigest()


def test_a_replay_of_many_runs_that_modified_an_input_is_exit_2(data_repo):
    m = record_a_program_that_writes_into_its_input(data_repo)
    proc = cli(data_repo, "replay", "--all", "--json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (result,) = [r for r in json.loads(proc.stdout)["runs"] if r["run"] == m.id]
    assert result["verdict"] == "identical"
    assert result["inputs_problem"].startswith("the replayed program modified its input")


# -- `reprokit run` of a script that never imports reprokit ---------------------------------------

# Driven by a flag; reads every file of data/ (gitignored) in the process itself, or in forked
# pool workers (a DataLoader's workers are forked the same way).
READS_DATA = """
import argparse, multiprocessing, os

parser = argparse.ArgumentParser()
parser.add_argument("--workers", type=int, default=0)
args = parser.parse_args()

def load(name):
    with open(os.path.join("data", name)) as fh:
        return sum(int(v) for v in fh.read().replace(",", " ").split())

names = sorted(os.listdir("data"))
if args.workers:
    pool = multiprocessing.get_context("fork").Pool(args.workers)
    total = sum(pool.map(load, names, chunksize=1))
    pool.close()
    pool.join()
else:
    total = sum(map(load, names))
os.makedirs("out", exist_ok=True)
with open("out/total.txt", "w") as fh:
    fh.write(str(total))
"""


@pytest.mark.parametrize("workers", [0, 2])
def test_a_run_command_records_what_its_program_and_forked_workers_read(data_repo, workers):
    (data_repo / "data" / "extra.csv").write_text("5,6\n")
    (data_repo / "reads.py").write_text(READS_DATA)
    git(data_repo, "add", "reads.py")
    git(data_repo, "commit", "-qm", "reads")
    args = ("--", sys.executable, "reads.py", "--workers", str(workers))
    proc = cli(data_repo, "run", "--seed", "0", "--output", "out", *args)
    assert proc.returncode == 0, proc.stderr
    m = reprokit.load("latest", store=data_repo / ".reprokit")
    observed = {r["path"]: r.get("sha256") for r in m.data["inputs"]["observed"]}
    assert observed == {
        "data/train.csv": hashlib.sha256(b"1,2\n3,4\n").hexdigest(),
        "data/extra.csv": hashlib.sha256(b"5,6\n").hexdigest(),
    }
    assert not any(r.get("changed_during_run") for r in m.data["inputs"]["observed"])
    # The data unchanged: identical (before, the rebuilt tree lacked data/: "different").
    rep = cli(data_repo, "replay", m.id, "--json")
    assert rep.returncode == 0, rep.stdout + rep.stderr
    assert json.loads(rep.stdout)["verdict"] == "identical"
    (data_repo / "data" / "extra.csv").write_text("5,7\n")
    rep = cli(data_repo, "replay", m.id)
    assert rep.returncode == 1 and "input data/extra.csv changed" in rep.stdout, rep.stdout
    shutil.rmtree(data_repo / "data")
    rep = cli(data_repo, "replay", m.id)
    assert rep.returncode == 2 and "data/extra.csv" in rep.stderr, rep.stdout + rep.stderr


LOADER = """
import os, sys, torch
from torch.utils.data import DataLoader, Dataset

class Files(Dataset):
    names = sorted(os.listdir("data"))

    def __len__(self):
        return len(self.names)

    def __getitem__(self, i):
        with open(os.path.join("data", self.names[i])) as fh:
            return torch.tensor([float(v) for v in fh.read().replace(",", " ").split()]).sum()

total = sum(float(b.sum()) for b in DataLoader(Files(), batch_size=1, num_workers=2))
os.makedirs("out", exist_ok=True)
with open("out/total.txt", "w") as fh:
    fh.write(str(total))
"""


@pytest.mark.torch
def test_a_run_command_records_what_its_dataloader_workers_read(data_repo):
    (data_repo / "data" / "extra.csv").write_text("5,6\n")
    (data_repo / "loader.py").write_text(LOADER)
    git(data_repo, "add", "loader.py")
    git(data_repo, "commit", "-qm", "loader")
    proc = cli(data_repo, "run", "--output", "out", "--", sys.executable, "loader.py", timeout=300)
    assert proc.returncode == 0, proc.stderr
    m = reprokit.load("latest", store=data_repo / ".reprokit")
    assert {r["path"] for r in m.data["inputs"]["observed"]} == {"data/train.csv", "data/extra.csv"}
    rep = cli(data_repo, "replay", m.id, "--json", timeout=300)
    assert rep.returncode == 0 and json.loads(rep.stdout)["verdict"] == "identical", rep.stderr
