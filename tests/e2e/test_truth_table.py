"""The truth table (issue 16): workload x change -> the verdict replay must give.

Each row records a real program, changes one thing, replays it with the real CLI and checks
the verdict and exit code against the truth established by the program itself.

| workload           | change                                         | verdict          | exit |
|--------------------|------------------------------------------------|------------------|------|
| function           | nothing                                        | identical        | 0    |
| function           | working tree edited after recording            | identical        | 0    |
| function           | OMP/MKL thread variables set in the shell      | identical        | 0    |
| function           | an ordinary variable the program reads changed | different        | 1    |
| function           | floats perturbed by 1e-12                      | different        | 1    |
| function           | floats perturbed by 1e-12, --rtol 1e-9         | within_tolerance | 0    |
| function, unseeded | nothing (an RNG outside the seed's control)    | different        | 1    |
| large checkpoint   | floats perturbed by 1e-13, --rtol 1e-9         | undetermined     | 2    |
| large checkpoint   | floats perturbed by 1e-3, --rtol 1e-9          | different        | 1    |
| command            | nothing                                        | identical        | 0    |
| command            | floats perturbed by 1e-12, --rtol 1e-9         | within_tolerance | 0    |
| command            | an ordinary variable the program reads changed | different        | 1    |
"""

from __future__ import annotations

import json
import sys

import pytest

from reprokit._model import numbers
from tests.conftest import clean_env, cli, run_python

pytest.importorskip("numpy")

FUNCTION = """
import os, random, reprokit
import numpy as np
@reprokit.track
def train(size={size}, steps=3):
    jitter = float(os.environ.get("JITTER", "0"))
    shift = float(os.environ.get("SHIFT", "0"))
    w = np.linspace(-1.0, 1.0, size)
    for step in range(steps):
        noise = {noise}
        w = w * (1.0 + jitter) + (shift if step == 1 else 0.0) + 0.01 * noise
        reprokit.checkpoint("w", w)
    threads = os.environ.get("OMP_NUM_THREADS", "-") + "/" + os.environ.get("MKL_NUM_THREADS", "-")
    return {{"w0": float(w[0]), "threads": threads}}
if __name__ == "__main__":
    train()
"""
SEEDED = "random.random()"
UNSEEDED = "random.SystemRandom().random()"

COMMAND = """
import json, os
j = float(os.environ.get("JITTER", "0"))
s = float(os.environ.get("SHIFT", "0"))
os.makedirs("out", exist_ok=True)
json.dump({"acc": 0.9 * (1.0 + j) + s, "curve": [0.1 * i * (1.0 + j) for i in range(100)]},
          open("out/metrics.json", "w"))
"""

ROWS = [
    ("function", "nothing", {}, (), "identical", 0),
    ("function", "tree edited", {}, (), "identical", 0),
    (
        "function",
        "thread variables",
        {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "2"},
        (),
        "identical",
        0,
    ),
    ("function", "variable read", {"SHIFT": "0.5"}, (), "different", 1),
    ("function", "jitter", {"JITTER": "1e-12"}, (), "different", 1),
    ("function", "jitter", {"JITTER": "1e-12"}, ("--rtol", "1e-9"), "within_tolerance", 0),
    ("unseeded", "nothing", {}, (), "different", 1),
    ("large", "jitter", {"JITTER": "1e-13"}, ("--rtol", "1e-9"), "undetermined", 2),
    ("large", "jitter", {"JITTER": "1e-3"}, ("--rtol", "1e-9"), "different", 1),
    ("command", "nothing", {}, (), "identical", 0),
    ("command", "jitter", {"JITTER": "1e-12"}, ("--rtol", "1e-9"), "within_tolerance", 0),
    ("command", "variable read", {"SHIFT": "0.5"}, (), "different", 1),
]


def record(repo, workload: str) -> str:
    if workload == "command":
        (repo / "make.py").write_text(COMMAND)
        proc = cli(repo, "run", "--output", "out", "--", sys.executable, "make.py")
    else:
        size = numbers.KEPT + 1 if workload == "large" else 200
        noise = UNSEEDED if workload == "unseeded" else SEEDED
        proc = run_python(repo, FUNCTION.format(size=size, noise=noise), script="train.py")
    assert proc.returncode == 0, proc.stderr
    runs = [e.manifest for e in reprokit_store(repo).entries() if e.manifest is not None]
    top = [m for m in runs if not m.run.get("parent")]
    return top[0].id


def reprokit_store(repo):
    from reprokit._store.store import Store

    return Store.at(repo / ".reprokit")


@pytest.mark.parametrize(
    ("workload", "change", "env", "args", "verdict", "code"),
    ROWS,
    ids=[f"{w}-{c}-{'-'.join(a) or 'exact'}" for w, c, _e, a, _v, _c in ROWS],
)
def test_truth_table_row(repo, workload, change, env, args, verdict, code):
    run_id = record(repo, workload)
    if change == "tree edited":
        (repo / "train.py").write_text("raise SystemExit('the edited tree must not run')\n")
    shell = (
        clean_env(OMP_NUM_THREADS="1", **env) if change != "thread variables" else clean_env(**env)
    )
    if change != "thread variables":
        shell.pop("MKL_NUM_THREADS", None)
    proc = cli(repo, "replay", run_id, "--json", *args, env=shell)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["verdict"] == verdict
    if verdict == "different":
        assert json.loads(proc.stdout)["causes"], "a difference comes with its likely causes"
