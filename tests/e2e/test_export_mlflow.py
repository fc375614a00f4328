"""reprokit export mlflow, against a real `mlflow server` on 127.0.0.1 (sqlite, temp artifacts).

The server is read back with plain HTTP requests here, independently of reprokit's client.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import clean_env, cli, run_python

TRAIN = """
import reprokit

@reprokit.track(seed=0)
def train(lr=0.1, epochs=3, opt={"name": "sgd", "momentum": 0.9}):
    w = 0.0
    for epoch in range(epochs):
        w += lr * (epoch + 1)
        reprokit.log_metric("loss", 1 - w, step=epoch * 10)
    return {"w": w}

train()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the workers it started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _start(base: Path, port: int) -> tuple[subprocess.Popen[bytes] | None, str]:
    """Start ``mlflow server`` on ``port``; (the process, "") once it answers, else (None, why)."""
    exe = shutil.which("mlflow", path=os.path.dirname(sys.executable))
    argv = [exe] if exe else [sys.executable, "-m", "mlflow"]
    argv += [
        "server",
        "--backend-store-uri", f"sqlite:///{base / 'mlflow.db'}",
        "--artifacts-destination", str(base / "artifacts"),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    env = {k: v for k, v in clean_env().items() if not k.startswith("MLFLOW_")}
    with open(base / f"server-{port}.log", "wb") as log:
        proc = subprocess.Popen(
            argv, cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (base / f"server-{port}.log").read_text(errors="replace")[-600:]
            return None, f"mlflow server exited with {proc.returncode}: {tail}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200 and r.read().strip() == b"OK":
                    return proc, ""
        except (OSError, http.client.HTTPException):
            pass  # not up yet (or, until it binds, someone else's service on that port)
        time.sleep(0.5)
    _stop(proc)
    return None, "mlflow server did not answer within 150 s"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The URL of a real MLflow tracking server that serves its artifacts."""
    if importlib.util.find_spec("mlflow") is None:
        pytest.skip("the mlflow package is not installed (pip install '.[test]')")
    base = tmp_path_factory.mktemp("mlflow")
    why = ""
    for _attempt in range(3):  # a free port can be taken before the server binds it
        port = _free_port()
        proc, why = _start(base, port)
        if proc is not None:
            break
    else:
        pytest.skip(why)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


def _get(url: str, path: str, **query: Any) -> Any:
    with urllib.request.urlopen(f"{url}{path}?{urllib.parse.urlencode(query)}") as r:
        return json.loads(r.read())


def _post(url: str, path: str, payload: Any) -> Any:
    req = urllib.request.Request(
        url + path, json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"{}")


def _runs(url: str, experiment: str) -> list[dict[str, Any]]:
    exp = _get(url, "/api/2.0/mlflow/experiments/get-by-name", experiment_name=experiment)
    found = _post(
        url,
        "/api/2.0/mlflow/runs/search",
        {"experiment_ids": [exp["experiment"]["experiment_id"]], "max_results": 100},
    )
    return found.get("runs", [])


def _tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def _recorded(repo: Path) -> str:
    r = run_python(repo, TRAIN, script="train.py")
    assert r.returncode == 0, r.stderr
    listed = json.loads(cli(repo, "ls", "--json").stdout)
    return listed["runs"][0]["id"]


@pytest.mark.mlflow
def test_export_sends_params_metrics_tags_and_the_manifest(mlflow_server: str, repo: Path) -> None:
    rid = _recorded(repo)
    replayed = cli(repo, "replay", rid, "-q")
    assert replayed.returncode == 0, replayed.stderr
    r = cli(repo, "export", "mlflow", "--tracking-uri", mlflow_server, "--experiment", "e1", rid)
    assert r.returncode == 0, r.stderr
    assert f"{rid} -> mlflow run" in r.stdout and "created" in r.stdout

    (run,) = _runs(mlflow_server, "e1")
    info, tags = run["info"], _tags(run)
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params == {"lr": "0.1", "epochs": "3", "opt.name": "sgd", "opt.momentum": "0.9"}
    manifest_text = (repo / ".reprokit" / "runs" / rid / "manifest.yaml").read_bytes()
    import reprokit

    m = reprokit.load(rid, store=repo / ".reprokit")
    assert tags["reprokit.run_id"] == rid
    assert tags["reprokit.code_digest"] == m.code["digest"]
    assert tags["mlflow.source.git.commit"] == m.code["commit"]
    assert tags["reprokit.verdict.replay"] == "identical"
    assert tags["reprokit.seed"] == "0"
    assert tags["reprokit.exported"] == "complete"
    assert info["status"] == "FINISHED" and info["run_name"] == "train"

    history = _get(
        mlflow_server,
        "/api/2.0/mlflow/metrics/get-history",
        run_id=info["run_id"],
        metric_key="loss",
    )["metrics"]
    points = [
        json.loads(line) for line in (m.path.parent / "metrics.jsonl").read_text().splitlines()
    ]
    assert [(h["step"], h["value"]) for h in history] == [(p["step"], p["value"]) for p in points]
    assert [h["timestamp"] for h in history] == [int(p["ts"] * 1000) for p in points]
    finals = {x["key"]: x["value"] for x in run["data"]["metrics"]}
    assert finals["return.w"] == pytest.approx(0.6)

    art = info["artifact_uri"].split("mlflow-artifacts:/", 1)[1]
    with urllib.request.urlopen(
        f"{mlflow_server}/api/2.0/mlflow-artifacts/artifacts/{art}/reprokit/manifest.yaml"
    ) as resp:
        assert resp.read() == manifest_text


@pytest.mark.mlflow
def test_exporting_twice_creates_nothing_new(mlflow_server: str, repo: Path) -> None:
    rid = _recorded(repo)
    args = ("export", "mlflow", "--tracking-uri", mlflow_server, "--experiment", "e2")
    first = cli(repo, *args, rid, "--json")
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["schema"] == 1 and doc["runs"][0]["created"] is True
    before = _runs(mlflow_server, "e2")

    again = cli(repo, *args, rid)
    assert again.returncode == 0, again.stderr
    assert "exported before; unchanged" in again.stdout
    after = _runs(mlflow_server, "e2")
    assert len(after) == len(before) == 1
    history = _get(
        mlflow_server,
        "/api/2.0/mlflow/metrics/get-history",
        run_id=after[0]["info"]["run_id"],
        metric_key="loss",
    )["metrics"]
    assert len(history) == 3  # no point logged twice

    # A replay since: the same MLflow run, its verdict tags brought up to date.
    assert cli(repo, "replay", rid, "-q").returncode == 0
    third = cli(repo, *args, rid)
    assert "tags updated: reprokit.verdict.replay" in third.stdout
    (run,) = _runs(mlflow_server, "e2")
    assert _tags(run)["reprokit.verdict.replay"] == "identical"


@pytest.mark.mlflow
def test_an_export_cut_off_midway_is_replaced_not_duplicated(
    mlflow_server: str, repo: Path
) -> None:
    rid = _recorded(repo)
    exp = _post(mlflow_server, "/api/2.0/mlflow/experiments/create", {"name": "e3"})
    half = _post(
        mlflow_server,
        "/api/2.0/mlflow/runs/create",
        {
            "experiment_id": exp["experiment_id"],
            "tags": [{"key": "reprokit.run_id", "value": rid}],
        },
    )["run"]["info"]["run_id"]
    _post(
        mlflow_server,
        "/api/2.0/mlflow/runs/log-batch",
        {"run_id": half, "metrics": [{"key": "loss", "value": 0.9, "timestamp": 1, "step": 0}]},
    )
    r = cli(repo, "export", "mlflow", "--tracking-uri", mlflow_server, "--experiment", "e3", rid)
    assert r.returncode == 0, r.stderr
    (run,) = _runs(mlflow_server, "e3")  # the half-written one is deleted
    assert run["info"]["run_id"] != half
    assert _tags(run)["reprokit.exported"] == "complete"


def test_an_unreachable_server_is_one_line_and_exit_2(repo: Path) -> None:
    rid = _recorded(repo)
    url = f"http://127.0.0.1:{_free_port()}"
    r = cli(repo, "export", "mlflow", "--tracking-uri", url, rid)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"reprokit: error: cannot reach MLflow at {url}: [Errno 111] Connection refused"
    ]


def test_a_tracking_uri_that_is_not_a_server_is_refused(repo: Path) -> None:
    rid = _recorded(repo)
    r = cli(repo, "export", "mlflow", "--tracking-uri", "file:///tmp/mlruns", rid)
    assert r.returncode == 2
    assert "needs an MLflow tracking server URL (http:// or https://)" in r.stderr
    r = cli(repo, "export", "mlflow", rid, env=clean_env())
    assert r.returncode == 2
    assert "--tracking-uri URL (or MLFLOW_TRACKING_URI)" in r.stderr


def test_credentials_in_the_tracking_uri_are_never_printed(repo: Path) -> None:
    rid = _recorded(repo)
    url = f"http://alice:s3cr3t-pass@127.0.0.1:{_free_port()}"
    r = cli(repo, "export", "mlflow", "--tracking-uri", url, rid)
    assert r.returncode == 2
    assert "s3cr3t" not in r.stderr + r.stdout


@pytest.mark.mlflow
def test_the_readme_transcript_runs_as_shown(mlflow_server: str, repo: Path) -> None:
    import re
    import shlex

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("\n## MLflow export\n", 1)[1].split("\n## ", 1)[0]
    transcript = section.split("```console\n", 1)[1].split("```", 1)[0].splitlines()
    commands = [i for i, line in enumerate(transcript) if line.startswith("$ reprokit export")]
    assert len(commands) == 2
    rid = _recorded(repo)
    assert cli(repo, "replay", rid, "-q").returncode == 0
    for i in commands:
        argv = shlex.split(transcript[i][2:].replace("http://127.0.0.1:5055", mlflow_server))
        r = cli(repo, *argv[1:])
        assert r.returncode == 0, r.stderr
        shown = transcript[i + 1]
        pattern = re.escape(shown)
        for literal, rx in (
            ("20261127-130910-928-7d3ba8", r"\S+"),  # the run id
            ("181f46535a0a479eb40eea6585dced28", r"[0-9a-f]{32}"),  # the MLflow run id
        ):
            pattern = pattern.replace(re.escape(literal), rx)
        pattern = re.sub(r"\d+(\\ (?:params|metric))", r"\\d+\1", pattern)  # counts
        assert re.fullmatch(pattern, r.stdout.strip()), (shown, r.stdout)


NESTED = """
import reprokit

@reprokit.track
def fold(k=0):
    reprokit.log_metric("acc", 0.5 + k / 10, step=0)
    return k

@reprokit.track(seed=3)
def cv(folds=2):
    return [fold(k=k) for k in range(folds)]

cv()
"""


@pytest.mark.mlflow
def test_nested_runs_point_at_their_parent(mlflow_server: str, repo: Path) -> None:
    r = run_python(repo, NESTED, script="cv.py")
    assert r.returncode == 0, r.stderr
    rows = json.loads(cli(repo, "ls", "--json").stdout)["runs"]
    ids = {row["name"]: row["id"] for row in rows if row["name"] == "cv"}
    folds = [row["id"] for row in rows if row["name"] == "fold"]
    args = ["export", "mlflow", "--tracking-uri", mlflow_server, "--experiment", "e4"]
    done = cli(repo, *args, *folds, ids["cv"])  # children named first on purpose
    assert done.returncode == 0, done.stderr
    by_rid = {_tags(run)["reprokit.run_id"]: run for run in _runs(mlflow_server, "e4")}
    parent = by_rid[ids["cv"]]["info"]["run_id"]
    for rid in folds:
        assert _tags(by_rid[rid])["mlflow.parentRunId"] == parent
        assert _tags(by_rid[rid])["reprokit.parent"] == ids["cv"]
