"""Determinism audits (reprokit check) and seed-robustness reports (reprokit seeds)."""

from __future__ import annotations

import json
import math
import sys

import pytest

import reprokit
from reprokit._verbs.audit import judge_claim, parse_claim, parse_seeds, summarize, t975
from tests.conftest import cli, run_python

SEEDED = """
import random, reprokit
@reprokit.track
def train(lr=0.1, epochs=4):
    w = 0.0
    for epoch in range(epochs):
        w += lr * random.random()
        reprokit.log_metric("loss", 1 - w, step=epoch)
        reprokit.checkpoint("w", w)
    return {"w": w}
train()
"""

UNSEEDED = """
import random, reprokit
@reprokit.track
def train(steps=5):
    draw = random.SystemRandom().random
    w = 0.0
    for i in range(steps):
        w += 1.0 if i < 2 else draw()
        reprokit.checkpoint("w", w)
    return w
train()
"""


def recorded(repo, code):
    proc = run_python(repo, code)
    assert proc.returncode == 0, proc.stderr
    return reprokit.load("latest", store=repo / ".reprokit")


def test_check_of_a_seeded_run_is_deterministic(repo):
    m = recorded(repo, SEEDED)
    proc = cli(repo, "check", m.id, "-n", "3")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stdout.startswith("deterministic: 3 executions")
    data = json.loads(cli(repo, "check", m.id, "--json").stdout)
    assert data["deterministic"] is True and data["executions"] == 2
    assert data["seed"] == m.seeds["seed"]
    assert all(len(r["runs"]) == 1 for r in data["runs"])


def test_check_catches_an_unseeded_rng_and_localises_it(repo):
    m = recorded(repo, UNSEEDED)
    proc = cli(repo, "check", m.id)
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert "NOT deterministic" in proc.stdout
    assert "first divergence: checkpoint #2 (w)" in proc.stdout
    assert "RNG not under the seed's control" in proc.stdout


def test_check_of_a_command_compares_its_outputs_and_tracked_runs(repo):
    (repo / "cmd.py").write_text(
        "import os, random, pathlib, time\n"
        "random.seed(int(os.environ['REPROKIT_SEED']))\n"
        "pathlib.Path('o').mkdir(exist_ok=True)\n"
        "pathlib.Path('o/a.txt').write_text(str(random.random()))\n"
        "pathlib.Path('o/t.txt').write_text(str(time.time_ns()))\n"
    )
    proc = cli(repo, "check", "--output", "o", "--", sys.executable, "cmd.py")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    lines = proc.stdout.splitlines()
    assert any("file o/a.txt" in ln and "agree" in ln for ln in lines)
    assert any("file o/t.txt" in ln and "different" in ln for ln in lines)
    (repo / "train.py").write_text(SEEDED)
    ok = cli(repo, "check", "-n", "2", "--", sys.executable, "train.py")
    assert ok.returncode == 0, ok.stderr + ok.stdout
    assert "checkpoints" in ok.stdout


def test_check_needs_a_target_and_two_executions(repo):
    assert cli(repo, "check").returncode == 2
    m = recorded(repo, SEEDED)
    proc = cli(repo, "check", m.id, "-n", "1")
    assert proc.returncode == 2 and "at least 2" in proc.stderr


def test_seeds_reports_spread_and_judges_claims(repo):
    m = recorded(repo, SEEDED)
    proc = cli(repo, "seeds", m.id, "--seeds", "0-4", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["seeds"] == [0, 1, 2, 3, 4] and len(data["runs"]) == 5
    w = data["results"]["return.w"]
    assert w["n"] == 5 and w["min"] <= w["mean"] <= w["max"]
    assert w["ci95"][0] < w["mean"] < w["ci95"][1]
    # Each seed's run is recorded, in one group, seeded with that seed.
    runs = [reprokit.load(r, store=repo / ".reprokit") for r in data["runs"]]
    assert [r.seeds["seed"] for r in runs] == [0, 1, 2, 3, 4]
    assert {r.run["group"] for r in runs} == {data["group"]}
    import random

    random.seed(3)
    expected = 0.0
    for _ in range(4):
        expected += 0.1 * random.random()
    assert runs[3].outputs["return"]["value"]["w"] == expected
    weak = cli(repo, "seeds", m.id, "-n", "4", "--claim", "w>=0.2")
    assert weak.returncode == 1 and "not robust" in weak.stdout
    strong = cli(repo, "seeds", m.id, "-n", "4", "--claim", "loss<=1.0")
    assert strong.returncode == 0, strong.stdout
    bad = cli(repo, "seeds", m.id, "-n", "3", "--claim", "nope>=1")
    assert bad.returncode == 2 and "nope" in bad.stderr


def test_across_seeds_in_process(tmp_path):
    @reprokit.track(store=tmp_path / "store")
    def train(lr=0.5, seed=0):
        import random

        reprokit.log_metric("acc", 0.9 + 0.01 * random.random())
        return lr * random.random()

    report = reprokit.across_seeds(train, seeds=[1, 2, 3], lr=0.5, claims=["acc>=0.8"])
    assert report.seeds == [1, 2, 3] and all(report.runs)
    import random

    expected = []
    for s in (1, 2, 3):
        random.seed(s)
        random.random()
        expected.append(0.5 * random.random())
    assert report.results["return"]["values"] == expected
    assert report.claims["metric acc >= 0.8"]["verdict"] == "robust"
    manifests = [reprokit.load(r, store=tmp_path / "store") for r in report.runs]
    assert [m.params["seed"] for m in manifests] == [1, 2, 3]


def test_student_t_quantiles_and_summary():
    assert t975(1) == pytest.approx(12.7062)
    assert t975(35) == pytest.approx(2.0301, abs=2e-3)
    assert t975(10_000) == pytest.approx(1.9602, abs=1e-3)
    s = summarize([1.0, 2.0, 3.0, 4.0])
    assert s["mean"] == 2.5 and s["std"] == pytest.approx(math.sqrt(5 / 3))
    half = 3.1824 * s["std"] / 2
    assert s["ci95"] == pytest.approx([2.5 - half, 2.5 + half])
    assert s["cv"] == pytest.approx(s["std"] / 2.5)


def test_claims_and_seed_lists_parse_or_fail_clearly():
    assert parse_claim("acc >= 0.9") == ("acc", ">=", 0.9)
    assert parse_seeds("0-2,7") == [0, 1, 2, 7]
    with pytest.raises(reprokit.ReprokitError):
        parse_claim("acc is good")
    with pytest.raises(reprokit.ReprokitError):
        parse_seeds("5-1")
    verdict = judge_claim(summarize([0.95, 0.96, 0.955]), ">=", 0.9)
    assert verdict["verdict"] == "robust" and verdict["seeds_failing"] == 0
