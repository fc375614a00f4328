"""The store: write-once runs, id resolution, tamper evidence, concurrency, crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import reprokit
from reprokit._model.errors import AmbiguousRun, ManifestError, RunNotFound, TamperedError
from reprokit._model.manifest import Manifest
from reprokit._store.store import Store, new_run_id
from tests.conftest import clean_env, git, run_python

RECORD = """
import reprokit, sys
@reprokit.track
def train(lr=0.1):
    reprokit.log_metric("loss", 1.0 - lr)
    reprokit.checkpoint("w", [lr, 2 * lr])
    return lr * 2
for i in range(int(sys.argv[1]) if len(sys.argv) > 1 else 1):
    train(lr=i / 10)
"""


def record(repo: Path, n: int = 1) -> Store:
    proc = run_python(repo, RECORD, str(n))
    assert proc.returncode == 0, proc.stderr
    return Store(repo / ".reprokit")


def writable(path: Path) -> None:
    os.chmod(path, 0o644)


def test_run_ids_sort_by_start_time_and_are_unique():
    ids = [new_run_id(1_700_000_000 + i * 0.001) for i in range(50)]
    assert ids == sorted(ids)
    assert len({new_run_id(1_700_000_000) for _ in range(200)}) == 200


def test_ids_from_the_clock_sort_in_the_order_one_process_made_them(repo):
    # Runs a millisecond apart or less (a fast sweep) share the id's millisecond: their
    # suffixes still sort in order, so "latest", NAME@N and ls never swap them.
    ids = [new_run_id() for _ in range(3000)]
    assert ids == sorted(ids) and len(set(ids)) == 3000
    proc = run_python(
        repo,
        "import reprokit\n"
        "for i in range(40):\n"
        "    with reprokit.run(f'r{i}', seed=i):\n"
        "        pass\n",
    )
    assert proc.returncode == 0, proc.stderr
    store = Store(repo / ".reprokit")
    names = [store.load(rid).run["name"] for rid in store.run_ids()]
    assert names == [f"r{i}" for i in range(40)]
    assert store.load("latest").run["name"] == "r39"


def test_store_writes_a_gitignore_so_the_tree_stays_clean(repo):
    record(repo)
    assert git(repo, "status", "--porcelain").splitlines() == ["?? job.py"]


def test_sealed_files_are_read_only_and_verify(repo):
    store = record(repo)
    rid = store.resolve("latest")
    for f in (store.runs / rid).iterdir():
        assert not os.stat(f).st_mode & 0o222, f
    assert reprokit.verify(rid, store=store.root).intact


def test_every_file_of_a_sealed_run_is_read_only_its_streams_and_copied_artifacts_too(repo):
    # The streams are created read-only and not looked at again; a copied artifact is written
    # writable by the copy and made read-only at the seal.
    (repo / "out.txt").write_text("result\n")
    (repo / "job2.py").write_text(
        "import reprokit\n"
        "with reprokit.run('a') as run:\n"
        "    reprokit.log_metric('loss', 0.5)\n"
        "    reprokit.checkpoint('w', [0.1, 0.2])\n"
        "    run.log_artifact('out.txt', copy=True)\n"
    )
    proc = subprocess.run([sys.executable, "job2.py"], cwd=repo, env=clean_env(),
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    store = Store(repo / ".reprokit")
    rid = store.resolve("latest")
    files = sorted(p for p in (store.runs / rid).rglob("*") if p.is_file())
    names = {p.relative_to(store.runs / rid).as_posix() for p in files}
    assert {"metrics.jsonl", "checkpoints.jsonl", "manifest.yaml"} <= names
    assert any(n.startswith("artifacts/") for n in names), names
    for f in files:
        assert not os.stat(f).st_mode & 0o222, f
    assert reprokit.verify(rid, store=store.root).intact


def test_runs_seal_through_a_named_temp_file_where_the_unnamed_one_cannot_be_linked(repo):
    # A manifest is written to an unnamed file (O_TMPFILE) and linked in through /proc: a
    # process that sees no /proc (here: bubblewrap mounts an empty one) takes the named temp
    # file instead, and leaves none behind.
    from reprokit._reexec.sandbox import available

    bwrap, why = available()
    if bwrap is None:
        pytest.skip(f"no bubblewrap here: {why}")
    (repo / "job.py").write_text(RECORD)
    argv = [bwrap, "--bind", "/", "/", "--dev", "/dev", "--tmpfs", "/proc",
            sys.executable, "job.py", "2"]  # fmt: skip
    proc = subprocess.run(argv, cwd=repo, env=clean_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    store = Store(repo / ".reprokit")
    assert len(store.run_ids()) == 2
    for rid in store.run_ids():
        assert reprokit.verify(rid, store=store.root).intact
    assert list((store.root / "tmp").iterdir()) == []
    record(repo)  # and with /proc: the unnamed file
    assert len(store.run_ids()) == 3 and list((store.root / "tmp").iterdir()) == []
    assert reprokit.verify("latest", store=store.root).intact


def test_digest_folder_names_files_alike_with_or_without_a_trailing_separator(tmp_path):
    from reprokit._store.store import digest_folder

    (tmp_path / "run" / "artifacts" / "sub").mkdir(parents=True)
    (tmp_path / "run" / "metrics.jsonl").write_text("{}\n")
    (tmp_path / "run" / "artifacts" / "sub" / "a.bin").write_bytes(b"\0" * 10)
    plain = digest_folder(str(tmp_path / "run"))
    assert list(plain) == ["artifacts/sub/a.bin", "metrics.jsonl"]
    assert digest_folder(str(tmp_path / "run") + os.sep) == plain


def test_resolve_by_full_id_prefix_suffix_and_latest(repo):
    store = record(repo, 3)
    ids = store.run_ids()
    assert store.resolve("latest") == ids[-1]
    assert store.resolve(ids[0]) == ids[0]
    assert store.resolve(ids[1][-6:]) == ids[1]
    with pytest.raises(AmbiguousRun) as err:
        store.resolve(ids[0][:8])
    assert ids[0] in str(err.value) and "ambiguous" in str(err.value)


@pytest.mark.parametrize("ref", ["nope", "../x", "a/b", "..", ""])
def test_unknown_or_path_like_refs_are_refused(repo, ref):
    store = record(repo)
    with pytest.raises(RunNotFound):
        store.resolve(ref)


def _tamper_manifest(store: Store, rid: str, old: bytes, new: bytes) -> None:
    path = store.runs / rid / "manifest.yaml"
    mode = os.stat(path).st_mode
    writable(path)
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new, 1))
    os.chmod(path, mode)  # the editor restores the permission bits too


def test_editing_the_manifest_is_detected_even_with_permissions_restored(repo):
    store = record(repo)
    rid = store.resolve("latest")
    _tamper_manifest(store, rid, b"status: completed", b"status: completed ")
    with pytest.raises(TamperedError, match="manifest.yaml was modified"):
        store.verify(rid)


def test_editing_a_file_and_its_digest_in_the_manifest_is_detected(repo):
    store = record(repo)
    rid = store.resolve("latest")
    metrics = store.runs / rid / "metrics.jsonl"
    writable(metrics)
    metrics.write_text('{"name": "loss", "step": 0, "value": 0.0}\n')
    from reprokit._model.digest import sha256_file

    m = Manifest.load(store.runs / rid / "manifest.yaml")
    _tamper_manifest(
        store, rid, m.digests["metrics.jsonl"].encode(), sha256_file(metrics)[0].encode()
    )
    with pytest.raises(TamperedError, match="manifest.yaml was modified"):
        store.verify(rid)


@pytest.mark.parametrize("action", ["edit", "delete", "add"])
def test_run_folder_changes_are_detected_naming_the_file(repo, action):
    store = record(repo)
    rid = store.resolve("latest")
    folder = store.runs / rid
    if action == "edit":
        writable(folder / "checkpoints.jsonl")
        with open(folder / "checkpoints.jsonl", "ab") as fh:
            fh.write(b"\n")
        expected = "checkpoints.jsonl was modified"
    elif action == "delete":
        (folder / "metrics.jsonl").unlink()
        expected = "metrics.jsonl is missing"
    else:
        (folder / "extra.txt").write_text("x")
        expected = "extra.txt was added"
    with pytest.raises(TamperedError, match=expected):
        store.verify(rid)


def test_a_modified_source_object_is_detected(repo):
    (repo / "src/model.py").write_text("W = 2\n")  # dirty: a patch object is stored
    store = record(repo)
    rid = store.resolve("latest")
    patch = store.object_path(store.load(rid).code["patch"]["sha256"])
    writable(patch)
    patch.write_bytes(patch.read_bytes() + b" ")
    with pytest.raises(TamperedError, match="object"):
        store.verify(rid)


def test_a_truncated_or_rewritten_ledger_is_detected(repo):
    store = record(repo, 3)
    ids = store.run_ids()
    lines = store.ledger.read_text().splitlines(keepends=True)
    store.ledger.write_text("".join(lines[:1]))
    with pytest.raises(TamperedError, match="not in the store's ledger"):
        store.verify(ids[-1])
    fields = lines[1].split()
    fields[2] = "0" * 64
    store.ledger.write_text(lines[0] + " ".join(fields) + "\n" + lines[2])
    with pytest.raises(TamperedError, match="ledger chain broken"):
        store.verify(ids[0])


def test_a_renamed_run_folder_is_detected(repo):
    store = record(repo)
    rid = store.resolve("latest")
    other = rid[:-6] + "ffffff"
    os.rename(store.runs / rid, store.runs / other)
    with pytest.raises(TamperedError):
        store.verify(other)


def test_sixteen_processes_sealing_at_once_lose_nothing(repo):
    procs = []
    (repo / "job.py").write_text(RECORD)
    for _ in range(16):
        procs.append(
            subprocess.Popen(
                [sys.executable, "job.py", "10"],
                cwd=repo,
                env=clean_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    store = Store(repo / ".reprokit")
    ids = store.run_ids()
    assert len(ids) == 160 and len(set(ids)) == 160
    assert len(store.ledger_entries()) == 160
    for rid in ids:
        store.verify(rid)


def test_a_killed_process_never_shows_a_completed_run(repo):
    code = (
        "import os, signal, reprokit\n"
        "@reprokit.track\n"
        "def train():\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "train()\n"
    )
    proc = run_python(repo, code)
    assert proc.returncode == -signal.SIGKILL
    store = Store(repo / ".reprokit")
    [entry] = list(store.entries())
    assert entry.state == "incomplete" and entry.manifest is None
    with pytest.raises(RunNotFound):
        store.resolve("latest")
    record(repo)  # the store accepts new runs afterwards
    assert store.resolve("latest")


def test_an_unwritable_store_leaves_the_function_working_and_warns(repo):
    # A store path below a regular file cannot be created, whoever runs the test (root too).
    (repo / "blocker").write_text("a file, not a folder\n")
    proc = run_python(repo, RECORD, env=clean_env(REPROKIT_STORE=str(repo / "blocker" / "store")))
    assert proc.returncode == 0, proc.stderr
    assert "not recorded" in proc.stderr
    assert (repo / "blocker").read_text() == "a file, not a folder\n"


def test_a_full_disk_while_sealing_leaves_no_partial_run(repo):
    # RLIMIT_FSIZE makes writes past the limit fail with EFBIG, as a full disk would.
    code = (
        "import resource, signal, warnings\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "import reprokit\n"
        "@reprokit.track\n"
        "def train():\n"
        "    resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))\n"
        "    return 42\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    print(train())\n"
        "print(any('not recorded' in str(x.message) for x in w))\n"
    )
    proc = run_python(repo, code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["42", "True"]
    store = Store(repo / ".reprokit")
    assert store.run_ids() == []


HOSTILE = {
    "python tag": b"schema: 1\nrun: !!python/object/apply:os.system ['echo pwned']\n",
    "billion laughs": b"schema: 1\na: &a [x, x]\nb: &b [*a, *a]\nrun: {id: x, status: completed}\n",
    "wrong schema": b"schema: 2\nrun: {id: x, status: completed, started: t}\n",
    "missing run": b"schema: 1\n",
    "not utf-8": b"schema: 1\nrun: {id: \xff\xfe}\n",
    "not a mapping": b"- 1\n- 2\n",
    "broken yaml": b"schema: 1\nrun: {id: [\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_manifests_get_a_one_line_error(name, tmp_path):
    with pytest.raises(ManifestError) as err:
        Manifest.from_bytes(HOSTILE[name], tmp_path / "manifest.yaml")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "pwned").exists()


def test_a_run_in_progress_is_listed_as_running(repo):
    code = (
        "import time, reprokit\n"
        "with reprokit.run('slow'):\n"
        "    print('started', flush=True)\n"
        "    time.sleep(30)\n"
    )
    (repo / "slow.py").write_text(code)
    p = subprocess.Popen(
        [sys.executable, "slow.py"], cwd=repo, env=clean_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert p.stdout.readline().strip() == "started"
        [entry] = list(Store(repo / ".reprokit").entries())
        assert entry.state == "running"
    finally:
        p.kill()
        p.wait()
    time.sleep(0.05)
    [entry] = list(Store(repo / ".reprokit").entries())
    assert entry.state == "incomplete"


def test_a_listing_reads_run_and_code_only(repo):
    store = record(repo)
    rid = store.resolve("latest")
    [entry] = list(store.entries(head=True))
    assert entry.manifest.run["id"] == rid and entry.manifest.code["kind"] == "git"
    assert "environment" not in entry.manifest.data and "params" not in entry.manifest.data
    assert "environment" in store.load(rid).data
