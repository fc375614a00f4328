"""``verify ARCHIVE --replay`` prints, for every run, the report ``replay`` prints (issue 16,
item 8): drift, per-output verdicts, first divergence and causes, and the same in --json."""

from __future__ import annotations

import json

from tests.conftest import clean_env, cli, git, run_python

TRAIN = """
import os, random, reprokit

@reprokit.track
def train(epochs=3):
    shift = float(os.environ.get("SHIFT", "0"))  # what another machine would change
    w = 0.0
    for epoch in range(epochs):
        w += random.random() + (shift if epoch == 1 else 0.0)
        reprokit.checkpoint("w", w)
    return {"w": w}

if __name__ == "__main__":
    train()
"""


def test_verify_replay_of_an_archive_prints_the_full_replay_report(repo, tmp_path):
    (repo / "train.py").write_text(TRAIN)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "train")
    assert run_python(repo, TRAIN, script="train.py").returncode == 0
    out = tmp_path / "paper.tar.gz"
    made = cli(repo, "archive", "latest", "-o", str(out))
    assert made.returncode == 0, made.stderr
    rep = cli(tmp_path, "verify", str(out), "--replay", env=clean_env(SHIFT="0.5"))
    assert rep.returncode == 1, rep.stdout + rep.stderr
    assert "drift" in rep.stderr
    assert "verdict: different" in rep.stdout
    assert "first divergence at #1 (w)" in rep.stdout
    assert "likely causes, most likely first:" in rep.stdout
    assert "0 of 1 runs reproduced" in rep.stdout
    as_json = cli(tmp_path, "verify", str(out), "--replay", "--json", env=clean_env(SHIFT="0.5"))
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)["replays"][0]["report"]
    assert report["verdict"] == "different" and "drift" in report and report["causes"]
    ckpt = report["runs"][0]["outputs"]["checkpoints"]
    assert ckpt["first_divergence"]["index"] == 1
