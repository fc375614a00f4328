"""s3:// stores against a real S3-compatible server: moto's server mode on 127.0.0.1.

The server is started by the module's fixture and first probed for conditional puts
(``If-None-Match: *``): without them create-only commits cannot be tested, and the module is
skipped with that reason. Each "machine" is its own REPROKIT_CACHE folder.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from reprokit._store.layout import GENESIS, MANIFEST, chain, parse_ledger_line
from reprokit._store.store import Store
from tests.conftest import clean_env, cli, git, make_repo, run_python

SECRET = "reprokit-test-secret-0123456789abcdef"
KEY_ID = "AKIAREPROKITTESTKEY1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.env = {
            "AWS_ACCESS_KEY_ID": KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": endpoint,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        import s3fs

        self.fs = s3fs.S3FileSystem(
            key=KEY_ID,
            secret=SECRET,
            client_kwargs={"endpoint_url": endpoint, "region_name": "us-east-1"},
            use_listings_cache=False,
            skip_instance_cache=True,
        )

    def bucket(self) -> str:
        name = f"rk-{uuid.uuid4().hex[:12]}"
        self.fs.call_s3("create_bucket", Bucket=name)
        return name

    def machine(self, tmp_path: Path, name: str, url: str, **extra: str) -> dict[str, str]:
        return clean_env(
            REPROKIT_STORE=url, REPROKIT_CACHE=str(tmp_path / name), **{**self.env, **extra}
        )

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        base = f"{bucket}/{prefix}".rstrip("/")
        try:
            return sorted(k[len(bucket) + 1 :] for k in self.fs.find(base))
        except FileNotFoundError:
            return []


# moto's server, with one change: requests are handled one at a time. moto checks
# ``If-None-Match: *`` and then writes, without a lock, so under its threaded server two racing
# create-only puts of one key can both succeed (seen: 16 writers, one ledger slot taken twice).
# S3 itself makes a conditional put atomic; the race tests test our protocol against that.
ATOMIC_MOTO = """
import sys, threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication, MotoRequestHandler, create_backend_app,
)
app = DomainDispatcherApplication(create_backend_app)
one_at_a_time = threading.Lock()

def atomic(environ, start_response):
    with one_at_a_time:
        return list(app(environ, start_response))

run_simple(sys.argv[1], int(sys.argv[2]), atomic, threaded=True, request_handler=MotoRequestHandler)
"""


@pytest.fixture(scope="module")
def s3():
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", ATOMIC_MOTO, "127.0.0.1", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.skip("moto's S3 server did not start")
                time.sleep(0.1)
        server = Server(f"http://127.0.0.1:{port}")
        bucket = server.bucket()
        put = dict(Bucket=bucket, Key="probe", IfNoneMatch="*")
        server.fs.call_s3("put_object", Body=b"1", **put)
        try:
            server.fs.call_s3("put_object", Body=b"2", **put)
        except FileExistsError:
            pass
        else:
            pytest.skip("this moto server does not honour conditional puts (If-None-Match: *)")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


RACE = """
import reprokit, sys
@reprokit.track
def train(worker, i):
    return worker * 1000 + i
for i in range(int(sys.argv[2])):
    train(int(sys.argv[1]), i)
"""


def _ledger(s3: Server, bucket: str, prefix: str) -> list[tuple[int, str, str, str]]:
    keys = s3.keys(bucket, f"{prefix}/ledger")
    lines = s3.fs.cat([f"{bucket}/{k}" for k in keys])
    return [parse_ledger_line(lines[f"{bucket}/{k}"].decode()) for k in keys]


@pytest.mark.slow
def test_16_processes_racing_into_one_bucket_lose_and_duplicate_nothing(s3, tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo")
    (repo / "race.py").write_text(RACE)
    bucket = s3.bucket()
    url = f"s3://{bucket}/race"
    procs = [
        subprocess.Popen(
            [sys.executable, "race.py", str(w), "20"],
            cwd=repo,
            env=s3.machine(tmp_path, f"m{w}", url, PYTHONHASHSEED="0"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(16)
    ]
    for p in procs:
        _out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        assert "kept in" not in err, err
    keys = s3.keys(bucket, "race/runs")
    sealed = sorted(k.split("/")[2] for k in keys if k.endswith("/" + MANIFEST))
    assert len(sealed) == 320 == len(set(sealed))
    ledger = _ledger(s3, bucket, "race")
    assert [e[0] for e in ledger] == list(range(320))
    assert sorted(e[1] for e in ledger) == sealed  # each run exactly once
    prev = GENESIS
    for _seq, rid, digest, link in ledger:
        assert link == chain(prev, rid, digest)
        prev = link
    # A fifth machine sees all 320, every one intact, the 320 results all distinct.
    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("REPROKIT_CACHE", str(tmp_path / "reader"))
    st = Store.at(url)
    assert sorted(st.run_ids()) == sealed
    values = set()
    for rid in sealed:
        info = st.verify(rid)
        assert info["ledger_head"] == prev
        values.add(st.load(rid).outputs["return"]["value"])
    assert values == {w * 1000 + i for w in range(16) for i in range(20)}


SLOW_SEND = """
import os, reprokit
os.makedirs("data", exist_ok=True)
for i in range(400):
    with open(f"data/{i:03d}.txt", "w") as fh:
        fh.write(str(i) * 50)
@reprokit.track
def train():
    reprokit.log_artifact("data", copy=True)
    return 1
train()
"""


def test_kill_9_while_sending_leaves_no_half_run_and_push_finishes_it(s3, tmp_path):
    repo = make_repo(tmp_path / "repo", {".gitignore": "data/\n", "job.py": SLOW_SEND})
    bucket = s3.bucket()
    url = f"s3://{bucket}/kill"
    m1 = s3.machine(tmp_path, "m1", url)
    proc = subprocess.Popen(
        [sys.executable, "job.py"],
        cwd=repo,
        env=m1,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while len(s3.keys(bucket, "kill/runs")) < 5:
        assert proc.poll() is None, "the job ended before it was killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    keys = s3.keys(bucket, "kill/runs")
    assert not any(k.endswith(MANIFEST) for k in keys), "killed too late: the run was complete"
    m2 = s3.machine(tmp_path, "m2", url)
    ls = cli(repo, "ls", "--json", env=m2)
    assert ls.returncode == 0, ls.stderr
    assert "train" not in ls.stdout and "incomplete" not in ls.stdout
    # The run was sealed on the first machine before sending began: push completes it.
    push = cli(repo, "push", env=m1)
    assert push.returncode == 0, push.stderr
    assert len(push.stdout.split()) == 1
    ver = cli(repo, "verify", "latest", "--json", env=m2)
    assert ver.returncode == 0, ver.stderr
    assert '"files": 401' in ver.stdout


def test_a_bucket_written_on_one_machine_is_listed_verified_replayed_and_archived_on_another(
    s3, tmp_path
):
    code = """
import reprokit
@reprokit.track
def train(lr=0.5):
    w = 0.0
    for step in range(5):
        w += lr * (step + 1)
        reprokit.log_metric("w", w, step=step)
    return w
if __name__ == "__main__":
    train()
"""
    a = make_repo(tmp_path / "a", {"train.py": code, "README.md": "x\n"})
    (a / "train.py").write_text(code.replace("lr=0.5", "lr=0.25"))  # uncommitted: a patch
    bucket = s3.bucket()
    url = f"s3://{bucket}/lab"
    proc = run_python(
        a, code.replace("lr=0.5", "lr=0.25"), env=s3.machine(tmp_path, "m1", url), script="train.py"
    )
    assert proc.returncode == 0, proc.stderr
    assert "kept in" not in proc.stderr
    # Another machine: a clone (no reprokit snapshot refs), another cache folder.
    b = tmp_path / "b"
    subprocess.run(["git", "clone", "-q", a.as_uri(), str(b)], check=True, env=clean_env())
    assert "reprokit" not in git(b, "for-each-ref")
    m2 = s3.machine(tmp_path, "m2", url)
    ls = cli(b, "ls", env=m2)
    assert ls.returncode == 0 and "train" in ls.stdout, ls.stderr
    assert cli(b, "verify", "latest", env=m2).returncode == 0
    every = cli(b, "verify", "--all", env=m2)
    assert every.returncode == 0 and "intact: 1 of 1 runs verify" in every.stdout, every.stdout
    rep = cli(b, "replay", "latest", env=m2)
    assert rep.returncode == 0, rep.stdout + rep.stderr
    assert "rebuilt from the patch" in rep.stderr, rep.stderr  # the object came from the bucket
    arc = cli(b, "archive", "latest", "-o", str(tmp_path / "paper.tar.gz"), env=m2)
    assert arc.returncode == 0, arc.stderr
    assert cli(b, "verify", str(tmp_path / "paper.tar.gz"), env=m2).returncode == 0
    # Credentials came from the environment and are nowhere in the bucket.
    blobs = s3.fs.cat([f"{bucket}/{k}" for k in s3.keys(bucket)])
    for data in blobs.values():
        assert SECRET.encode() not in data and KEY_ID.encode() not in data


def test_an_unreachable_endpoint_keeps_the_run_and_push_sends_it_later(s3, tmp_path):
    repo = make_repo(tmp_path / "repo", {"job.py": RACE})
    bucket = s3.bucket()
    url = f"s3://{bucket}/late"
    down = s3.machine(tmp_path, "m1", url, AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{_free_port()}")
    proc = subprocess.run(
        [sys.executable, "job.py", "0", "1"], cwd=repo, env=down, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "kept in" in proc.stderr and "push" in proc.stderr
    assert s3.keys(bucket, "late/runs") == []
    push = cli(repo, "push", env=down)
    assert push.returncode == 2 and "still waiting" in push.stderr
    push = cli(repo, "push", env=s3.machine(tmp_path, "m1", url))
    assert push.returncode == 0, push.stderr
    assert cli(repo, "verify", "latest", env=s3.machine(tmp_path, "m2", url)).returncode == 0


def test_reads_with_the_endpoint_down_show_the_local_runs_and_verify_all_refuses(s3, tmp_path):
    repo = make_repo(tmp_path / "repo", {"job.py": RACE})
    bucket = s3.bucket()
    url = f"s3://{bucket}/down"
    up = s3.machine(tmp_path, "m1", url)
    proc = subprocess.run(
        [sys.executable, "job.py", "0", "2"], cwd=repo, env=up, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    down = s3.machine(tmp_path, "m1", url, AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{_free_port()}")
    ls = cli(repo, "ls", "--json", env=down)
    assert ls.returncode == 0, ls.stderr
    assert ls.stderr.startswith(f"reprokit: warning: {url}: cannot list runs/"), ls.stderr
    assert "showing only the runs this machine has" in ls.stderr
    assert ls.stderr.count("\n") == 1, ls.stderr
    listed = json.loads(ls.stdout)["runs"]
    assert len(listed) == 2 and {r["status"] for r in listed} == {"completed"}
    show = cli(repo, "show", "latest", env=down)
    assert show.returncode == 0 and "train" in show.stdout, show.stderr
    # The bucket itself cannot be vouched for without reaching it: exit 2, the reason named.
    everything = cli(repo, "verify", "--all", env=down)
    assert everything.returncode == 2 and "cannot list runs/" in everything.stderr
    assert "intact" not in everything.stdout
    # Another machine with the endpoint down has nothing local: an empty list, said honestly.
    elsewhere = s3.machine(
        tmp_path, "m2", url, AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{_free_port()}"
    )
    other = cli(repo, "ls", env=elsewhere)
    assert other.returncode == 0 and "showing only the runs" in other.stderr
