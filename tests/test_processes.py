"""Fork safety and worker runs: every start method x every process shape, run for real.

A forked child never seals, edits or signals its parent's run; a tracked call in a worker is a
child run of the run that started the worker; the store keeps one ledger line per run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reprokit._store.store import Store
from tests.conftest import clean_env, cli, make_repo, run_pools, run_python

JOB = r"""
import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import sys
import time

import reprokit


@reprokit.track
def child(x=0):
    reprokit.log_metric("x", x)
    reprokit.checkpoint("x", x)
    return x * x


def plain(x):
    return x + 1


def sleeper():
    time.sleep(60)


@reprokit.track
def pool_tracked(method="fork"):
    with mp.get_context(method).Pool(2) as p:
        return sum(p.map(child, range(4)))


@reprokit.track
def pool_plain(method="fork"):
    for i in range(3):
        reprokit.log_metric("before", i)
    with mp.get_context(method).Pool(2) as p:
        total = sum(p.map(plain, range(4)))
    reprokit.log_metric("after", total)
    return total


@reprokit.track
def process_tracked(method="fork"):
    ctx = mp.get_context(method)
    procs = [ctx.Process(target=child, args=(i,)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return [p.exitcode for p in procs]


@reprokit.track
def process_terminated(method="fork"):
    p = mp.get_context(method).Process(target=sleeper)
    p.start()
    p.terminate()
    p.join()
    return p.exitcode


@reprokit.track
def executor_tracked(method="fork"):
    with cf.ProcessPoolExecutor(2, mp_context=mp.get_context(method)) as ex:
        return sum(ex.map(child, range(3)))


@reprokit.track
def fork_exit(method="fork"):
    pid = os.fork()
    if pid == 0:
        child(7)
        sys.exit(0)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def block_fork_exit():
    with reprokit.run("block_fork_exit") as run:
        run.log_metric("m", 1)
        pid = os.fork()
        if pid == 0:
            run.log_metric("m", 2)  # the parent's run: not the child's to edit
            sys.exit(0)
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        run.log_metric("m", 3)
    return code


if __name__ == "__main__":
    method = sys.argv[1]
    shapes = sys.argv[2].split(",")
    results = {}
    for shape in shapes:
        fn = globals()[shape]
        results[shape] = fn() if shape == "block_fork_exit" else fn(method)
    print(json.dumps(results))
"""

CHILDREN = {  # shape -> tracked child runs it makes
    "pool_tracked": 4,
    "pool_plain": 0,
    "process_tracked": 2,
    "process_terminated": 0,
    "executor_tracked": 3,
    "fork_exit": 1,
    "block_fork_exit": 0,
}
METHODS = ["fork", "forkserver", "spawn"]


def shapes_for(method: str) -> list[str]:
    # os.fork() is the fork start method by definition.
    return [s for s in CHILDREN if method == "fork" or "fork_exit" not in s]


@pytest.fixture(scope="module", params=METHODS)
def recorded(request, tmp_path_factory):
    """One script per start method exercising every shape; (method, store, stdout, stderr)."""
    method = request.param
    repo = make_repo(tmp_path_factory.mktemp(method) / "repo")
    env = clean_env(PYTHONHASHSEED="0")
    proc = run_python(repo, JOB, method, ",".join(shapes_for(method)), env=env)
    assert proc.returncode == 0, proc.stderr
    return method, Store(repo / ".reprokit"), json.loads(proc.stdout), proc.stderr


def runs_by_name(store: Store) -> dict[str, list]:
    out: dict[str, list] = {}
    for entry in store.entries():
        assert entry.state == "sealed", (entry.id, entry.state)
        out.setdefault(entry.manifest.run["name"], []).append(entry.manifest)
    return out


def test_no_warnings_from_any_shape(recorded):
    _method, _store, _results, stderr = recorded
    assert "Warning" not in stderr and "warning" not in stderr, stderr


def test_every_run_is_sealed_once_and_verifies(recorded):
    _method, store, _results, _stderr = recorded
    ids = store.run_ids()
    ledger = [line[1] for line in store.ledger_entries()]
    assert sorted(ledger) == sorted(ids)  # one ledger line per run, none twice
    for rid in ids:
        store.verify(rid)


def test_parents_complete_with_their_own_outputs(recorded):
    method, store, results, _stderr = recorded
    runs = runs_by_name(store)
    for shape in shapes_for(method):
        (parent,) = runs[shape]
        assert parent.run["status"] == "completed", (shape, parent.run)
    assert results["process_terminated"] == -15
    assert results["pool_tracked"] == sum(x * x for x in range(4))


def test_tracked_calls_in_workers_are_children_of_the_run_that_started_them(recorded):
    method, store, _results, _stderr = recorded
    runs = runs_by_name(store)
    children = runs.get("child", [])
    by_parent: dict[str, list] = {}
    for c in children:
        assert c.run["status"] == "completed"
        assert c.run["worker_of"] == runs["pool_tracked"][0].run["pid"]
        by_parent.setdefault(c.run["parent"], []).append(c)
    for shape in shapes_for(method):
        (parent,) = runs[shape]
        got = by_parent.pop(parent.id, [])
        assert len(got) == CHILDREN[shape], (shape, len(got))
    assert not by_parent  # no child without its parent
    values = sorted(c.outputs["return"]["value"] for c in children)
    expected = [x * x for x in range(4)] + [x * x for x in range(2)] + [x * x for x in range(3)]
    if method == "fork":
        expected.append(49)
    assert values == sorted(expected)


def test_a_forked_child_leaves_the_parents_metrics_alone(recorded):
    method, store, _results, _stderr = recorded
    runs = runs_by_name(store)
    (plain,) = runs["pool_plain"]
    lines = (store.runs / plain.id / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["before"] * 3 + ["after"]
    if method == "fork":
        (block,) = runs["block_fork_exit"]
        lines = (store.runs / block.id / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["value"] for line in lines] == [1, 3]


def test_no_process_journal_is_left_behind(recorded):
    _method, store, _results, _stderr = recorded
    assert not list(store.active.iterdir())


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_worker_run_replays_identical(tmp_path, method):
    repo = make_repo(tmp_path / "repo")
    env = clean_env(PYTHONHASHSEED="0")
    proc = run_python(repo, JOB, method, "pool_tracked", env=env)
    assert proc.returncode == 0, proc.stderr
    store = Store(repo / ".reprokit")
    child = next(e.manifest for e in store.entries() if e.manifest.run["name"] == "child")
    out = cli(repo, "replay", child.id, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "identical" in out.stdout


def test_log_calls_in_an_untracked_worker_warn_once_and_go_on(tmp_path):
    repo = make_repo(tmp_path / "repo")
    code = r"""
import multiprocessing as mp
import reprokit

def work(x):
    reprokit.log_metric("x", x)
    reprokit.log_metric("x", x)
    return x

@reprokit.track
def main():
    with mp.get_context("fork").Pool(1) as p:
        return p.map(work, [1, 2])

if __name__ == "__main__":
    print(main())
"""
    proc = run_python(repo, code, env=clean_env(PYTHONHASHSEED="0"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[1, 2]"
    assert proc.stderr.count("not recorded") == 1
    (entry,) = list(Store(repo / ".reprokit").entries())
    assert entry.manifest.run["status"] == "completed"
    assert not Path(entry.path / "metrics.jsonl").exists()


LOADER = r"""
import sys

import torch
from torch.utils.data import DataLoader, Dataset

import reprokit


class Squares(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.tensor([float(i * i)])


@reprokit.track
def train(method="fork"):
    loader = DataLoader(
        Squares(), batch_size=2, num_workers=2, multiprocessing_context=method,
        worker_init_fn=reprokit.worker_init_fn,
    )
    total = 0.0
    for step, batch in enumerate(loader):
        total += float(batch.sum())
        reprokit.log_metric("total", total, step=step)
    return total


if __name__ == "__main__":
    print(train(sys.argv[1]))
"""


@pytest.mark.torch
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_dataloader_workers_leave_the_run_alone(tmp_path, method):
    pytest.importorskip("torch")
    repo = make_repo(tmp_path / "repo")
    proc = run_python(repo, LOADER, method, env=clean_env(PYTHONHASHSEED="0", OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    store = Store(repo / ".reprokit")
    (entry,) = list(store.entries())
    assert entry.manifest.run["status"] == "completed"
    assert entry.manifest.outputs["return"]["value"] == float(sum(i * i for i in range(8)))
    assert [line[1] for line in store.ledger_entries()] == [entry.id]
    store.verify(entry.id)


JOBLIB = r"""
import sys

from joblib import Parallel, delayed


import reprokit


@reprokit.track
def train(lr=0.1):
    reprokit.log_metric("loss", lr)
    return lr * 2


@reprokit.track
def sweep(backend="loky"):
    return Parallel(n_jobs=2, backend=backend)(delayed(train)(lr) for lr in (0.1, 0.2, 0.3))


if __name__ == "__main__":
    print(sweep(sys.argv[1]))
"""


@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_joblib_sweep_is_one_parent_with_its_children(tmp_path, backend):
    pytest.importorskip("joblib")
    repo = make_repo(tmp_path / "repo")
    proc = run_pools(repo, JOBLIB, backend, env=clean_env(PYTHONHASHSEED="0"))
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    store = Store(repo / ".reprokit")
    runs = runs_by_name(store)
    (parent,) = runs["sweep"]
    assert sorted(c.outputs["return"]["value"] for c in runs["train"]) == [0.2, 0.4, 0.6]
    assert {c.run["parent"] for c in runs["train"]} == {parent.id}
    assert sorted(line[1] for line in store.ledger_entries()) == sorted(store.run_ids())


# -- issue #10: pool workers that ran tracked calls, and forks beside busy threads --------------

IDLE_WORKER = r"""
import multiprocessing as mp
import signal
import sys

import reprokit


@reprokit.track
def train(lr=0.1):
    reprokit.log_metric("loss", lr)
    return signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def disposition(_):
    return "default" if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL else "handler"


@reprokit.track
def sweep(method="fork"):
    with mp.get_context(method).Pool(1) as pool:
        during = pool.map(train, [0.1, 0.2])
        after = pool.map(disposition, [0])
    return during, after


if __name__ == "__main__":
    during, after = sweep(sys.argv[1])
    mine = "default" if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL else "handler"
    print(during, after, mine)
"""


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_a_worker_whose_runs_ended_dies_of_sigterm_as_usual(tmp_path, method):
    """While a tracked call runs, SIGTERM seals it; once the worker's runs have ended, SIGTERM
    has its default disposition again. A worker left with the Python-level handler could take
    ``Pool.terminate()``'s SIGTERM into the handler's flag just before blocking on the task
    queue's lock and never act on it: the parent then waited for it forever (issue #10)."""
    repo = make_repo(tmp_path / "repo")
    proc = run_pools(repo, IDLE_WORKER, method, env=clean_env(PYTHONHASHSEED="0"))
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    # In the run: reprokit's handler; after it, in the worker and in the parent: the default.
    assert proc.stdout.split("\n")[0] == "[False, False] ['default'] default", proc.stdout
    runs = runs_by_name(Store(repo / ".reprokit"))
    assert len(runs["train"]) == 2 and len(runs["sweep"]) == 1


BUSY_FORKS = r"""
import os
import sys
import threading

import reprokit


@reprokit.track
def step(i=0):
    reprokit.log_metric("x", i)
    return i


@reprokit.track
def child(i=0):
    reprokit.log_metric("c", i)
    return i


def busy(k, stop):
    j = 0
    while not stop.is_set():
        step(k * 100000 + j)
        j += 1


@reprokit.track
def forks(n=60):
    stop = threading.Event()
    threads = [threading.Thread(target=busy, args=(k, stop)) for k in range(3)]
    for t in threads:
        t.start()
    codes = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:
            child(i)
            sys.exit(0)  # through Python's exit path: atexit, finalizers
        codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    stop.set()
    for t in threads:
        t.join()
    return codes


if __name__ == "__main__":
    print(sorted(set(forks(int(sys.argv[1])))))
"""


def test_forks_beside_threads_busy_recording_runs_all_exit(tmp_path):
    """Three threads keep starting and sealing runs (journal lines, metric files, ledger
    appends) while the main thread forks again and again; each child records a run of its own
    and leaves through ``sys.exit``. No child may hang in an at-fork handler or at exit on a
    lock or a file object a thread of the parent held at the fork."""
    repo = make_repo(tmp_path / "repo")
    proc = run_pools(repo, BUSY_FORKS, "60", env=clean_env(PYTHONHASHSEED="0"))
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    assert proc.stdout.strip() == "[0]", proc.stdout
    store = Store(repo / ".reprokit")
    runs = runs_by_name(store)
    (parent,) = runs["forks"]
    assert len(runs["child"]) == 60
    assert {m.run["parent"] for m in runs["child"]} == {parent.id}
    assert sorted(line[1] for line in store.ledger_entries()) == sorted(store.run_ids())
    assert not list((repo / ".reprokit" / "active").iterdir())
