"""Paper archives: deterministic, verified and replayed anywhere; hostile ones refused."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

import reprokit
from reprokit._verbs.archive import Limits, UnsafeArchive, safe_extract
from tests.conftest import clean_env, cli, git, run_python

TRAIN = """
import random, pathlib, reprokit

@reprokit.track
def train(lr=0.1, epochs=3):
    w = 0.0
    for epoch in range(epochs):
        w += lr * random.random()
        reprokit.log_metric("loss", round(1 - w, 6), step=epoch)
        reprokit.checkpoint("w", w)
    pathlib.Path("model.txt").write_text(f"{w!r}\\n")
    reprokit.log_artifact("model.txt")
    return {"w": w}

if __name__ == "__main__":
    train()
"""


@pytest.fixture
def recorded(repo):
    (repo / "train.py").write_text(TRAIN)
    (repo / "CITATION.cff").write_text("cff-version: 1.2.0\ntitle: demo\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "train")
    (repo / "notes.txt").write_text("an uncommitted note\n")
    proc = run_python(repo, TRAIN, script="train.py")
    assert proc.returncode == 0, proc.stderr
    return repo, reprokit.load("latest", store=repo / ".reprokit")


def make_archive(repo: Path, out: Path, *extra: str) -> Path:
    proc = cli(repo, "archive", "latest", "-o", str(out), "--name", "paper", *extra)
    assert proc.returncode == 0, proc.stderr
    return out


def test_an_archive_verifies_and_replays_in_a_folder_without_repo_or_store(recorded, tmp_path):
    repo, m = recorded
    out = make_archive(repo, tmp_path / "paper.tar.gz")
    elsewhere = tmp_path / "reviewer"
    elsewhere.mkdir()
    moved = elsewhere / "paper.tar.gz"
    shutil.move(out, moved)
    shutil.rmtree(repo)  # nothing of the author's machine is left
    env = clean_env()
    ok = cli(elsewhere, "verify", "paper.tar.gz", env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("intact: paper.tar.gz")
    rep = cli(elsewhere, "verify", "paper.tar.gz", "--replay", env=env)
    assert rep.returncode == 0, rep.stderr + rep.stdout
    assert f"{m.id}: identical" in rep.stdout and "1 of 1 runs reproduced" in rep.stdout
    assert sorted(os.listdir(elsewhere)) == ["paper.tar.gz"]  # nothing extracted next to it


def test_archives_are_byte_identical_when_made_twice(recorded, tmp_path):
    repo, _ = recorded
    first = make_archive(repo, tmp_path / "paper.tar.gz")
    data = first.read_bytes()
    first.unlink()
    again = make_archive(repo, first)
    assert again.read_bytes() == data
    z1 = make_archive(repo, tmp_path / "paper.zip")
    zdata = z1.read_bytes()
    z1.unlink()
    assert make_archive(repo, z1).read_bytes() == zdata


def test_the_archive_holds_what_reproduce_md_promises(recorded, tmp_path):
    repo, m = recorded
    out = make_archive(repo, tmp_path / "paper.tar.gz", "--with-history")
    with tarfile.open(out) as tf:
        names = tf.getnames()
        readme = tf.extractfile("paper/REPRODUCE.md").read().decode()
        lock = tf.extractfile("paper/requirements.lock").read().decode()
        sums = tf.extractfile("paper/CHECKSUMS.sha256").read().decode()
        for info in tf.getmembers():
            assert info.mtime == 0 and info.uid == 0 and info.uname == ""
    tree = m.code["tree"][:16]
    assert f"paper/source/{tree}/train.py" in names
    assert f"paper/source/{tree}/notes.txt" in names  # the uncommitted file ran too
    assert f"paper/store/runs/{m.id}/manifest.yaml" in names
    assert f"paper/outputs/{m.id}/model.txt" in names
    assert {"paper/CITATION.cff", "paper/history.bundle", "paper/ro-crate-metadata.json"} <= set(
        names
    )
    assert names[-1] == "paper/CHECKSUMS.sha256"
    assert len(sums.splitlines()) == len(names) - 1
    # REPRODUCE.md carries the real numbers of the run.
    w = m.outputs["return"]["value"]["w"]
    assert f"`{m.id}`" in readme and f"return.w={w:.6g}" in readme
    assert "reprokit verify paper.tar.gz --replay" in readme
    assert "pyyaml==" in lock.lower() and "# python: CPython" in lock


def test_claims_fill_the_table(recorded, tmp_path):
    repo, m = recorded
    claims = tmp_path / "claims.yaml"
    claims.write_text(f"- claim: Table 2, row 1\n  run: {m.id[-6:]}\n  result: w\n")
    out = make_archive(repo, tmp_path / "paper.tar.gz", "--claims", str(claims))
    with tarfile.open(out) as tf:
        readme = tf.extractfile("paper/REPRODUCE.md").read().decode()
    w = m.outputs["return"]["value"]["w"]
    assert f"| Table 2, row 1 | `{m.id}` | w | {w} |" in readme
    bad = tmp_path / "bad.yaml"
    bad.write_text("- claim: x\n  run: nope\n")
    proc = cli(repo, "archive", "latest", "-o", str(tmp_path / "x.tar.gz"), "--claims", str(bad))
    assert proc.returncode == 2 and "nope" in proc.stderr


def test_the_ro_crate_validates_with_the_rocrate_library(recorded, tmp_path):
    rocrate = pytest.importorskip("rocrate.rocrate")
    repo, m = recorded
    out = make_archive(repo, tmp_path / "paper.tar.gz")
    with tarfile.open(out) as tf:
        tf.extractall(tmp_path / "x", filter="data")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the library warns about malformed crates
        crate = rocrate.ROCrate(str(tmp_path / "x" / "paper"))
    root = crate.root_dataset
    assert "https://w3id.org/ro/wfrun/process/0.5" in [c.id for c in root["conformsTo"]]
    assert root["datePublished"] == m.run["ended"][:10]
    [action] = [e for e in crate.get_entities() if e.type == "CreateAction"]
    assert action["instrument"]["version"] == m.code["commit"]
    assert {p["name"]: p["value"] for p in action["object"]} == {"lr": 0.1, "epochs": 3}
    [result] = action["result"]
    assert result["sha256"] == m.outputs["artifacts"][0]["sha256"]
    assert action["startTime"] == m.run["started"]
    status = action["actionStatus"]
    assert getattr(status, "id", status) == "http://schema.org/CompletedActionStatus"


def _rewrite(src: Path, dst: Path, change) -> None:
    """Copy a tar.gz member by member, letting ``change(name, data)`` alter one."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w:gz") as tout:
        for info in tin.getmembers():
            data = tin.extractfile(info).read() if info.isfile() else None
            new = change(info.name, data)
            if data is not None:
                info.size = len(new)
                tout.addfile(info, io.BytesIO(new))
            else:
                tout.addfile(info)


@pytest.mark.parametrize("kind", ["source", "manifest", "artifact"])
def test_a_one_byte_change_in_a_member_is_named(recorded, tmp_path, kind):
    repo, m = recorded
    out = make_archive(repo, tmp_path / "paper.tar.gz")
    target = {
        "source": f"paper/source/{m.code['tree'][:16]}/train.py",
        "manifest": f"paper/store/runs/{m.id}/manifest.yaml",
        "artifact": f"paper/outputs/{m.id}/model.txt",
    }[kind]

    def flip(name, data):
        if name == target:
            return data[:10] + bytes([data[10] ^ 1]) + data[11:]
        return data

    bad = tmp_path / "bad.tar.gz"
    _rewrite(out, bad, flip)
    proc = cli(tmp_path, "verify", str(bad))
    assert proc.returncode == 1, proc.stderr
    assert target.removeprefix("paper/") in proc.stderr and proc.stderr.startswith("tampered:")


def _hostile_tar(path: Path, build) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        build(tf)
    return path


def _add(tf, name, data=b"x", **kw):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in kw.items():
        setattr(info, k, v)
    tf.addfile(info, io.BytesIO(data) if info.isfile() else None)


HOSTILE = {
    "absolute": lambda tf: _add(tf, "/tmp/reprokit-pwned"),
    "dotdot": lambda tf: _add(tf, "paper/../../pwned"),
    "symlink out": lambda tf: _add(tf, "paper/link", type=tarfile.SYMTYPE, linkname="/etc"),
    "symlink dotdot": lambda tf: _add(tf, "paper/l", type=tarfile.SYMTYPE, linkname="../../.."),
    "hardlink out": lambda tf: _add(tf, "paper/h", type=tarfile.LNKTYPE, linkname="/etc/passwd"),
    "device": lambda tf: _add(tf, "paper/dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3),
    "fifo": lambda tf: _add(tf, "paper/fifo", type=tarfile.FIFOTYPE),
    "duplicate": lambda tf: (_add(tf, "paper/a"), _add(tf, "paper/a", b"y")),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_tar_archives_are_refused_with_nothing_written_outside(tmp_path, name):
    arc = _hostile_tar(tmp_path / "evil.tar.gz", HOSTILE[name])
    work = tmp_path / "work"
    work.mkdir()
    before = set(tmp_path.parent.iterdir())
    proc = cli(work, "verify", str(arc))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert set(tmp_path.parent.iterdir()) == before
    assert not Path("/tmp/reprokit-pwned").exists() and os.listdir(work) == []


def test_hostile_zip_archives_are_refused(tmp_path):
    cases = {
        "dotdot": ("../evil.txt", b"x", 0o644),
        "absolute": ("/abs.txt", b"x", 0o644),
        "symlink": ("paper/link", b"/etc", 0o120777),
    }
    for label, (member, data, mode) in cases.items():
        arc = tmp_path / f"{label}.zip"
        with zipfile.ZipFile(arc, "w") as zf:
            info = zipfile.ZipInfo(member)
            info.create_system = 3
            info.external_attr = mode << 16
            zf.writestr(info, data)
        with pytest.raises(UnsafeArchive):
            safe_extract(str(arc), str(tmp_path / f"out-{label}"))
        assert not (tmp_path / "evil.txt").exists()
    dup = tmp_path / "dup.zip"
    with zipfile.ZipFile(dup, "w") as zf:
        zf.writestr("paper/a", b"1")
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zf.writestr("paper/a", b"2")
    with pytest.raises(UnsafeArchive, match="twice"):
        safe_extract(str(dup), str(tmp_path / "out-dup"))


def test_decompression_bombs_and_member_floods_are_refused(tmp_path):
    bomb = tmp_path / "bomb.tar.gz"
    with tarfile.open(bomb, "w:gz") as tf:
        _add(tf, "paper/zeros", b"\0" * (4 * 1024 * 1024))
    with pytest.raises(UnsafeArchive, match="bomb"):
        safe_extract(str(bomb), str(tmp_path / "o1"), Limits(max_bytes=1024 * 1024))
    assert not (tmp_path / "o1" / "paper").exists()
    flood = tmp_path / "flood.zip"
    with zipfile.ZipFile(flood, "w") as zf:
        for i in range(50):
            zf.writestr(f"paper/f{i}", b"")
    with pytest.raises(UnsafeArchive, match="members"):
        safe_extract(str(flood), str(tmp_path / "o2"), Limits(max_members=10))


def test_an_output_folder_that_does_not_exist_is_a_clear_error(recorded, tmp_path):
    repo, _ = recorded
    proc = cli(repo, "archive", "latest", "-o", str(tmp_path / "nope" / "p.tar.gz"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_the_python_api(recorded, tmp_path):
    repo, m = recorded
    report = reprokit.archive([m.id], tmp_path / "p.zip", store=repo / ".reprokit", name="p")
    assert report.runs == [m.id] and report.size > 0
    checked = reprokit.verify(str(tmp_path / "p.zip"))
    assert checked.intact and checked.runs == [m.id]
    data = json.loads(cli(tmp_path, "verify", str(tmp_path / "p.zip"), "--json").stdout)
    assert data["intact"] is True and data["schema"] == 1


def test_large_artifacts_are_listed_not_copied(recorded, tmp_path):
    repo, m = recorded
    proc = cli(
        repo, "archive", "latest", "-o", str(tmp_path / "p.tar.gz"), "--max-artifact-size", "5"
    )
    assert proc.returncode == 0, proc.stderr
    assert "not included" in proc.stderr and "model.txt" in proc.stderr
    with tarfile.open(tmp_path / "p.tar.gz") as tf:
        readme = tf.extractfile(tf.getnames()[0].split("/")[0] + "/REPRODUCE.md").read().decode()
        assert not any(n.endswith("outputs/" + m.id + "/model.txt") for n in tf.getnames())
    assert "Outputs not included" in readme and m.outputs["artifacts"][0]["sha256"] in readme
    # REPRODUCE.md, listing it, is derived again by verify from the runs and the settings
    assert cli(tmp_path, "verify", str(tmp_path / "p.tar.gz")).returncode == 0


def test_reproduce_md_is_derived_again_with_missing_outputs_and_history(recorded, tmp_path):
    repo, m = recorded
    (repo / "model.txt").unlink()  # gone before archiving: listed as no longer available
    out = tmp_path / "p.zip"
    proc = cli(repo, "archive", "latest", "-o", str(out), "--with-history")
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(out) as zf:
        name = next(n for n in zf.namelist() if n.endswith("/REPRODUCE.md"))
        readme = zf.read(name).decode()
    assert "Outputs no longer available" in readme and "history.bundle" in readme
    assert readme.splitlines()[-1].startswith("<!-- reprokit archive settings: {")
    renamed = tmp_path / "renamed.zip"  # the settings, not the file's name, say what it was
    shutil.copy(out, renamed)
    proc = cli(tmp_path, "verify", str(renamed))
    assert proc.returncode == 0, proc.stderr
    assert "note:" not in proc.stderr


def test_a_tampered_run_is_not_archived(recorded, tmp_path):
    repo, m = recorded
    path = repo / ".reprokit" / "runs" / m.id / "metrics.jsonl"
    os.chmod(path, 0o644)
    path.write_text(path.read_text() + "\n")
    proc = cli(repo, "archive", "latest", "-o", str(tmp_path / "p.tar.gz"))
    assert proc.returncode == 1 and "metrics.jsonl" in proc.stderr
    assert not (tmp_path / "p.tar.gz").exists()


@pytest.mark.slow
def test_verify_replay_in_a_fresh_venv(recorded, tmp_path):
    repo, m = recorded
    out = make_archive(repo, tmp_path / "paper.tar.gz")
    # The virtualenv installs every distribution of this test environment (the run's
    # requirements.lock), mlflow's ~60 included: minutes on a busy 2-core machine.
    proc = cli(tmp_path, "verify", str(out), "--replay", "--venv", timeout=900)
    if proc.returncode == 2 and "building the virtualenv failed" in proc.stderr:
        pytest.skip(f"no package index reachable: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert f"{m.id}: identical" in proc.stdout
