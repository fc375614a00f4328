"""Remote stores through the folder backend (file://): the same protocol as s3://, no server.

Each "machine" is its own REPROKIT_CACHE folder; the remote is a folder both can reach.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reprokit._model.errors import StoreError
from reprokit._store.backend import FolderBackend, check_url
from reprokit._store.store import Store
from tests.conftest import clean_env, cli, run_python

RECORD = """
import reprokit, sys
@reprokit.track
def train(lr=0.1):
    reprokit.log_metric("loss", 1.0 - lr)
    return lr * 2
for i in range(int(sys.argv[1]) if len(sys.argv) > 1 else 1):
    train(lr=i / 10)
"""


def machine(tmp_path: Path, name: str, url: str) -> dict[str, str]:
    return clean_env(REPROKIT_STORE=url, REPROKIT_CACHE=str(tmp_path / name))


def record(repo: Path, env: dict[str, str], n: int = 1) -> str:
    proc = run_python(repo, RECORD, str(n), env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_folder_backend_puts_once_gets_and_lists(tmp_path):
    b = FolderBackend(str(tmp_path / "b"))
    assert b.put_if_absent("runs/a/x", b"1")
    assert not b.put_if_absent("runs/a/x", b"2")
    assert b.get("runs/a/x") == b"1"
    assert b.get("runs/a/y") is None
    b.put_if_absent("ledger/000000000000", b"l")
    assert b.list("runs/") == ["runs/a/x"]
    with pytest.raises(StoreError):
        b.put_if_absent("../escape", b"x")


def test_store_urls_are_checked_and_never_carry_credentials():
    assert check_url("s3://bucket/prefix/") == "s3://bucket/prefix"
    with pytest.raises(StoreError, match="credentials"):
        check_url("s3://AKIA:secret@bucket/prefix")
    with pytest.raises(StoreError, match="scheme"):
        check_url("ftp://host/x")
    with pytest.raises(StoreError, match="names no bucket"):
        check_url("s3://")


def test_a_run_is_sealed_locally_then_sent_manifest_and_ledger_included(repo, tmp_path):
    url = (tmp_path / "remote").as_uri()
    record(repo, machine(tmp_path, "m1", url), n=2)
    keys = FolderBackend(str(tmp_path / "remote")).list("")
    manifests = [k for k in keys if k.endswith("/manifest.yaml")]
    assert len(manifests) == 2
    assert [k for k in keys if k.startswith("ledger/")] == [
        "ledger/000000000000",
        "ledger/000000000001",
    ]
    # Nothing in the repository: the staging folder is this machine's cache.
    assert not (repo / ".reprokit").exists()
    (staged,) = (tmp_path / "m1" / "remotes").iterdir()
    assert len(list((staged / "runs").iterdir())) == 2


def test_another_machine_lists_verifies_and_replays_what_one_sent(repo, tmp_path):
    url = (tmp_path / "remote").as_uri()
    record(repo, machine(tmp_path, "m1", url), n=2)
    m2 = machine(tmp_path, "m2", url)
    ls = cli(repo, "ls", "--json", env=m2)
    assert ls.returncode == 0, ls.stderr
    assert '"train"' in ls.stdout
    ver = cli(repo, "verify", "latest", env=m2)
    assert ver.returncode == 0, ver.stderr
    every = cli(repo, "verify", "--all", "--json", env=m2)
    assert every.returncode == 0, every.stderr
    assert '"intact": true' in every.stdout
    rep = cli(repo, "replay", "latest", env=m2)
    assert rep.returncode == 0, rep.stdout + rep.stderr
    # The replay's own records were sent too: the first machine sees them.
    ls1 = cli(repo, "ls", "--all", env=machine(tmp_path, "m1", url))
    assert "verdict of replaying" in ls1.stdout


def test_an_unreachable_remote_keeps_the_run_locally_and_push_sends_it(repo, tmp_path):
    (tmp_path / "blocked").write_text("a file where the remote folder should be")
    url = (tmp_path / "blocked" / "remote").as_uri()
    m1 = machine(tmp_path, "m1", url)
    err = record(repo, m1)
    assert "kept in" in err and "reprokit push" in err
    assert Store.at(url).remote == url
    push = cli(repo, "push", env=m1)
    assert push.returncode == 2 and "still waiting" in push.stderr
    (tmp_path / "blocked").unlink()
    push = cli(repo, "push", "--json", env=m1)
    assert push.returncode == 0, push.stderr
    assert '"waiting": []' in push.stdout
    assert cli(repo, "verify", "latest", env=machine(tmp_path, "m2", url)).returncode == 0
    again = cli(repo, "push", env=m1)
    assert again.returncode == 0 and again.stdout == ""


def test_a_half_sent_run_is_invisible_to_other_machines(repo, tmp_path):
    url = (tmp_path / "remote").as_uri()
    record(repo, machine(tmp_path, "m1", url))
    remote = FolderBackend(str(tmp_path / "remote"))
    # What a writer killed mid-send leaves: files, maybe a ledger entry, no manifest.
    remote.put_if_absent("runs/20991231-000000-000-abcdef/metrics.jsonl", b"{}\n")
    ls = cli(repo, "ls", "--json", env=machine(tmp_path, "m2", url))
    assert ls.returncode == 0
    assert "abcdef" not in ls.stdout


def test_a_run_edited_on_the_remote_fails_verify_elsewhere(repo, tmp_path):
    url = (tmp_path / "remote").as_uri()
    record(repo, machine(tmp_path, "m1", url))
    (metrics,) = (tmp_path / "remote" / "runs").glob("*/metrics.jsonl")
    os.chmod(metrics, 0o644)
    metrics.write_text('{"name": "loss", "step": 0, "value": 0.0}\n')
    ver = cli(repo, "verify", "latest", env=machine(tmp_path, "m2", url))
    assert ver.returncode == 1
    assert "metrics.jsonl was modified" in ver.stderr
    every = cli(repo, "verify", "--all", env=machine(tmp_path, "m3", url))
    assert every.returncode == 1
    assert every.stdout.splitlines()[-1].startswith("TAMPERED: 0 of 1 runs verify")


def test_push_on_a_folder_store_says_it_has_no_remote(repo, tmp_path):
    proc = cli(repo, "push", env=clean_env())
    assert proc.returncode == 2
    assert "is a folder" in proc.stderr


def test_recording_into_a_folder_store_imports_no_fsspec(repo):
    heavy = "('fsspec', 's3fs', 'botocore')"
    code = RECORD + f"import sys\nprint(sorted(m for m in {heavy} if m in sys.modules))\n"
    proc = run_python(repo, code, "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_sending_one_run_from_many_threads_at_once_vouches_for_it_once(repo, tmp_path):
    import time
    from concurrent.futures import ThreadPoolExecutor

    from reprokit._store.remote import Remote

    class SlowFolder(FolderBackend):  # a remote with latency: the senders overlap
        def get(self, key):
            time.sleep(0.01)
            return super().get(key)

    staged = Store(tmp_path / "staged")
    record(repo, clean_env(REPROKIT_STORE=str(staged.root)), n=3)
    ids = staged.run_ids()
    url = (tmp_path / "remote").as_uri()
    remote = Remote(url, str(staged.root), backend=SlowFolder(str(tmp_path / "remote")))
    with ThreadPoolExecutor(8) as pool:
        sent = list(pool.map(remote.push, ids * 8))
    assert sum(sent) == 3  # each run committed by exactly one call
    backend = FolderBackend(str(tmp_path / "remote"))
    entries = [backend.get(k).decode().split()[1] for k in backend.list("ledger/")]
    assert sorted(entries) == sorted(ids)  # each run vouched for once
    st = Store(staged.root, remote=url)
    for rid in ids:
        assert st.verify(rid)["run"] == rid
