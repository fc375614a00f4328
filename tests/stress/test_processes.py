"""Processes under load: pool sweeps under every start method, forks that exit, and many runs
started at once from threads and processes in a dirty tree (each must carry the portable patch a
fresh clone needs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter

import pytest

from reprokit._reexec.source import rebuild_source
from reprokit._store.store import Store
from tests.conftest import clean_env, git, make_repo, run_pools, run_python

pytestmark = pytest.mark.stress


def fresh_store_has(store: Store, m) -> bool:
    return store.object_path(m.code["patch"]["sha256"]).exists()


SWEEP = r"""
import multiprocessing as mp
import os
import sys

import reprokit


@reprokit.track
def train(lr=0.1):
    reprokit.log_metric("loss", lr)
    return lr * 2


@reprokit.track
def sweep(method="fork", n=8):
    with mp.get_context(method).Pool(2) as p:
        return p.map(train, [i / 10 for i in range(n)])


@reprokit.track
def forks(k=10):
    codes = []
    for i in range(k):
        pid = os.fork()
        if pid == 0:
            train(lr=i)
            sys.exit(0)
        codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    return codes


if __name__ == "__main__":
    for method in ("fork", "forkserver", "spawn"):
        for _ in range(2):
            sweep(method)
    forks()
"""


def test_pool_sweeps_and_forks_record_one_parent_with_its_children(tmp_path, figure):
    repo = make_repo(tmp_path / "repo")
    proc = run_pools(repo, SWEEP, env=clean_env(PYTHONHASHSEED="0"))
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    store = Store(repo / ".reprokit")
    entries = list(store.entries())
    manifests = [e.manifest for e in entries if e.state == "sealed"]
    assert len(manifests) == len(entries)
    ledger = Counter(line[1] for line in store.ledger_entries())
    assert set(ledger) == {m.id for m in manifests} and set(ledger.values()) == {1}
    for m in manifests:
        store.verify(m.id)
    statuses = Counter(m.run["status"] for m in manifests)
    parents = {m.id: m for m in manifests if m.run["name"] in ("sweep", "forks")}
    children = Counter(m.run["parent"] for m in manifests if m.run["name"] == "train")
    assert all(
        children[pid] == (8 if p.run["name"] == "sweep" else 10) for pid, p in parents.items()
    )
    assert statuses == {"completed": len(manifests)}
    figure(
        "pool sweeps (fork/forkserver/spawn x 2, 8 tracked workers each) + 10 os.fork() exits",
        f"{len(manifests)} runs sealed / {sum(ledger.values())} ledger lines / "
        f"{len(manifests)} verify; {len(parents)} parents, each with all its children; "
        f"0 interrupted, 0 warnings",
    )


BURST = r"""
import sys
import threading

import reprokit


@reprokit.track
def step(i=0):
    return i


def worker(k):
    for j in range(int(sys.argv[1])):
        step(k * 1000 + j)


threads = [threading.Thread(target=worker, args=(k,)) for k in range(24)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


def test_runs_started_at_once_in_a_dirty_tree_all_carry_the_patch(tmp_path, figure):
    repo = make_repo(tmp_path / "repo", {"model.py": "W = 1\n", "README.md": "hello\n"})
    (repo / "model.py").write_text("W = 2\n")  # unstaged change
    (repo / "notes.py").write_text("N = 3\n")  # untracked file
    (repo / "burst.py").write_text(BURST)
    env = clean_env(PYTHONHASHSEED="0")
    procs = [
        subprocess.Popen(["python", "burst.py", "4"], cwd=repo, env=env, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    single = run_python(repo, BURST, "10", env=env, script="burst.py")
    assert single.returncode == 0, single.stderr
    for p in procs:
        _out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    store = Store(repo / ".reprokit")
    manifests = [e.manifest for e in store.entries()]
    assert len(manifests) == 24 * 10 + 3 * 24 * 4
    without = [m.id for m in manifests if not (m.code.get("patch") or {}).get("sha256")]
    assert not without
    for m in manifests:
        assert fresh_store_has(store, m)
    # A fresh clone (no snapshot refs, only reachable objects) rebuilds the source from the
    # patch: once per distinct patch (rebuilding writes the tree into the clone's objects).
    distinct = {m.code["patch"]["sha256"]: m for m in manifests}
    rebuilt = 0
    cwd = os.getcwd()
    try:
        for i, m in enumerate(distinct.values()):
            clone = tmp_path / f"clone{i}"
            git(tmp_path, "clone", "-q", "--no-local", str(repo), str(clone))
            shutil.copytree(repo / ".reprokit", clone / ".reprokit")
            os.chdir(clone)
            scratch = tmp_path / f"scratch{i}"
            scratch.mkdir()
            how = rebuild_source(m, Store(clone / ".reprokit"), str(scratch / "src"), str(scratch))
            assert how["mode"] == "patch"
            assert (scratch / "src" / "model.py").read_text() == "W = 2\n"
            rebuilt += 1
    finally:
        os.chdir(cwd)
    figure(
        "runs started at once in a dirty tree (24 threads x 10; 3 processes x 24 threads x 4)",
        f"{len(manifests) - len(without)} / {len(manifests)} carry the portable patch; "
        f"a fresh clone rebuilt the source from each of the {rebuilt} distinct patch(es)",
    )


DDP = r"""
import torch
import torch.distributed as dist

import reprokit


@reprokit.track
def train(steps=3):
    dist.init_process_group("gloo")
    torch.manual_seed(reprokit.current_run().seed)
    w = torch.zeros(2)
    for step in range(steps):
        g = torch.randn(2)
        dist.all_reduce(g)
        w -= 0.1 * g
        reprokit.checkpoint("w", w)
    dist.destroy_process_group()
    return float(w.sum())


if __name__ == "__main__":
    train()
"""


@pytest.mark.torch
def test_torchrun_jobs_at_once_are_one_run_each(tmp_path, figure):
    pytest.importorskip("torch")
    repo = make_repo(tmp_path / "repo", {"ddp.py": DDP})
    env = clean_env(PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    jobs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc-per-node={n}",
                "ddp.py",
            ],
            cwd=repo,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for n in (2, 2, 3)
    ]
    for job in jobs:
        _out, err = job.communicate(timeout=300)
        assert job.returncode == 0, err
    store = Store(repo / ".reprokit")
    manifests = [e.manifest for e in store.entries()]
    assert len(manifests) == 3
    shards = 0
    for m in manifests:
        ranks = store.ranks_of(m)
        assert ranks["missing"] == [] and ranks["status"] == "completed"
        shards += store.verify(m.id)["shards"]
    assert shards == 1 + 1 + 2
    ledger = Counter(line[1] for line in store.ledger_entries())
    assert set(ledger.values()) == {1} and len(ledger) == 3 + shards
    figure(
        "torchrun jobs at once into one store (2 + 2 + 3 gloo ranks)",
        f"{len(manifests)} runs, {shards} shards, every rank sealed once and verified; "
        f"ledger {sum(ledger.values())} lines, none twice",
    )
