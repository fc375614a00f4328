"""The real CLI, through subprocesses: data on stdout, one-line errors, documented exit codes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import reprokit
from tests.conftest import clean_env, cli, git, run_python

TRAIN = """
import reprokit, random
@reprokit.track
def train(lr=0.1, epochs=3):
    w = 0.0
    for i in range(epochs):
        w += lr * random.random()
        reprokit.log_metric("loss", 1 - w, step=i)
    return w
train(lr=float(__import__("sys").argv[1]) if len(__import__("sys").argv) > 1 else 0.1)
"""


def test_version_and_help(tmp_path):
    proc = cli(tmp_path, "--version")
    assert proc.returncode == 0 and proc.stdout.startswith("reprokit ")
    assert cli(tmp_path).returncode == 2


def test_ls_lists_runs_newest_first_with_json(repo):
    for lr in ("0.1", "0.2"):
        assert run_python(repo, TRAIN, lr).returncode == 0
    proc = cli(repo, "ls")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATUS", "STARTED", "COMMIT", "DURATION", "NOTE"]
    assert len(lines) == 3 and "completed" in lines[1] and "+dirty" in lines[1]
    data = json.loads(cli(repo, "ls", "--json").stdout)
    assert data["schema"] == 1 and len(data["runs"]) == 2
    assert data["runs"][0]["id"] > data["runs"][1]["id"]


def test_show_is_readable_and_json_is_the_manifest(repo):
    run_python(repo, TRAIN, "0.3")
    proc = cli(repo, "show", "latest")
    assert proc.returncode == 0
    assert "status    completed" in proc.stdout and "lr: 0.3" in proc.stdout
    data = json.loads(cli(repo, "show", "latest", "--json").stdout)
    assert data["schema"] == 1 and data["params"]["lr"] == 0.3
    raw = cli(repo, "show", "latest", "--yaml").stdout
    assert raw.startswith("schema: 1\n")


def test_diff_shows_params_code_files_and_outputs(repo):
    run_python(repo, TRAIN, "0.1")
    (repo / "src/model.py").write_text("W = 2\n")
    run_python(repo, TRAIN, "0.2")
    ids = [r["id"] for r in json.loads(cli(repo, "ls", "--json").stdout)["runs"]]
    proc = cli(repo, "diff", ids[1], ids[0])
    assert proc.returncode == 0, proc.stderr
    assert "lr: 0.1 -> 0.2" in proc.stdout
    assert "modified  src/model.py" in proc.stdout
    assert "packages: same" in proc.stdout
    data = json.loads(cli(repo, "diff", ids[1], ids[0], "--json").stdout)
    assert data["schema"] == 1
    assert {"key": "lr", "a": 0.1, "b": 0.2} in data["sections"]["params"]


def test_diff_shows_a_text_param_that_reads_like_a_number_as_text(repo):
    code = (
        "import sys, reprokit\n"
        "lr = sys.argv[1] if sys.argv[2] == 'text' else float(sys.argv[1])\n"
        "with reprokit.run('t', params={'lr': lr}):\n"
        "    pass\n"
    )
    run_python(repo, code, "0.2", "text")
    run_python(repo, code, "0.2", "number")
    ids = [r["id"] for r in json.loads(cli(repo, "ls", "--json").stdout)["runs"]]
    proc = cli(repo, "diff", ids[1], ids[0])
    assert proc.returncode == 0, proc.stderr
    assert 'lr: "0.2" -> 0.2' in proc.stdout, proc.stdout


def test_verify_exit_codes(repo):
    run_python(repo, TRAIN)
    ok = cli(repo, "verify", "latest")
    assert ok.returncode == 0 and ok.stdout.startswith("intact: ")
    rid = json.loads(cli(repo, "ls", "--json").stdout)["runs"][0]["id"]
    metrics = repo / ".reprokit" / "runs" / rid / "metrics.jsonl"
    os.chmod(metrics, 0o644)
    metrics.write_text(metrics.read_text().replace("0.", "1.", 1))
    bad = cli(repo, "verify", rid)
    assert bad.returncode == 1
    assert bad.stderr.strip() == f"tampered: {rid}/metrics.jsonl was modified after sealing"
    data = json.loads(cli(repo, "verify", rid, "--json").stdout)
    assert data["intact"] is False and data["path"] == "metrics.jsonl"


def test_unknown_and_ambiguous_runs_get_one_line_and_exit_2(repo):
    for _ in range(2):
        run_python(repo, TRAIN)
    proc = cli(repo, "show", "nope")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no run matches 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr
    prefix = json.loads(cli(repo, "ls", "--json").stdout)["runs"][0]["id"][:4]
    amb = cli(repo, "show", prefix)
    assert amb.returncode == 2 and "ambiguous" in amb.stderr


def test_corrupt_manifest_is_a_one_line_error(repo):
    run_python(repo, TRAIN)
    rid = json.loads(cli(repo, "ls", "--json").stdout)["runs"][0]["id"]
    path = repo / ".reprokit" / "runs" / rid / "manifest.yaml"
    os.chmod(path, 0o644)
    path.write_bytes(b"schema: 1\nrun: !!python/object/apply:os.system ['touch pwned']\n")
    proc = cli(repo, "show", rid)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert not (repo / "pwned").exists()


def test_run_records_a_command_and_passes_its_exit_code_through(repo):
    script = (
        "import os, sys, pathlib\n"
        "out = pathlib.Path('out'); out.mkdir(exist_ok=True)\n"
        "(out / 'a.txt').write_text(os.environ['REPROKIT_SEED'])\n"
        "(out / 'sub').mkdir(exist_ok=True); (out / 'sub' / 'b.txt').write_text('b')\n"
        "print(os.environ['PYTHONHASHSEED'])\n"
        "sys.exit(3)\n"
    )
    (repo / "cmd.py").write_text(script)
    proc = cli(
        repo,
        "run",
        "--name",
        "c",
        "--seed",
        "17",
        "--output",
        "out",
        "--",
        sys.executable,
        "cmd.py",
        "--token",
        "abc123",
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.strip() == "17"
    m = reprokit.load("latest", store=repo / ".reprokit")
    assert m.status == "failed" and m.outputs["exit_code"] == 3 and m.seeds["seed"] == 17
    assert m.run["entry"]["argv"][-2:] == ["--token", "<redacted>"]
    [out] = m.outputs["declared"]
    assert out["kind"] == "folder"
    assert [f["path"] for f in out["files"]] == ["a.txt", "sub/b.txt"]
    assert cli(repo, "verify", "latest").returncode == 0


def test_run_groups_tracked_children_under_the_command(repo):
    (repo / "train.py").write_text(TRAIN)
    proc = cli(repo, "run", "--seed", "5", "--", sys.executable, "train.py")
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(cli(repo, "ls", "--json").stdout)["runs"]
    child = next(r for r in runs if r["name"] == "train")
    parent = next(r for r in runs if r["name"] != "train")
    assert child["parent"] == parent["id"]
    assert reprokit.load(child["id"], store=repo / ".reprokit").seeds["seed"] == 5


def test_run_without_a_command_or_with_a_missing_one_exits_2(repo):
    assert cli(repo, "run", "--").returncode == 2
    proc = cli(repo, "run", "--", "no-such-program-xyz")
    assert proc.returncode == 2 and "cannot run 'no-such-program-xyz'" in proc.stderr
    assert json.loads(cli(repo, "ls", "--json").stdout)["runs"] == []  # nothing ran: no run


def test_store_outside_git_is_in_the_current_folder(tmp_path):
    run_python(tmp_path, TRAIN)
    assert (tmp_path / ".reprokit" / "runs").is_dir()
    m = reprokit.load("latest", store=tmp_path / ".reprokit")
    assert m.code["kind"] == "snapshot" and "job.py" in m.code["files"]


def test_reprokit_store_variable_overrides_the_location(repo, tmp_path):
    other = tmp_path / "elsewhere store ü"
    env = clean_env(REPROKIT_STORE=str(other))
    assert run_python(repo, TRAIN, env=env).returncode == 0
    assert not (repo / ".reprokit").exists()
    proc = cli(repo, "ls", "--json", env=env)
    assert len(json.loads(proc.stdout)["runs"]) == 1


def test_demo_records_and_verifies_an_example(tmp_path):
    proc = cli(tmp_path, "demo")
    assert proc.returncode == 0, proc.stderr
    assert "status    completed" in proc.stdout and "intact: " in proc.stdout
    assert "verdict: identical" in proc.stdout
    folder = Path(proc.stderr.split("example repository in ")[1].split()[0])
    assert git(folder, "status", "--porcelain").strip() == "M train.py"
    m = reprokit.load("latest", store=folder / ".reprokit")
    assert m.code["dirty"] is True and m.params["lr"] == 0.1


def test_python_dash_m_works_like_the_command(tmp_path):
    proc = cli(tmp_path, "ls", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout) == {"schema": 1, "runs": []}


def test_run_records_the_childs_hash_seed_and_does_not_warn(repo):
    (repo / "c.py").write_text("import os; print(os.environ['PYTHONHASHSEED'])\n")
    proc = cli(repo, "run", "--seed", "9", "--", sys.executable, "c.py")
    assert proc.returncode == 0 and proc.stdout.strip() == "9"
    assert "hash randomization" not in proc.stderr
    m = reprokit.load("latest", store=repo / ".reprokit")
    assert m.seeds["pythonhashseed"] == "9" and m.seeds["hash_randomization"] is False


def test_verify_of_a_missing_archive_says_so(tmp_path):
    proc = cli(tmp_path, "verify", str(tmp_path / "nope.tar.gz"))
    assert proc.returncode == 2 and "no such archive file" in proc.stderr


def test_diff_names_the_artifact_that_changed(repo):
    code = (
        "import pathlib, sys, reprokit\n"
        "with reprokit.run('a'):\n"
        "    pathlib.Path('a.txt').write_text(sys.argv[1])\n"
        "    pathlib.Path('b.txt').write_text('same')\n"
        "    reprokit.log_artifact('a.txt'); reprokit.log_artifact('b.txt')\n"
    )
    run_python(repo, code, "one")
    run_python(repo, code, "two")
    ids = [r["id"] for r in json.loads(cli(repo, "ls", "--json").stdout)["runs"]]
    out = cli(repo, "diff", ids[1], ids[0]).stdout
    assert "artifacts.a.txt:" in out and "artifacts.b.txt" not in out


def test_every_command_prints_one_json_document_with_a_schema(repo, tmp_path):
    (repo / "train.py").write_text(TRAIN)
    assert run_python(repo, TRAIN, script="train.py").returncode == 0
    rid = json.loads(cli(repo, "ls", "--json").stdout)["runs"][0]["id"]
    commands = [
        ["ls"], ["show", rid], ["diff", rid, rid], ["verify", rid],
        ["run", "--", sys.executable, "-c", "print('out')"], ["replay", rid], ["check", rid],
        ["seeds", rid, "-n", "2"], ["archive", rid, "-o", str(tmp_path / "a.zip")],
    ]  # fmt: skip
    for args in commands:
        proc = cli(repo, *args[:1], "--json", *args[1:])
        assert proc.returncode == 0, (args, proc.stderr)
        assert json.loads(proc.stdout)["schema"] == 1, args
    demo = cli(tmp_path, "demo", "--json")
    assert demo.returncode == 0 and json.loads(demo.stdout)["replay"]["verdict"] == "identical"


# -- argument parsing (issue #9): global options anywhere, "--" for commands, help, suggestions


def test_global_store_before_the_command_is_used(repo, tmp_path):
    other = tmp_path / "elsewhere"
    env = clean_env(REPROKIT_STORE=str(other))
    assert run_python(repo, TRAIN, "0.1", env=env).returncode == 0
    before = json.loads(cli(repo, "--store", str(other), "ls", "--json").stdout)
    after = json.loads(cli(repo, "ls", "--json", "--store", str(other)).stdout)
    default = json.loads(cli(repo, "ls", "--json").stdout)
    assert len(before["runs"]) == 1 and before == after
    assert default["runs"] == []


def test_global_quiet_before_the_command_silences_narration(repo):
    assert run_python(repo, TRAIN, "0.1").returncode == 0
    loud = cli(repo, "replay", "latest")
    quiet = cli(repo, "-q", "replay", "latest")
    assert loud.returncode == quiet.returncode == 0
    assert "source:" in loud.stderr
    assert "source:" not in quiet.stderr and "verdict: identical" in quiet.stdout


def test_global_debug_before_the_command_shows_the_traceback(repo):
    proc = cli(repo, "--debug", "show", "nope")
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "RunNotFound" in proc.stderr


def test_run_named_like_a_command_takes_the_command_after_the_separator(repo):
    (repo / "x.py").write_text("print('hello from x')\n")
    proc = cli(repo, "run", "--name", "check", "--", sys.executable, "x.py")
    assert proc.returncode == 0, proc.stderr
    assert "hello from x" in proc.stdout
    runs = json.loads(cli(repo, "ls", "--json").stdout)["runs"]
    assert [r["name"] for r in runs] == ["check"]


def test_run_passes_a_second_separator_to_the_command(repo):
    (repo / "x.py").write_text("import sys; print(sys.argv[1:])\n")
    proc = cli(repo, "run", "--", sys.executable, "x.py", "--", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    assert "['--', '--seed', '3']" in proc.stdout


def test_check_of_a_command_after_the_separator(repo):
    (repo / "x.py").write_text("print(7)\n")
    proc = cli(repo, "check", "-n", "2", "--json", "--", sys.executable, "x.py")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["deterministic"] is True


def test_subcommand_help_has_a_description_and_examples(tmp_path):
    for command in ("ls", "show", "diff", "verify", "archive", "replay", "check", "seeds", "run"):
        proc = cli(tmp_path, command, "--help")
        assert proc.returncode == 0
        assert "examples:" in proc.stdout and f"reprokit {command}" in proc.stdout, command
        assert "--store" in proc.stdout  # the global options are listed everywhere


def test_mistyped_command_and_option_get_a_suggestion(tmp_path):
    proc = cli(tmp_path, "replya", "latest")
    assert proc.returncode == 2 and "did you mean 'replay'?" in proc.stderr
    proc = cli(tmp_path, "replay", "latest", "--rtoll", "0.1")
    assert proc.returncode == 2 and "did you mean '--rtol'?" in proc.stderr
