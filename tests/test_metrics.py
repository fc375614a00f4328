"""Metric points are buffered in memory and written in batches: what a killed process keeps
(real processes, real SIGKILL and SIGTERM) and the lines' exact JSON form."""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from pathlib import Path

from reprokit._record import metrics
from reprokit._store.store import Store
from tests.conftest import clean_env, make_repo

LOGGER = """
import sys, time
import reprokit

with reprokit.run("m") as run:
    for i in range(int(sys.argv[1])):
        reprokit.log_metric("loss", 1.0 / (i + 1))
    print("logged", flush=True)
    time.sleep(60)
"""


def start(tmp_path: Path, points: int):
    import subprocess

    repo = make_repo(tmp_path / "repo")
    (repo / "logger.py").write_text(LOGGER)
    proc = subprocess.Popen([sys.executable, "logger.py", str(points)], cwd=repo,
                            env=clean_env(PYTHONHASHSEED="0"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "logged", proc.stderr.read()
    return repo, proc


def points_on_disk(repo: Path) -> list[dict]:
    (path,) = (repo / ".reprokit" / "runs").glob("*/metrics.jsonl")
    text = path.read_text()
    assert text == "" or text.endswith("\n")  # whole lines only
    return [json.loads(line) for line in text.splitlines()]


def test_points_reach_the_disk_within_the_time_limit_without_another_log_call(tmp_path):
    repo, proc = start(tmp_path, 50)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = list((repo / ".reprokit" / "runs").glob("*/metrics.jsonl"))
            if runs and len(points_on_disk(repo)) == 50:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert [p["step"] for p in points_on_disk(repo)] == list(range(50))


def test_a_sigkill_loses_at_most_the_bounded_tail(tmp_path):
    n = 2 * metrics.FLUSH_POINTS + 500
    repo, proc = start(tmp_path, n)
    proc.send_signal(signal.SIGKILL)  # at once: the time limit has not passed yet
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    steps = [p["step"] for p in points_on_disk(repo)]
    assert steps == list(range(len(steps)))
    assert len(steps) >= n - metrics.FLUSH_POINTS


CHECKPOINTER = """
import time
import reprokit

with reprokit.run("c"):
    reprokit.checkpoint("weights", [0.5] * 64)
    reprokit.checkpoint("loss", 0.25)
    print("recorded", flush=True)
    time.sleep(60)
"""


def test_checkpoints_reach_the_disk_as_they_are_recorded(tmp_path):
    # A checkpoint is handed to the kernel when it is recorded (no buffer in the process): a
    # SIGKILL right after keeps both.
    import subprocess

    repo = make_repo(tmp_path / "repo")
    (repo / "ckpt.py").write_text(CHECKPOINTER)
    proc = subprocess.Popen([sys.executable, "ckpt.py"], cwd=repo, env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "recorded", proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    (path,) = (repo / ".reprokit" / "runs").glob("*/checkpoints.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(c["index"], c["name"]) for c in lines] == [(0, "weights"), (1, "loss")]
    assert lines[0]["values"] == [0.5] * 64


def test_sigterm_writes_every_buffered_point_before_the_run_is_sealed(tmp_path):
    repo, proc = start(tmp_path, 10)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGTERM
    assert [p["step"] for p in points_on_disk(repo)] == list(range(10))
    (rid,) = Store(repo / ".reprokit").run_ids()
    m = Store(repo / ".reprokit").load(rid)
    assert m.run["status"] == "interrupted"
    assert m.outputs["metrics"]["loss"] == {"count": 10, "last": 0.1, "last_step": 9}


def test_the_lines_are_what_json_dumps_writes():
    points = [
        ("loss", 0, 0.5, 1795794604.0579169),
        ('a "quoted" name', 1.5, math.nan, 1.0),
        ("ünï", None, -math.inf, 2.0),
        ("big", 3, 2**62, 3.25),
        ("x", "epoch-1", math.inf, 4.5),
        ("y", 7, -0.0, 5.0),
    ]
    expected = "".join(
        json.dumps({"name": n, "step": s, "value": v, "ts": t}) + "\n" for n, s, v, t in points
    )
    assert metrics.lines(points) == expected
