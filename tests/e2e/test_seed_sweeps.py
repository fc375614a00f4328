"""Seed sweeps vary what they claim to vary (issue 16, item 1).

One program per shape seen in the wild: the tracked function in a module, in the script
itself, fed by argparse's ``--seed``, and one that hard-codes ``random.seed(1337)``.
"""

from __future__ import annotations

import json
import random
import sys

import reprokit
from tests.conftest import cli, run_python

BODY = """
def train(seed=543, episodes=30):
    random.seed(seed)
    running = 10.0
    for ep in range(episodes):
        running = 0.95 * running + 0.05 * random.uniform(50, 200)
        reprokit.log_metric("running_reward", running, step=ep)
    return {"running_reward": running}
"""


def expected(seed: int, episodes: int = 30) -> float:
    random.seed(seed)
    running = 10.0
    for _ in range(episodes):
        running = 0.95 * running + 0.05 * random.uniform(50, 200)
    return running


def sweep(repo, *extra: str) -> tuple[dict, list]:
    m = reprokit.load("latest", store=repo / ".reprokit")
    proc = cli(repo, "seeds", m.id, "--seeds", "0-3", "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    runs = [reprokit.load(r, store=repo / ".reprokit") for r in data["runs"]]
    return data, runs


def assert_seed_reached(data: dict, runs: list) -> None:
    assert data["nothing_varied"] is None
    assert [r.seeds["seed"] for r in runs] == [0, 1, 2, 3]
    assert [r.params["seed"] for r in runs] == [0, 1, 2, 3]
    values = data["results"]["return.running_reward"]["values"]
    assert values == [expected(s) for s in (0, 1, 2, 3)]


def test_sweep_reaches_the_seed_param_of_a_function_in_a_module(repo):
    (repo / "src" / "trainer.py").write_text("import random, reprokit\n@reprokit.track\n" + BODY)
    main = "import sys; sys.path.insert(0, 'src')\nimport trainer\ntrainer.train()\n"
    proc = run_python(repo, main)
    assert proc.returncode == 0, proc.stderr
    assert_seed_reached(*sweep(repo))


def test_sweep_reaches_the_seed_param_of_a_function_in_the_script(repo):
    code = "import random, reprokit\n@reprokit.track\n" + BODY
    proc = run_python(repo, code + "if __name__ == '__main__':\n    train()\n")
    assert proc.returncode == 0, proc.stderr
    m = reprokit.load("latest", store=repo / ".reprokit")
    assert m.params["seed"] == 543
    data, runs = sweep(repo)
    assert_seed_reached(data, runs)


def test_sweep_reaches_a_seed_given_by_argparse(repo):
    code = (
        "import argparse, random, reprokit\n@reprokit.track\n"
        + BODY
        + "if __name__ == '__main__':\n"
        "    p = argparse.ArgumentParser()\n"
        "    p.add_argument('--seed', type=int, default=1)\n"
        "    args = p.parse_args()\n"
        "    print('seed', args.seed)\n"
        "    train(seed=args.seed)\n"
    )
    proc = run_python(repo, code, "--seed", "543")
    assert proc.returncode == 0, proc.stderr
    data, runs = sweep(repo)
    assert_seed_reached(data, runs)
    # The script's own view of the flag changed too, not just the tracked call's argument.
    assert [r.run["entry"]["argv"][1:] for r in runs] == [["--seed", str(s)] for s in range(4)]


def test_a_hard_coded_seed_makes_the_sweep_refuse_a_robustness_claim(repo):
    code = """
import random, reprokit
@reprokit.track
def train(episodes=30):
    random.seed(1337)
    running = 10.0
    for ep in range(episodes):
        running = 0.95 * running + 0.05 * random.uniform(50, 200)
    return {"running_reward": running}
train()
"""
    assert run_python(repo, code).returncode == 0
    m = reprokit.load("latest", store=repo / ".reprokit")
    proc = cli(repo, "seeds", m.id, "-n", "3", "--claim", "running_reward>=10")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "NOTHING VARIED" in proc.stderr and "byte-identical" in proc.stderr
    assert "robust" not in proc.stdout.replace("undetermined", "")
    assert "undetermined" in proc.stdout
    as_json = cli(repo, "seeds", m.id, "-n", "2", "--claim", "running_reward>=10", "--json")
    assert as_json.returncode == 2
    data = json.loads(as_json.stdout)
    assert "byte-identical" in data["nothing_varied"]
    assert data["claims"]["return.running_reward >= 10.0"]["verdict"] == "undetermined"


def test_a_seed_param_the_program_fixes_itself_is_named(repo):
    code = """
import random, reprokit
with reprokit.run("exp", params={"seed": 543, "lr": 0.1}):
    random.seed(543)
    reprokit.log_metric("loss", random.random())
"""
    assert run_python(repo, code).returncode == 0
    m = reprokit.load("latest", store=repo / ".reprokit")
    proc = cli(repo, "seeds", m.id, "-n", "2")
    assert proc.returncode == 2
    assert "param seed stayed 543" in proc.stderr


def test_across_seeds_in_process_refuses_when_nothing_varies(tmp_path):
    @reprokit.track(store=tmp_path / "store")
    def train(lr=0.5):
        rng = random.Random(1337)
        return lr * rng.random()

    report = reprokit.across_seeds(train, seeds=[1, 2, 3], claims=["return>=0"])
    assert report.nothing_varied and "byte-identical" in report.nothing_varied
    assert not report.robust
    assert report.claims["return >= 0.0"]["verdict"] == "undetermined"


def test_sweep_reaches_a_seed_everything_the_program_calls_itself(repo):
    code = """
import random, reprokit
with reprokit.run("exp"):
    state = reprokit.seed_everything(543)
    reprokit.log_metric("x", random.random())
"""
    assert run_python(repo, code).returncode == 0
    data, runs = sweep(repo)
    assert data["nothing_varied"] is None
    expected_values = []
    for s in (0, 1, 2, 3):
        random.seed(s)
        expected_values.append(random.random())
    assert data["results"]["metric x"]["values"] == expected_values


def test_a_sweep_that_records_nothing_says_so_instead_of_an_empty_table(repo):
    (repo / "r.py").write_text("print('hello')\n")
    assert cli(repo, "run", "--", sys.executable, "r.py").returncode == 0
    m = reprokit.load("latest", store=repo / ".reprokit")
    proc = cli(repo, "seeds", m.id, "-n", "2")
    assert proc.returncode == 2 and "nothing to summarise" in proc.stderr, proc.stderr


def test_a_claim_on_a_result_the_seed_did_not_reach_is_refused_while_other_outputs_vary(repo):
    # The model has its own hard-coded generator; only the data order follows the sweep's seed.
    code = """
import random, reprokit
@reprokit.track
def train(episodes=30):
    order = list(range(8))
    random.shuffle(order)  # data order: the sweep's seed reaches it
    for step, item in enumerate(order):
        reprokit.log_metric("batch", item, step=step)
    model = random.Random(1337)  # the model: a hard-coded seed
    running = 10.0
    for ep in range(episodes):
        running = 0.95 * running + 0.05 * model.uniform(50, 200)
    return {"running_reward": running}
train()
"""
    assert run_python(repo, code).returncode == 0, "recording failed"
    m = reprokit.load("latest", store=repo / ".reprokit")
    proc = cli(repo, "seeds", m.id, "-n", "3", "--claim", "running_reward>=10")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "NOTHING VARIED" not in proc.stderr  # the executions did differ
    assert "the seed did not reach return.running_reward" in proc.stderr
    assert "claim return.running_reward >= 10.0: undetermined (the seed did not reach" in (
        proc.stdout
    )
    data = json.loads(
        cli(repo, "seeds", m.id, "-n", "2", "--json", "--claim", "running_reward>=10").stdout
    )
    assert data["nothing_varied"] is None
    assert list(data["unvaried"]) == ["return.running_reward"]
    assert data["claims"]["return.running_reward >= 10.0"]["verdict"] == "undetermined"


def test_a_time_dependent_output_does_not_hide_a_hard_coded_seed(repo):
    code = """
import random, time, reprokit
@reprokit.track
def train(episodes=30):
    start = time.perf_counter()
    random.seed(1337)
    running = 10.0
    for ep in range(episodes):
        running = 0.95 * running + 0.05 * random.uniform(50, 200)
    return {"running_reward": running, "seconds": time.perf_counter() - start}
train()
"""
    assert run_python(repo, code).returncode == 0, "recording failed"
    m = reprokit.load("latest", store=repo / ".reprokit")
    proc = cli(repo, "seeds", m.id, "-n", "3", "--claim", "running_reward>=10")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "the seed did not reach return.running_reward" in proc.stderr
    # A claim on a result the seed did reach is judged as before.
    seeded = code.replace("    random.seed(1337)\n", "")
    assert run_python(repo, seeded).returncode == 0, "recording failed"
    m = reprokit.load("latest", store=repo / ".reprokit")
    ok = cli(repo, "seeds", m.id, "-n", "3", "--claim", "running_reward>=10")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "claim return.running_reward >= 10.0: robust" in ok.stdout
