"""Faults while recording, with real processes and real signals: SIGKILL at random moments,
SIGINT, SIGTERM (of a script and of `reprokit run`), a full disk and an unwritable store.

README: "a killed process leaves a run that `ls` shows as `incomplete`, never as completed";
"Ctrl-C seals it as `interrupted`"; "if the store cannot be written (disk full, read-only), the
function still returns its value and a warning says the run was not recorded; no partial run
remains"."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import reprokit
from reprokit._store.store import Store
from tests.conftest import NESTED_RUNS, clean_env, cli, make_repo, run_python

pytestmark = pytest.mark.stress


@pytest.fixture(scope="module")
def pycache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pycache")


@pytest.fixture
def env(pycache: Path) -> dict[str, str]:
    """clean_env, with bytecode cached outside the source tree (PYTHONDONTWRITEBYTECODE would
    make every short process recompile reprokit, which costs more than recording)."""
    e = clean_env(PYTHONHASHSEED="0", PYTHONPYCACHEPREFIX=str(pycache))
    e.pop("PYTHONDONTWRITEBYTECODE", None)
    return e


def ls_json(cwd: Path, env: dict[str, str], *args: str) -> list[dict]:
    proc = cli(cwd, "ls", "--json", *args, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["runs"]


def popen(cwd: Path, argv: list[str], env: dict[str, str], **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def wait_for_line(p: subprocess.Popen, text: str) -> None:
    line = p.stdout.readline()
    assert text in line, (line, p.stderr.read() if p.poll() is not None else "")


# -- SIGKILL at random moments ---------------------------------------------------------------------

VICTIM = """
import random, sys, time
import reprokit

k = int(sys.argv[1])
rng = random.Random(k)

@reprokit.track
def train(k):
    print("in", flush=True)  # capture is done, the run folder exists
    time.sleep(rng.uniform(0, 0.05))
    for i in range(200):
        reprokit.log_metric("loss", 1.0 / (i + 1), step=i)
        if i % 50 == 0:
            reprokit.checkpoint("w", [k, i])
    print("done", flush=True)  # sealing starts
    return k

print("ready", flush=True)
train(k)
time.sleep(float(sys.argv[2]))  # still alive when the kill comes
"""

KILLS = 50


def test_sigkill_at_random_moments_never_leaves_a_completed_unsealed_run(tmp_path, env, figure):
    repo = make_repo(tmp_path / "repo")
    (repo / "victim.py").write_text(VICTIM)
    rng = random.Random(0)
    delays = [rng.uniform(0, 0.3) for _ in range(KILLS)]

    def one(k: int) -> tuple[int, int, str]:
        # The delay counts from the moment the interpreter and reprokit are loaded, so that the
        # kills spread over capture, the function and sealing rather than over Python's startup.
        p = popen(repo, ["victim.py", str(k), "0.5"], env)
        wait_for_line(p, "ready")
        time.sleep(delays[k])
        p.send_signal(signal.SIGKILL)
        out, _ = p.communicate(timeout=60)
        return p.pid, p.returncode, out

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(KILLS)))
    assert all(rc == -signal.SIGKILL for _, rc, _ in results), results

    store = Store(repo / ".reprokit")
    rows = ls_json(repo, env)
    states = {r["id"]: r["status"] for r in rows}
    assert set(states) == set(store.run_ids())
    assert set(states.values()) <= {"completed", "incomplete"}, states
    sealed = [rid for rid, s in states.items() if s == "completed"]
    incomplete = [rid for rid, s in states.items() if s == "incomplete"]
    for rid in incomplete:
        assert not (store.runs / rid / "manifest.yaml").exists()
    sealed_pids = set()
    for rid in sealed:
        assert reprokit.verify(rid, store=store).intact
        m = store.load(rid)
        assert m.outputs["metrics"]["loss"]["count"] == 200
        sealed_pids.add(m.run["pid"])
    phases = {"capture": 0, "function": 0, "sealing": 0, "sealed": 0}
    for pid, _, out in results:
        if pid in sealed_pids:
            phases["sealed"] += 1
            assert "done" in out
        elif "done" in out:
            phases["sealing"] += 1
        elif "in" in out.split():
            phases["function"] += 1
        else:
            phases["capture"] += 1
    assert len(sealed_pids) == len(sealed)  # one sealed run per process at most
    # Every process that got into its function left a folder: incomplete, or sealed.
    assert len(incomplete) >= phases["function"] + phases["sealing"]

    # The store still takes new runs, and they verify.
    proc = run_python(repo, VICTIM, "999", "0", env=env, script="after.py")
    assert proc.returncode == 0, proc.stderr
    after = cli(repo, "verify", "latest", env=env)
    assert after.returncode == 0, after.stderr
    assert len(store.run_ids()) == len(rows) + 1
    figure(
        "faults survived: SIGKILL at random moments",
        f"killed {KILLS} (during capture {phases['capture']}, function {phases['function']}, "
        f"sealing {phases['sealing']}, after the seal {phases['sealed']}): "
        f"sealed-before-kill {len(sealed)}, incomplete {len(incomplete)}, 0 shown completed; "
        "all sealed verify, the next run verifies",
    )


# -- SIGINT, SIGTERM -------------------------------------------------------------------------------

LONG = """
import sys, time
import reprokit

@reprokit.track
def inner(n):
    print("started", flush=True)
    for i in range(n):
        reprokit.log_metric("loss", 1.0 / (i + 1), step=i)
        time.sleep(0.01)
    return n

@reprokit.track
def outer(n):
    return inner(n)

(outer if "nested" in sys.argv else inner)(3000)
"""


def interrupted_runs(repo: Path, env: dict[str, str], expect: int) -> list:
    store = Store(repo / ".reprokit")
    rows = ls_json(repo, env)
    assert len(rows) == expect, rows
    out = []
    for r in rows:
        assert r["status"] == "interrupted", rows
        assert reprokit.verify(r["id"], store=store).intact
        out.append(store.load(r["id"]))
    return out


def test_sigint_seals_the_run_interrupted_and_exits_as_python_does(tmp_path, env, figure):
    repo = make_repo(tmp_path / "repo")
    (repo / "long.py").write_text(LONG)
    p = popen(repo, ["long.py"], env)
    wait_for_line(p, "started")
    time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode != 0
    assert "KeyboardInterrupt" in err
    (m,) = interrupted_runs(repo, env, 1)
    assert "KeyboardInterrupt" in m.run["error"]["type"]
    assert m.outputs["metrics"]["loss"]["count"] >= 1
    figure(
        "faults survived: SIGINT during a tracked run",
        f"sealed interrupted ({m.outputs['metrics']['loss']['count']} metrics kept), "
        f"exit {p.returncode}, KeyboardInterrupt traceback, verifies",
    )


def test_sigterm_seals_the_runs_interrupted_and_dies_of_sigterm(tmp_path, env, figure):
    repo = make_repo(tmp_path / "repo")
    (repo / "long.py").write_text(LONG)
    p = popen(repo, ["long.py"], env)
    wait_for_line(p, "started")
    time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGTERM
    (m,) = interrupted_runs(repo, env, 1)
    assert "Terminated" in m.run["error"]["type"]

    # Nested: the child and its parent are both sealed, the child pointing at the parent.
    nested = make_repo(tmp_path / "nested")
    (nested / "long.py").write_text(LONG)
    p = popen(nested, ["long.py", "nested"], env)
    wait_for_line(p, "started")
    time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGTERM
    runs = {m.name: m for m in interrupted_runs(nested, env, 2)}
    assert runs["inner"].run["parent"] == runs["outer"].id
    assert all("Terminated" in m.run["error"]["type"] for m in runs.values())
    figure(
        "faults survived: SIGTERM during a tracked run",
        "sealed interrupted (Terminated), nested parent and child too; exit -15, verifies",
    )


def test_sigterm_to_reprokit_run_seals_the_command_and_its_child(tmp_path, env, figure):
    repo = make_repo(tmp_path / "repo")
    (repo / "long.py").write_text(LONG)
    p = popen(
        repo, ["-m", "reprokit", "run", "--name", "cmd", "--", sys.executable, "long.py"], env
    )
    wait_for_line(p, "started")
    time.sleep(0.1)
    p.send_signal(signal.SIGTERM)  # to `reprokit run` only: it forwards the signal
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGTERM
    runs = {m.name: m for m in interrupted_runs(repo, env, 2)}
    assert runs["cmd"].outputs["exit_code"] == -signal.SIGTERM
    assert runs["inner"].run["parent"] == runs["cmd"].id
    figure(
        "faults survived: SIGTERM to `reprokit run -- python long.py`",
        "command and its tracked child sealed interrupted, reprokit exit -15, both verify",
    )


# -- a full disk, an unwritable store ------------------------------------------------------------

FULL_DISK = """
import os, resource, signal, warnings
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
import reprokit

LIMIT = int(os.environ["LIMIT"])
METRICS = int(os.environ.get("METRICS", "0"))

@reprokit.track
def train():
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.RLIM_INFINITY))
    for i in range(METRICS):
        reprokit.log_metric("loss", 1.0 / (i + 1), step=i)
    return 42

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    value = train()
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
print(value)
print(any("not recorded" in str(w.message) for w in caught))
"""


def full_disk_env(**extra: str) -> dict[str, str]:
    """No bytecode writing under the file-size limit: CPython writes .pyc files with one
    unchecked write, so a module first imported while the limit holds (reprokit imports some
    lazily while sealing) would leave a truncated .pyc that breaks every later import."""
    return clean_env(PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1", **extra)


UNWRITABLE = """
import sys, warnings
import reprokit

@reprokit.track(store=sys.argv[1])
def train():
    return 42

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    value = train()
print(value)
print(any("not recorded" in str(w.message) for w in caught))
"""


def test_a_full_disk_while_sealing_and_an_unwritable_store(tmp_path, env, figure):
    # Full disk: a fresh store; the limit lets the small files through, not the manifest.
    repo = make_repo(tmp_path / "repo")
    proc = run_python(repo, FULL_DISK, env=full_disk_env(LIMIT="400"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["42", "True"], proc.stderr
    store = Store(repo / ".reprokit")
    assert store.run_ids() == []
    assert not any(store.active.iterdir())

    # Unwritable: the store's `runs` is a regular file, so no run folder can be made (even as
    # root); both for a tracked function and for `reprokit run`.
    ro = tmp_path / "ro-store"
    ro.mkdir()
    (ro / "runs").write_text("not a folder\n")
    proc = run_python(repo, UNWRITABLE, str(ro), env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["42", "True"], proc.stderr
    cmd = cli(repo, "run", "--store", str(ro), "--", sys.executable, "-c", "print(7)", env=env)
    assert cmd.returncode == 0, cmd.stderr
    assert cmd.stdout.strip() == "7"
    assert "not recorded" in cmd.stderr
    assert (ro / "runs").read_text() == "not a folder\n"
    figure(
        "faults survived: full disk while sealing / unwritable store",
        "value returned, 'not recorded' warning, no partial run (tracked fn; and `reprokit run` "
        "on the unwritable store: command ran, exit 0)",
    )


def test_a_full_disk_during_the_ledger_append_keeps_the_store_verifiable(tmp_path):
    repo = make_repo(tmp_path / "repo")
    proc = run_python(repo, FULL_DISK, env=full_disk_env(LIMIT="1000000000"))
    assert proc.returncode == 0, proc.stderr
    store = Store(repo / ".reprokit")
    (before,) = store.run_ids()
    # The next ledger line (~160 bytes) crosses the limit: the write is cut short, as on a disk
    # that fills up while the line is written.
    limit = store.ledger.stat().st_size + 40
    proc = run_python(repo, FULL_DISK, env=full_disk_env(LIMIT=str(limit)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["42", "True"], proc.stderr
    assert store.run_ids() == [before]
    assert reprokit.verify(before, store=store).intact  # fails: "ledger line 2 is malformed"
    proc = run_python(repo, FULL_DISK, env=full_disk_env(LIMIT="1000000000"))
    assert proc.returncode == 0, proc.stderr
    for rid in store.run_ids():
        assert reprokit.verify(rid, store=store).intact


def test_a_full_disk_while_logging_metrics_does_not_break_training(tmp_path):
    repo = make_repo(tmp_path / "repo")
    proc = run_python(repo, FULL_DISK, env=full_disk_env(LIMIT="4096", METRICS="2000"))
    assert proc.returncode == 0, proc.stderr  # fails: OSError [Errno 27] File too large
    assert proc.stdout.split() == ["42", "True"]
    assert Store(repo / ".reprokit").run_ids() == []


# -- signals while sealing -----------------------------------------------------------------------

# Nested tracked runs in a loop, and an observer thread that sends SIGTERM at the moment the
# store's ledger is locked by a sealing run (so the signal lands mid-seal every time, not by luck).
SEAL_RACE = (
    """
import fcntl, os, signal, threading
import reprokit

LEDGER = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".reprokit", "ledger")

def observer():
    while True:
        try:
            fd = os.open(LEDGER, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        finally:
            os.close(fd)
"""
    + NESTED_RUNS
    + """
outer(-1)
threading.Thread(target=observer, daemon=True).start()
for i in range(100000):
    outer(i)
"""
)


def test_sigterm_while_a_nested_run_is_sealing_still_terminates(tmp_path, env):
    repo = make_repo(tmp_path / "repo")
    (repo / "race.py").write_text(SEAL_RACE)
    for _ in range(10):  # the observer hits a child's seal ~19 times in 20 (a parent's otherwise)
        p = popen(repo, ["race.py"], env)
        try:
            p.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            pytest.fail("the process hung after SIGTERM (flock self-deadlock)")
        assert p.returncode == -signal.SIGTERM


LONG_CHILD = """
import time
import reprokit

@reprokit.track
def train():
    print("started", flush=True)
    for i in range(3000):
        reprokit.log_metric("loss", 1.0 / (i + 1), step=i)
        time.sleep(0.01)

train()
"""


def test_ctrl_c_on_reprokit_run_seals_the_childs_run(tmp_path, env):
    repo = make_repo(tmp_path / "repo")
    (repo / "long.py").write_text(LONG_CHILD)
    argv = ["-m", "reprokit", "run", "--name", "cmd", "--", sys.executable, "long.py"]
    for attempt in range(4):
        p = popen(repo, argv, env, start_new_session=True)
        wait_for_line(p, "started")
        time.sleep(0.1)
        os.killpg(p.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        p.communicate(timeout=60)
        assert p.returncode == -signal.SIGINT
        rows = ls_json(repo, env)
        assert len(rows) == 2 * (attempt + 1)
        statuses = sorted((r["name"] or "?", r["status"]) for r in rows[:2])
        assert statuses == [("cmd", "interrupted"), ("train", "interrupted")], rows[:2]
