"""`reprokit run -- torchrun ...` (or `python -m torch.distributed.run`, `accelerate launch`) on
a training script nobody changed: the start-up hook reaches every worker, which is seeded with
the run's seed, and the workers' parsed flags are the run's params.

The torchrun tests use CPU ``gloo`` ranks and need torch (marked ``torch``); the mechanism is
also checked without torch, through a small launcher of our own named ``torchrun``."""

from __future__ import annotations

import json
import marshal
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from reprokit._capture.pycommand import python_program
from reprokit._record.bootstrap import _plain
from tests.conftest import clean_env, cli, make_repo

# Unmodified: argparse flags, unseeded torch and random, no `import reprokit`. Each rank writes
# its numbers to out/rank-R.txt.
TRAIN = """\
import argparse
import os
import random

import torch
import torch.distributed as dist

import helper

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.01)
parser.add_argument("--steps", type=int, default=3)
args = parser.parse_args()

dist.init_process_group("gloo")
rank = dist.get_rank()
w = torch.zeros(4)
for _ in range(args.steps):
    g = torch.randn(4)
    dist.all_reduce(g)
    w -= args.lr * g
os.makedirs("out", exist_ok=True)
with open(f"out/rank-{rank}.txt", "w") as fh:
    fh.write(f"{random.random()!r} {w.tolist()!r}\\n")
dist.destroy_process_group()
"""
HELPER = "SCALE = 1\n"
GITIGNORE = "out/\n.reprokit/\n"


def _env() -> dict[str, str]:
    return clean_env(OMP_NUM_THREADS="1")


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", *args]


def _show(cwd: Path) -> dict:
    out = cli(cwd, "show", "latest", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _ranks(cwd: Path) -> list[str]:
    return [(cwd / "out" / f"rank-{r}.txt").read_text() for r in (0, 1)]


@pytest.fixture
def torch_project(tmp_path: Path) -> Path:
    pytest.importorskip("torch")
    return make_repo(
        tmp_path / "repo", {"train.py": TRAIN, "helper.py": HELPER, ".gitignore": GITIGNORE}
    )


def _expected_rank_line(seed: int, lr: float, steps: int, world: int) -> str:
    """What a rank writes when it was seeded as seed_everything(seed) seeds: every rank draws
    the same numbers, so the all-reduced gradient is ``world`` times one rank's."""
    import torch

    torch.manual_seed(seed)
    w = torch.zeros(4)
    for _ in range(steps):
        g = torch.randn(4) * world
        w -= lr * g
    return f"{random.Random(seed).random()!r} {w.tolist()!r}\n"


# -- torchrun ------------------------------------------------------------------------------------


@pytest.mark.torch
@pytest.mark.slow
def test_torchrun_workers_are_seeded_and_their_flags_are_the_params(torch_project: Path) -> None:
    out = cli(
        torch_project, "run", "--seed", "0", "--output", "out", "--",
        *_torchrun("--nproc-per-node", "2", "train.py", "--lr", "0.1"), env=_env(),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert _ranks(torch_project) == [_expected_rank_line(0, 0.1, 3, 2)] * 2
    m = _show(torch_project)
    assert m["params"] == {"lr": 0.1, "steps": 3}
    assert m["run"]["param_sources"] == {"lr": "argparse", "steps": "argparse"}
    program = m["run"]["entry"]["program"]
    assert program["launcher"] == "torchrun" and program["workers"] == 2
    assert m["seeds"]["seeded_in"] == "child"
    assert m["seeds"]["seeded_on_import"]["torch"]["seed"] == 0
    rep = cli(torch_project, "replay", "latest", "--json", env=_env())
    assert rep.returncode == 0, rep.stdout + rep.stderr
    assert json.loads(rep.stdout)["verdict"] == "identical"


@pytest.mark.torch
@pytest.mark.slow
def test_the_same_script_launched_without_reprokit_is_not_seeded(torch_project: Path) -> None:
    # The control for the test above: the script itself seeds nothing, so two plain launches
    # draw different numbers, and neither draws the seeded ones.
    lines = []
    for _ in range(2):
        proc = subprocess.run(
            _torchrun("--nproc-per-node", "2", "train.py", "--lr", "0.1"),
            cwd=torch_project, env=_env(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        lines.append(_ranks(torch_project)[0])
    assert lines[0] != lines[1]
    assert _expected_rank_line(0, 0.1, 3, 2) not in lines


@pytest.mark.torch
@pytest.mark.slow
def test_replay_of_a_torchrun_run_changes_a_worker_flag(torch_project: Path) -> None:
    out = cli(
        torch_project, "run", "--seed", "0", "--output", "out", "--",
        *_torchrun("--nproc-per-node", "2", "train.py", "--lr", "0.1"), env=_env(),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rep = cli(torch_project, "replay", "latest", "--in-place", "--param", "lr=0.2", env=_env())
    assert rep.returncode == 1, rep.stdout + rep.stderr
    assert "this replay changed params on purpose: lr 0.1 -> 0.2" in rep.stdout
    # The launcher's own flags were left alone, the worker's flag rewritten: lr 0.2, seed 0.
    assert _ranks(torch_project) == [_expected_rank_line(0, 0.2, 3, 2)] * 2


@pytest.mark.torch
@pytest.mark.slow
def test_outside_git_the_workers_files_are_captured_and_replayed(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "train.py").write_text(TRAIN)
    (folder / "helper.py").write_text(HELPER)
    out = cli(
        folder, "run", "--seed", "3", "--output", "out", "--",
        *_torchrun("--nproc-per-node", "2", "train.py"), env=_env(),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    m = _show(folder)
    assert sorted(m["code"]["files"]) == ["helper.py", "train.py"]
    assert m["run"].get("replayable", True) is True
    rep = cli(folder, "replay", "latest", "--json", env=_env())
    assert rep.returncode == 0, rep.stdout + rep.stderr
    assert json.loads(rep.stdout)["verdict"] == "identical"


# One CPU process: accelerate runs several CPU processes only through MPI.
ACCELERATED = """\
import argparse
import os
import random

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.01)
args = parser.parse_args()
os.makedirs("out", exist_ok=True)
with open("out/rank-0.txt", "w") as fh:
    fh.write(f"{random.random()!r} {(args.lr * torch.randn(3)).tolist()!r}\\n")
"""


@pytest.mark.torch
def test_accelerate_launch_workers_are_seeded_and_recorded(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("accelerate")
    folder = make_repo(tmp_path / "repo", {"train.py": ACCELERATED, ".gitignore": GITIGNORE})
    launch = [
        sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "train.py", "--lr", "0.1",
    ]  # fmt: skip
    out = cli(folder, "run", "--seed", "0", "--output", "out", "--", *launch, env=_env())
    assert out.returncode == 0, out.stderr
    torch.manual_seed(0)
    expected = f"{random.Random(0).random()!r} {(0.1 * torch.randn(3)).tolist()!r}\n"
    assert (folder / "out" / "rank-0.txt").read_text() == expected
    m = _show(folder)
    assert m["params"] == {"lr": 0.1}
    assert m["run"]["entry"]["program"]["launcher"] == "accelerate"
    rep = cli(folder, "replay", "latest", "--json", env=_env())
    assert rep.returncode == 0, rep.stdout + rep.stderr


@pytest.mark.torch
def test_a_program_that_imports_torch_reports_what_was_seeded(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    folder = make_repo(tmp_path / "repo", {"t.py": "import torch\nprint(torch.rand(1).item())\n"})
    out = cli(folder, "run", "--seed", "0", "--", sys.executable, "t.py", env=_env())
    assert out.returncode == 0, out.stderr
    seeds = _show(folder)["seeds"]
    assert seeds["seeded_in"] == "child"  # the hook's report reached the parent
    assert seeds["seeded"]["torch"]["seed"] == 0


# -- the mechanism, without torch -----------------------------------------------------------------

# A launcher of our own, named like torchrun: starts `python SCRIPT ARGS...` once per rank, with
# the rank in RANK, and exits with the first failure.
LAUNCHER = """\
import os
import subprocess
import sys

n = int(sys.argv[1])
procs = [
    subprocess.Popen([sys.executable, *sys.argv[2:]], env=dict(os.environ, RANK=str(r)))
    for r in range(n)
]
sys.exit(max(p.wait() for p in procs))
"""
WORKER = """\
import argparse
import os
import random

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--tag", default="a")
args = parser.parse_args()
os.makedirs("out", exist_ok=True)
with open(f"out/rank-{os.environ['RANK']}.txt", "w") as fh:
    fh.write(f"{random.random()!r} {args.lr!r}\\n")
"""


@pytest.fixture
def launcher_project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "torchrun"
    tool.write_text(f"#!{sys.executable}\n{LAUNCHER}")
    tool.chmod(0o755)
    folder = make_repo(tmp_path / "repo", {"worker.py": WORKER, ".gitignore": GITIGNORE})
    env = clean_env(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return folder, env


def test_every_worker_a_launcher_starts_runs_the_hook(launcher_project) -> None:
    folder, env = launcher_project
    out = cli(
        folder, "run", "--seed", "5", "--output", "out", "--",
        "torchrun", "2", "worker.py", "--lr", "0.5", env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    seeded = f"{random.Random(5).random()!r} 0.5\n"
    assert _ranks(folder) == [seeded, seeded]  # both ranks, the same seed
    m = _show(folder)
    assert m["params"] == {"lr": 0.5, "tag": "a"}
    assert m["run"]["entry"]["program"]["workers"] == 2
    assert m["run"]["entry"]["program"]["args_at"] == 3  # where worker.py's flags start
    rep = cli(
        folder, "replay", "latest", "--in-place", "--param", "tag=b", "--param", "lr=0.25", env=env
    )
    assert rep.returncode == 1, rep.stdout + rep.stderr
    assert _ranks(folder) == [f"{random.Random(5).random()!r} 0.25\n"] * 2


def test_a_launcher_that_starts_no_python_worker_says_so(launcher_project) -> None:
    folder, env = launcher_project
    # Started with -I, the worker cannot run the hook (PYTHONPATH is ignored).
    out = cli(
        folder, "run", "--seed", "5", "--", "torchrun", "1", "-I", "worker.py", env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "torchrun started no Python worker that reprokit's start-up hook reached" in out.stderr
    m = _show(folder)
    assert m["params"] == {} and m["seeds"]["seeded_in"] == "none"


def test_a_worker_does_not_hand_the_hook_on_to_its_own_children(launcher_project) -> None:
    folder, env = launcher_project
    (folder / "nested.py").write_text(
        "import os, subprocess, sys\n"
        "subprocess.run([sys.executable, '-c', 'import os, sys; "
        'print(sorted(k for k in os.environ if k.startswith("REPROKIT_") and '
        '("REPORT" in k)), "startup" in os.environ.get("PYTHONPATH", ""))\'])\n'
    )
    out = cli(folder, "run", "--", "torchrun", "1", "nested.py", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] False"


@pytest.mark.parametrize(
    ("argv", "launcher"),
    [
        (["python", "-m", "torch.distributed.run", "t.py"], "torchrun"),
        (["python", "-m", "torch.distributed.launch", "t.py"], "torchrun"),
        (["python", "-m", "accelerate.commands.launch", "t.py"], "accelerate"),
        (["python", "-m", "accelerate.commands.accelerate_cli", "launch", "t.py"], "accelerate"),
        (["python", "-m", "accelerate.commands.accelerate_cli", "env"], None),
        (["python", "-m", "torch.utils.collect_env"], None),
        (["python", "t.py"], None),
    ],
)
def test_launchers_are_recognised(argv: list[str], launcher: str | None) -> None:
    found = python_program(argv)
    assert found is not None and found.get("launcher") == launcher


def test_launcher_console_scripts_are_recognised_by_name(tmp_path: Path) -> None:
    for name in ("torchrun", "accelerate", "train"):
        tool = tmp_path / name
        tool.write_text(f"#!{sys.executable}\n")
        tool.chmod(0o755)
    found = [
        (python_program(argv) or {}).get("launcher")
        for argv in (
            [str(tmp_path / "torchrun"), "--nproc-per-node", "2", "t.py"],
            [str(tmp_path / "accelerate"), "launch", "t.py"],
            [str(tmp_path / "accelerate"), "config"],
            [str(tmp_path / "train"), "--lr", "1"],
        )
    ]
    assert found == ["torchrun", "accelerate", None, None]


def test_a_report_holding_a_str_subclass_can_be_written() -> None:
    class Version(str):  # as torch.__version__ is
        pass

    data = _plain({"seeds": {"torch": {"version": Version("2.1.0")}}})
    assert marshal.loads(marshal.dumps(data)) == {"seeds": {"torch": {"version": "2.1.0"}}}
