"""`reprokit run -- python ...` on programs nobody changed for reprokit: argparse flags become
params, `--seed` seeds the program, its files are captured outside git, and every run that
cannot be replayed says so (exit 2, never a verdict)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from reprokit._capture.pycommand import python_program
from reprokit._model.errors import NotReplayable, ReprokitError
from reprokit._model.manifest import Manifest
from reprokit._reexec.execute import plan, with_flags
from tests.conftest import clean_env, cli, git, make_repo

# A third-party style script: argparse flags, unseeded RNGs, numpy imported after parsing, and
# no `import reprokit` anywhere.
TRAIN = """\
import argparse
import random

import helper

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--name", default="base")
parser.add_argument("--fast", action="store_true")
args = parser.parse_args()

import numpy as np

w = helper.start()
for epoch in range(args.epochs):
    w = w - args.lr * (w - random.random() - float(np.random.rand()))
with open("result.txt", "w") as fh:
    fh.write(repr(w) + "\\n")
print("trained", w)
"""
HELPER = "def start():\n    return 0.5\n"


def _record(cwd: Path, *args: str, env: dict[str, str] | None = None):
    return cli(cwd, "run", "--output", "result.txt", *args, env=env)


def _show(cwd: Path, ref: str = "latest") -> dict:
    out = cli(cwd, "show", ref, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder that is no git repository, holding train.py and the module it imports."""
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "train.py").write_text(TRAIN)
    (folder / "helper.py").write_text(HELPER)
    return folder


@pytest.fixture
def git_project(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"train.py": TRAIN, "helper.py": HELPER})


# -- the command line as params -----------------------------------------------------------------


def test_argparse_flags_are_recorded_as_typed_params(git_project: Path) -> None:
    out = _record(git_project, "--seed", "0", "--", sys.executable, "train.py", "--lr", "0.2")
    assert out.returncode == 0, out.stderr
    m = _show(git_project)
    assert m["params"] == {"lr": 0.2, "epochs": 3, "name": "base", "fast": False}
    assert m["run"]["param_sources"] == {
        "epochs": "argparse",
        "fast": "argparse",
        "lr": "argparse",
        "name": "argparse",
    }
    assert m["run"]["entry"]["argv"][-2:] == ["--lr", "0.2"]  # argv stays recorded too
    assert m["run"]["entry"]["program"] == {"how": "script", "script": "train.py"}


def test_diff_shows_the_changed_flag(git_project: Path) -> None:
    for lr in ("0.1", "0.2"):
        out = _record(git_project, "--seed", "0", "--", sys.executable, "train.py", "--lr", lr)
        assert out.returncode == 0, out.stderr
    ids = [r["id"] for r in json.loads(cli(git_project, "ls", "--json").stdout)["runs"]]
    out = cli(git_project, "diff", ids[1], ids[0])
    assert out.returncode == 0, out.stderr
    assert "params:\n  lr: 0.1 -> 0.2\n" in out.stdout


def test_replay_with_a_changed_flag_reruns_the_program_with_it(git_project: Path) -> None:
    out = _record(git_project, "--seed", "0", "--", sys.executable, "train.py", "--lr", "0.1")
    assert out.returncode == 0, out.stderr
    out = cli(git_project, "replay", "latest", "--param", "lr=0.2", "--param", "fast=true")
    assert out.returncode == 1, out.stderr  # a verdict: the result changed
    assert "this replay changed params on purpose: fast False -> True, lr 0.1 -> 0.2" in out.stdout
    replayed = json.loads(
        cli(git_project, "replay", "latest", "--json", "--param", "lr=0.2").stdout
    )
    assert replayed["changed_params"] == {"lr": {"recorded": 0.1, "replayed": 0.2}}


def test_replay_refuses_to_change_a_param_no_flag_set(git_project: Path) -> None:
    assert _record(git_project, "--", sys.executable, "train.py").returncode == 0
    out = cli(git_project, "replay", "latest", "--param", "nope=1")
    assert out.returncode == 2
    assert "param 'nope'" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_parse_known_args_and_python_m_are_recorded(tmp_path: Path) -> None:
    folder = make_repo(tmp_path / "repo", {"pkg/__init__.py": "", "pkg/cli.py": ""})
    (folder / "pkg" / "cli.py").write_text(
        "import argparse\n"
        "p = argparse.ArgumentParser()\n"
        "p.add_argument('--batch', type=int, default=8)\n"
        "args, rest = p.parse_known_args()\n"
        "print(args.batch, rest)\n"
    )
    git(folder, "add", "-A")
    git(folder, "commit", "-qm", "cli")
    out = cli(folder, "run", "--", sys.executable, "-m", "pkg.cli", "--batch", "32", "--extra")
    assert out.returncode == 0, out.stderr
    m = _show(folder)
    assert m["params"] == {"batch": 32}
    assert m["run"]["entry"]["program"] == {"how": "module", "module": "pkg.cli"}


CLICK_APP = """\
import click


@click.group()
@click.option("--verbose/--quiet", default=False)
def cli(verbose):
    pass


@cli.command()
@click.option("--lr", type=float, default=0.1)
@click.option("--fast", is_flag=True)
def train(lr, fast):
    with open("result.txt", "w") as fh:
        fh.write(f"{lr} {fast}\\n")


cli()
"""


def test_click_options_are_recorded_and_a_replay_can_change_them(git_project: Path) -> None:
    pytest.importorskip("click")
    (git_project / "app.py").write_text(CLICK_APP)
    out = _record(git_project, "--", sys.executable, "app.py", "--verbose", "train", "--lr", "0.5")
    assert out.returncode == 0, out.stderr
    m = _show(git_project)
    assert m["params"] == {"verbose": True, "lr": 0.5, "fast": False}
    assert set(m["run"]["param_sources"].values()) == {"click"}
    out = cli(git_project, "replay", "latest", "--param", "fast=true", "--param", "verbose=false")
    assert out.returncode == 1, out.stderr
    assert (git_project / "result.txt").read_text() == "0.5 False\n"  # the recording's
    replayed = json.loads(
        cli(git_project, "replay", "latest", "--json", "--keep", "--param", "lr=0.25").stdout
    )
    kept = Path(replayed["source"]["path"])
    try:
        assert (kept / "result.txt").read_text() == "0.25 False\n"
    finally:
        shutil.rmtree(kept.parent, ignore_errors=True)


HYDRA_APP = """\
import random

import hydra


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg):
    with open("result.txt", "w") as fh:
        fh.write(f"{cfg.lr} {cfg.model.name} {random.random()}\\n")


main()
"""
HYDRA_CONFIG = "lr: 0.1\nmodel:\n  depth: 2\n  name: mlp-${model.depth}\n"


def test_hydra_config_is_recorded_resolved_and_a_replay_can_override_it(project: Path) -> None:
    pytest.importorskip("hydra")
    (project / "conf").mkdir()
    (project / "conf" / "config.yaml").write_text(HYDRA_CONFIG)
    (project / "app.py").write_text(HYDRA_APP)
    out = _record(project, "--seed", "0", "--", sys.executable, "app.py", "model.depth=3")
    assert out.returncode == 0, out.stderr
    m = _show(project)
    assert m["params"] == {"lr": 0.1, "model": {"depth": 3, "name": "mlp-3"}}
    assert set(m["run"]["param_sources"].values()) == {"hydra"}
    # Outside git, the config folder is captured with the script: the replay finds it.
    assert sorted(m["code"]["files"]) == ["app.py", "conf/config.yaml"]
    assert cli(project, "replay", "latest").returncode == 0
    replayed = json.loads(
        cli(project, "replay", "latest", "--json", "--keep", "--param", "model.depth=4").stdout
    )
    assert replayed["changed_params"] == {"model.depth": {"recorded": 3, "replayed": 4}}
    kept = Path(replayed["source"]["path"])
    try:
        assert (kept / "result.txt").read_text().startswith("0.1 mlp-4 ")
    finally:
        shutil.rmtree(kept.parent, ignore_errors=True)


def test_with_flags_rewrites_values_switches_and_pairs() -> None:
    flags = {
        "lr": {"option": "--lr", "kind": "value"},
        "fast": {"option": "--fast", "kind": "switch", "sets": True},
        "verbose": {"option": "--verbose", "kind": "pair", "off": "--quiet", "append": False},
        "tag": {"option": "--tag", "kind": "value", "append": False},
    }
    m = Manifest({"run": {"id": "r", "entry": {"kind": "command", "flags": flags}}})
    argv = ["python", "t.py", "--verbose", "sub", "--lr=0.1"]
    assert with_flags(m, argv, {"lr": 0.2}) == ["python", "t.py", "--verbose", "sub", "--lr=0.2"]
    assert with_flags(m, argv, {"fast": True})[-1] == "--fast"
    assert with_flags(m, argv, {"verbose": False})[2] == "--quiet"
    assert with_flags(m, [*argv, "--fast"], {"fast": False}) == argv
    with pytest.raises(ReprokitError, match="would reach a sub-command"):
        with_flags(m, argv, {"tag": "x"})
    with pytest.raises(ReprokitError, match="takes one value"):
        with_flags(m, argv, {"lr": [1, 2]})


# -- seeding a program that never imports reprokit ----------------------------------------------


def test_seed_flag_seeds_an_unmodified_program_and_it_replays_identically(
    git_project: Path,
) -> None:
    out = _record(git_project, "--seed", "7", "--", sys.executable, "train.py")
    assert out.returncode == 0, out.stderr
    m = _show(git_project)
    seeds = m["seeds"]
    assert seeds["seeded_in"] == "child"
    assert seeds["seeded"]["python"]["seed"] == 7
    assert seeds["seeded_on_import"]["numpy"]["seed"] == 7  # imported after start-up
    out = cli(git_project, "replay", "latest")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "verdict: identical" in out.stdout


def test_the_seeded_program_gets_the_numbers_seed_everything_gives(git_project: Path) -> None:
    (git_project / "draw.py").write_text(
        "import random, numpy\nprint(random.random(), numpy.random.rand())\n"
    )
    out = cli(git_project, "run", "--seed", "3", "--", sys.executable, "draw.py")
    import random

    import numpy

    random.seed(3)
    numpy.random.seed(3)
    assert out.stdout.split() == [repr(random.random()), repr(float(numpy.random.rand()))]


def test_a_library_that_imports_random_while_loading_is_seeded_once_loaded(
    git_project: Path,
) -> None:
    # Stands in for torch/numpy importing `random` from inside their own import (numpy's RNG
    # is its numpy.random submodule, loaded here with numpy as numpy 1 does).
    (git_project / "numpy" / "random").mkdir(parents=True)
    (git_project / "numpy" / "__init__.py").write_text(
        "import random as _stdlib_random\n__version__ = 'stand-in'\nfrom . import random\n"
    )
    (git_project / "numpy" / "random" / "__init__.py").write_text(
        "seeded_with = None\ndef seed(s):\n    global seeded_with\n    seeded_with = s\n"
    )
    (git_project / "uses.py").write_text("import numpy\nprint(numpy.random.seeded_with)\n")
    out = cli(git_project, "run", "--seed", "9", "--", sys.executable, "uses.py")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "9"
    assert _show(git_project)["seeds"]["seeded"]["numpy"]["seed"] == 9


def test_check_of_an_unmodified_seeded_program_finds_it_deterministic(git_project: Path) -> None:
    out = cli(git_project, "check", "--output", "result.txt", "--", sys.executable, "train.py")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("deterministic")


def test_an_unseeded_rng_in_a_replayed_command_is_named_as_the_cause(git_project: Path) -> None:
    (git_project / "noisy.py").write_text(
        "import numpy as np\n"
        "open('result.txt', 'w').write(repr(np.random.default_rng().random()))\n"
    )
    assert _record(git_project, "--seed", "0", "--", sys.executable, "noisy.py").returncode == 0
    out = cli(git_project, "replay", "latest", "--json")
    assert out.returncode == 1
    [cause] = json.loads(out.stdout)["causes"][:1]
    assert cause.startswith("an RNG not under the seed's control")


def test_a_non_python_command_is_not_said_to_be_seeded(git_project: Path) -> None:
    out = cli(git_project, "run", "--seed", "1", "--", "sh", "-c", "echo $REPROKIT_SEED")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
    m = _show(git_project)
    assert m["seeds"]["seeded"] == {} and m["seeds"]["seeded_in"] == "none"
    assert "program" not in m["run"]["entry"]


def test_the_program_sees_its_own_environment_and_sitecustomize(tmp_path: Path) -> None:
    folder = make_repo(tmp_path / "repo", {"show.py": ""})
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import os\nos.environ['MINE_RAN'] = '1'\n")
    (folder / "show.py").write_text(
        "import os, sys\n"
        "print(os.environ.get('PYTHONPATH'))\n"
        "print(os.environ.get('MINE_RAN'))\n"
        "print(any('startup' in p and 'reprokit' in p for p in sys.path))\n"
        "print(sorted(k for k in os.environ if k == 'REPROKIT_CHILD_REPORT'))\n"
    )
    env = clean_env(PYTHONPATH=str(site))
    out = cli(folder, "run", "--", sys.executable, "show.py", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [str(site), "1", "False", "[]"]


# -- outside git --------------------------------------------------------------------------------


def test_outside_git_the_script_and_its_modules_are_captured_and_replayed(project: Path) -> None:
    out = _record(project, "--seed", "0", "--", sys.executable, "train.py", "--epochs", "2")
    assert out.returncode == 0, out.stderr
    m = _show(project)
    assert m["run"]["replayable"] is True
    assert sorted(m["code"]["files"]) == ["helper.py", "train.py"]
    (project / "helper.py").write_text("def start():\n    return 9.0\n")  # moved on since
    out = cli(project, "replay", "latest")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "verdict: identical" in out.stdout


def test_outside_git_a_script_outside_the_working_folder_is_not_replayable(
    project: Path,
) -> None:
    inner = project / "inner"
    inner.mkdir()
    out = cli(inner, "run", "--", sys.executable, "../train.py")
    assert out.returncode == 0, out.stderr
    assert "cannot be replayed" in out.stderr and "../train.py" in out.stderr
    m = _show(inner)
    assert m["run"]["replayable"] is False
    assert any("../train.py" in r for r in m["run"]["not_replayable_because"])
    out = cli(inner, "replay", "latest")
    assert out.returncode == 2
    assert "not replayable" in out.stderr and "../train.py" in out.stderr


def test_outside_git_without_the_hook_the_run_says_what_is_missing(project: Path) -> None:
    # -E: the interpreter ignores PYTHONPATH, so reprokit's start-up hook cannot run.
    out = _record(project, "--", sys.executable, "-E", "train.py")
    assert out.returncode == 0, out.stderr
    m = _show(project)
    assert m["run"]["replayable"] is False
    assert "imported modules are unknown" in " ".join(m["run"]["not_replayable_because"])
    assert "the program was not seeded" in out.stderr
    assert m["seeds"]["seeded"] == {}
    assert cli(project, "replay", "latest").returncode == 2


def test_replay_of_a_script_the_recorded_source_lacks_is_exit_2(tmp_path: Path) -> None:
    # What runs recorded before the hook existed look like: a Python command, an empty snapshot.
    manifest = Manifest(
        {
            "run": {"id": "r1", "entry": {"kind": "command", "argv": ["python", "t.py"]}},
            "code": {"kind": "snapshot", "files": {}, "digest": "sha256:0"},
            "params": {},
        }
    )
    with pytest.raises(NotReplayable, match="its script t.py is not in the recorded source"):
        plan(manifest, str(tmp_path), {})


def test_outside_git_a_non_python_command_naming_no_file_is_not_replayable(
    project: Path,
) -> None:
    out = cli(project, "run", "--", "sh", "-c", f"{sys.executable} train.py")
    assert out.returncode == 0, out.stderr
    m = _show(project)
    assert m["run"]["replayable"] is False
    assert "cannot be replayed" in out.stderr
    out = cli(project, "replay", "latest")
    assert out.returncode == 2 and "not replayable" in out.stderr


def test_outside_git_a_shell_script_named_on_the_command_line_is_captured(
    project: Path,
) -> None:
    (project / "job.sh").write_text("echo done > result.txt\n")
    out = _record(project, "--", "sh", "job.sh")
    assert out.returncode == 0, out.stderr
    m = _show(project)
    assert m["run"]["replayable"] is True and list(m["code"]["files"]) == ["job.sh"]
    assert cli(project, "replay", "latest").returncode == 0


# -- recognising Python programs ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["python", "t.py", "--lr", "1"], {"how": "script", "script": "t.py", "args_at": 2}),
        (["python3.11", "-u", "-X", "dev", "t.py"], {"how": "script", "script": "t.py"}),
        (["python", "-Wignore", "-m", "pkg.mod", "-v"], {"how": "module", "module": "pkg.mod"}),
        (["python", "-mpkg", "x"], {"how": "module", "module": "pkg", "args_at": 2}),
        (["python", "-c", "print(1)"], {"how": "code"}),
        (["python"], {"how": "stdin"}),
        (["sh", "-c", "python t.py"], None),
    ],
)
def test_python_program(argv: list[str], expected: dict | None) -> None:
    found = python_program(argv)
    if expected is None:
        assert found is None
    else:
        assert found is not None and expected.items() <= found.items()


def test_a_console_script_with_a_python_shebang_is_a_python_program(tmp_path: Path) -> None:
    script = tmp_path / "tool"
    script.write_text(f"#!{sys.executable}\nprint('hi')\n")
    script.chmod(0o755)
    assert python_program([str(script), "--x"]) == {
        "how": "console-script",
        "script": str(script),
        "args_at": 1,
    }
    shell = tmp_path / "tool.sh"
    shell.write_text("#!/bin/sh\necho hi\n")
    assert python_program([str(shell)]) is None
