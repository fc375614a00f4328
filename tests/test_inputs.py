"""Input digests, the stat cache and the open-file observer, on real files."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

import reprokit
from reprokit._model.redact import is_secret_file
from reprokit._record import observe
from reprokit._record.inputs import describe_input, file_digest, folder_listing, parse_listing
from reprokit._store.statcache import StatCache
from tests.conftest import NESTED_RUNS

HOUR_NS = 3600 * 10**9


def age(*paths: Path) -> None:
    """Move mtimes an hour back: files older than the racy window, as real datasets are."""
    for p in paths:
        st = os.stat(p)
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns - HOUR_NS))


def test_an_unchanged_file_keeps_its_digest_from_the_cache(tmp_path):
    f = tmp_path / "train.csv"
    f.write_bytes(b"a" * 1000)
    age(f)
    cache = StatCache(str(tmp_path / "cache"))
    digest, size, cached = file_digest(str(f), cache)
    assert (digest, size, cached) == (hashlib.sha256(b"a" * 1000).hexdigest(), 1000, False)
    cache.save()
    again = StatCache(str(tmp_path / "cache"))  # read back from disk
    assert file_digest(str(f), again) == (digest, 1000, True)
    assert file_digest(str(f), again, full=True) == (digest, 1000, False)


def test_a_changed_file_is_hashed_again_even_with_the_same_size(tmp_path):
    f = tmp_path / "train.csv"
    f.write_bytes(b"abc")
    age(f)
    cache = StatCache(str(tmp_path / "cache"))
    first = file_digest(str(f), cache)[0]
    f.write_bytes(b"abd")
    second, _, cached = file_digest(str(f), cache)
    assert not cached and second == hashlib.sha256(b"abd").hexdigest() != first


def test_a_file_modified_within_the_racy_window_is_not_cached(tmp_path):
    f = tmp_path / "fresh.csv"
    f.write_bytes(b"x")
    cache = StatCache(str(tmp_path / "cache"))
    file_digest(str(f), cache)
    assert file_digest(str(f), cache)[2] is False


def test_a_folder_listing_names_each_file_and_an_unchanged_folder_comes_from_the_cache(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.bin").write_bytes(b"1")
    (data / "sub" / "b.bin").write_bytes(b"22")
    age(data / "a.bin", data / "sub" / "b.bin")
    cache = StatCache(str(tmp_path / "cache"))
    result, listing = folder_listing(str(data), cache)
    assert result["files"] == 2 and result["size"] == 3
    assert result["sha256"] == hashlib.sha256(listing).hexdigest()
    assert parse_listing(listing) == {
        "a.bin": (hashlib.sha256(b"1").hexdigest(), 1),
        "sub/b.bin": (hashlib.sha256(b"22").hexdigest(), 2),
    }
    cached, none = folder_listing(str(data), cache)
    assert none is None and cached == result
    (data / "sub" / "b.bin").write_bytes(b"23")
    changed, listing2 = folder_listing(str(data), cache)
    assert listing2 is not None and changed["sha256"] != result["sha256"]
    assert changed == folder_listing(str(data), StatCache(None), full=True)[0]


def test_a_cache_that_cannot_be_read_is_ignored(tmp_path):
    f = tmp_path / "x.csv"
    f.write_bytes(b"x")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "inputs-files.json").write_text("{not json")
    assert file_digest(str(f), StatCache(str(tmp_path / "cache")))[0] == (
        hashlib.sha256(b"x").hexdigest()
    )


def test_describe_input_gives_paths_relative_to_the_root(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.csv").write_text("1\n")
    rec, listing = describe_input(tmp_path / "data" / "t.csv", str(tmp_path), StatCache(None))
    assert rec["path"] == "data/t.csv" and rec["files"] == 1 and listing is None
    outside, _ = describe_input(tmp_path / "data" / "t.csv", str(tmp_path / "x"), StatCache(None))
    assert outside["path"] == str(tmp_path / "data" / "t.csv")


def test_the_observer_sees_reads_not_writes_and_resolves_relative_paths(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "in.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    token = observe.start()
    try:
        os.chdir("d")
        open("in.txt").close()  # noqa: SIM115 - opening is the point
        with open("out.txt", "w") as fh:
            fh.write("y")
        open("out.txt").close()  # noqa: SIM115 - read back what the run wrote: not an input
        fd = os.open(str(tmp_path / "d" / "in.txt"), os.O_RDONLY)
        os.close(fd)
    finally:
        seen, dropped = observe.stop(token)
    assert seen == [str(tmp_path / "d" / "in.txt")] and dropped == 0
    open("in.txt").close()  # noqa: SIM115 - after stop: nobody is observing
    assert observe.stop(token) == ([], 0)


def test_secret_files_are_known_by_name():
    for path in ("/p/.env", "/p/.env.local", "/p/server.pem", "/home/u/.ssh/config", "/p/tls.key"):
        assert is_secret_file(path), path
    for path in ("/p/train.csv", "/p/keys.txt", "/p/environment.yaml"):
        assert not is_secret_file(path), path


def test_a_declared_input_that_is_missing_warns_and_the_run_is_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "here.csv").write_text("1\n")
    store = tmp_path / "store"
    run = reprokit.run("r", store=store, inputs=["nope.csv", "here.csv"])
    with pytest.warns(reprokit.ReprokitWarning, match="nope.csv"), run as r:
        pass
    m = reprokit.load(r.id, store=store)
    assert m.status == "completed"
    assert [rec["path"].rsplit("/", 1)[-1] for rec in m.inputs] == ["here.csv"]


def test_a_folder_with_a_link_loop_is_described_once(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.bin").write_bytes(b"1")
    (data / "loop").symlink_to(data)
    result, listing = folder_listing(str(data), StatCache(None))
    assert result["files"] == 1 and parse_listing(listing) == {
        "a.bin": (hashlib.sha256(b"1").hexdigest(), 1)
    }


def _dataset(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    for i in range(5):
        (data / f"{i}.bin").write_bytes(bytes([i]) * 10)
    (data / "sub" / "x.bin").write_bytes(b"x" * 10)
    age(*data.rglob("*.bin"))
    return data


def test_a_cached_folder_is_declared_at_once_and_checked_before_the_seal(tmp_path):
    data = _dataset(tmp_path)
    store = tmp_path / "store"
    with reprokit.run("first", store=store) as r:
        first = r.log_input(data)
    with reprokit.run("second", store=store) as r:
        again = r.log_input(data)
        # The record came from the cache: a check runs in the background.
        assert r._inputs._checks and again["sha256"] == first["sha256"]
    (rec,) = reprokit.load("latest", store=store).inputs
    assert rec["sha256"] == first["sha256"] and "changed_during_run" not in rec
    assert rec["sha256"] == folder_listing(str(data), StatCache(None), full=True)[0]["sha256"]


def test_a_folder_file_changed_after_its_declaration_is_named_with_the_state_at_seal(
    tmp_path,
):
    data = _dataset(tmp_path)
    store = tmp_path / "store"
    with reprokit.run("first", store=store) as r:
        first = r.log_input(data)
    with reprokit.run("second", store=store) as r:
        declared = r.log_input(data)
        (data / "sub" / "x.bin").write_bytes(b"y" * 10)  # same size, during the run
    assert declared["sha256"] == first["sha256"]  # what log_input knew then
    (rec,) = reprokit.load("latest", store=store).inputs
    now = folder_listing(str(data), StatCache(None), full=True)[0]["sha256"]
    assert rec["changed_during_run"] == ["sub/x.bin"]
    # The check ran before or after the write: the record says which state it saw, and the
    # state at seal when that is another.
    assert rec["sha256"] in (first["sha256"], now) and rec.get("sha256_at_seal", now) == now


def test_a_declared_file_changed_during_the_run_is_marked_with_its_digest_at_seal(tmp_path):
    f = tmp_path / "train.csv"
    f.write_bytes(b"1,2\n")
    age(f)
    store = tmp_path / "store"
    with reprokit.run("r", store=store) as r:
        r.log_input(f)
        with open(f, "ab") as fh:  # the program appends to its own input
            fh.write(b"9,9\n")
    (rec,) = reprokit.load("latest", store=store).inputs
    assert rec["sha256"] == hashlib.sha256(b"1,2\n").hexdigest()  # what it was when declared
    assert rec["changed_during_run"] is True
    assert rec["sha256_at_seal"] == hashlib.sha256(b"1,2\n9,9\n").hexdigest()


def test_a_folder_file_changed_before_the_run_is_not_blamed_on_the_run(tmp_path):
    data = _dataset(tmp_path)
    store = tmp_path / "store"
    with reprokit.run("first", store=store) as r:
        first = r.log_input(data)
    (data / "0.bin").write_bytes(b"z" * 10)
    age(data / "0.bin")
    time.sleep(0.05)  # beyond the clock slack: the change is older than the declaration
    with reprokit.run("second", store=store) as r:
        r.log_input(data)
    (rec,) = reprokit.load("latest", store=store).inputs
    assert rec["sha256"] != first["sha256"] and "changed_during_run" not in rec


def test_a_racy_folder_is_never_summarised_and_a_same_stat_rewrite_is_seen(tmp_path):
    # Files modified within the racy window of the cache write: a rewrite in the same clock tick
    # could keep every stat field, so neither their entries nor the folder's summary are kept.
    data = _dataset(tmp_path)
    cache = StatCache(str(tmp_path / "cache"), racy_ns=2 * HOUR_NS)  # the hour-old files are racy
    first, listing = folder_listing(str(data), cache)
    assert listing is not None
    assert cache.folder_summary(os.path.realpath(data)) is None
    assert cache.folder_files(os.path.realpath(data)) == {}
    st = os.stat(data / "1.bin")
    (data / "1.bin").write_bytes(b"Q" * 10)  # same size, and the same mtime put back
    os.utime(data / "1.bin", ns=(st.st_atime_ns, st.st_mtime_ns))
    again, listing = folder_listing(str(data), cache)
    assert listing is not None and again["sha256"] != first["sha256"]


def test_a_summary_of_an_older_state_is_dropped_when_the_folder_turns_racy(tmp_path):
    data = _dataset(tmp_path)
    cache = StatCache(str(tmp_path / "cache"))
    folder_listing(str(data), cache)
    assert cache.folder_summary(os.path.realpath(data)) is not None
    (data / "2.bin").write_bytes(b"new")  # fresh: racy
    folder_listing(str(data), cache)
    assert cache.folder_summary(os.path.realpath(data)) is None


def test_a_folder_watch_names_the_files_changed_since_it_began(tmp_path):
    from reprokit._record.watch import FolderWatch

    data = _dataset(tmp_path)
    watch = FolderWatch()
    if not watch.complete:
        pytest.skip("no inotify on this system: the seal walks the folder again instead")
    watch.add(str(data), "")
    watch.add(str(data / "sub"), "sub/")
    assert watch.changed() == set()
    (data / "sub" / "x.bin").write_bytes(b"changed")
    (data / "new.bin").write_bytes(b"n")
    assert {"sub/x.bin", "new.bin"} <= (watch.changed() or set())
    watch.close()


def test_a_folder_reached_through_file_links_is_walked_again_at_seal(tmp_path):
    # A link's target lies in a folder no watch covers: the check cannot vouch for it.
    data = _dataset(tmp_path)
    elsewhere = tmp_path / "elsewhere.bin"
    elsewhere.write_bytes(b"e" * 10)
    age(elsewhere)
    (data / "link.bin").symlink_to(elsewhere)
    store = tmp_path / "store"
    with reprokit.run("first", store=store) as r:
        first = r.log_input(data)
    with reprokit.run("second", store=store) as r:
        r.log_input(data)
        r._inputs._checks[0]._thread.join()  # the check is done: the change comes after it
        elsewhere.write_bytes(b"f" * 10)
    (rec,) = reprokit.load("latest", store=store).inputs
    assert rec["changed_during_run"] == ["link.bin"]
    assert rec["sha256"] == first["sha256"] != rec["sha256_at_seal"]


RACING_READER = (
    """
import os, sys, threading
import reprokit

sys.setswitchinterval(1e-6)  # threads switch as often as they can: the race shows at once

def reader():  # another thread of the program reading a file all the time
    while True:
        os.close(os.open(sys.executable, os.O_RDONLY))

threading.Thread(target=reader, daemon=True).start()
"""
    + NESTED_RUNS
    + """
for i in range(int(sys.argv[1])):
    outer(i)
print("done")
"""
)


def test_runs_end_cleanly_while_another_thread_starts_their_hasher(tmp_path: Path) -> None:
    # The background hasher starts at a run's first file read, in whichever thread reads:
    # here another thread of the program, reading all the time, often at the very moment the
    # main thread ends the run. Ending a run must never raise into the program.
    import subprocess
    import sys

    from tests.conftest import clean_env, make_repo

    repo = make_repo(tmp_path / "repo")
    (repo / "race.py").write_text(RACING_READER)
    # Four at once: on a busy CPU a new thread takes longer to run its first line, which is
    # when the race can be lost.
    procs = [subprocess.Popen([sys.executable, "race.py", "300"], cwd=repo, env=clean_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]  # fmt: skip
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and out.strip() == "done", err[-2000:]
