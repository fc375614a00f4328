"""Finding runs (issue #13): tags and notes, `ls` filters, NAME@latest, `latest` as the newest
run the user started, `compare`, and the console output `reprokit run` keeps."""

from __future__ import annotations

import csv
import io
import json
import sys
import tarfile
from pathlib import Path

import pytest

from reprokit._store.store import Store
from tests.conftest import cli, git, make_repo, run_python

TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6"

TRAIN = f"""
import reprokit

@reprokit.track(tags=["baseline", "cpu"], note="first sweep, password 'hunter2hunter2'")
def train(lr=0.1, epochs=3, fast=True, opt=None):
    for e in range(epochs):
        reprokit.log_metric("loss", 1.0 - lr * e)
    return {{"acc": lr}}

for lr in (0.1, 0.2, 0.3):
    train(lr=lr, opt={{"momentum": lr}})

with reprokit.run("eval", params={{"lr": 1, "fast": 1}}, tags=["{TOKEN}", "eval"]) as r:
    r.log_metric("loss", 0.2)

with reprokit.run("broken", params={{"lr": 0.1}}):
    pass
try:
    with reprokit.run("broken", params={{"lr": "0.1"}}):
        raise ValueError("boom")
except ValueError:
    pass
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository whose store holds 3 tagged `train` runs, an `eval` run, two `broken` runs
    (one failed) and a replay of the newest train run (a replay verdict and a re-execution)."""
    repo = make_repo(tmp_path_factory.mktemp("find") / "repo")
    proc = run_python(repo, TRAIN, script="train.py")
    assert proc.returncode == 0, proc.stderr
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "train")
    replayed = cli(repo, "replay", "train@latest", "-q")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    return repo


def ls(repo: Path, *args: str) -> list[dict]:
    proc = cli(repo, "ls", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["runs"]


def names(rows: list[dict]) -> list[str]:
    return [r["name"] for r in rows]


def manifest(repo: Path, ref: str) -> dict:
    proc = cli(repo, "show", ref, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# -- tags and notes ------------------------------------------------------------------------------


def test_tags_and_note_are_recorded_in_the_run_section_with_secrets_redacted(project):
    train = manifest(project, "train@latest")["run"]
    assert train["tags"] == ["baseline", "cpu"]
    assert train["note"] == "first sweep, <redacted>"
    evaluated = manifest(project, "eval@latest")["run"]
    assert evaluated["tags"] == ["<redacted>", "eval"]
    raw = (project / ".reprokit" / "runs").rglob("manifest.yaml")
    assert not any(TOKEN in p.read_text() or "hunter2hunter2" in p.read_text() for p in raw)


def test_show_and_ls_show_tags_and_note(project):
    shown = cli(project, "show", "train@latest").stdout
    assert "tags      baseline, cpu" in shown
    assert "note      first sweep, <redacted>" in shown
    table = cli(project, "ls", "--name", "train").stdout.splitlines()
    assert table[0].split() == [
        "ID", "NAME", "STATUS", "STARTED", "COMMIT", "DURATION", "TAGS", "NOTE"
    ]  # fmt: skip
    assert all("baseline,cpu" in line and "first sweep" in line for line in table[1:])


def test_a_tag_that_is_not_text_is_refused_before_any_run(repo):
    proc = run_python(
        repo,
        "import reprokit\ntry:\n    reprokit.track(tags=[1])\nexcept reprokit.ReprokitError as e:\n"
        "    print(e)\n",
    )
    assert proc.returncode == 0, proc.stderr
    assert "each tag must be a non-empty string, got 1" in proc.stdout
    assert not (repo / ".reprokit" / "runs").exists()


# -- ls filters ----------------------------------------------------------------------------------


def test_ls_hides_the_runs_reprokit_made_unless_all(project):
    shown = ls(project)
    everything = ls(project, "--all")
    made = [r for r in everything if r["kind"] == "replay" or r["replay_of"]]
    # the replay's verdict and the runs of its re-execution of the script
    assert sum(r["kind"] == "replay" for r in made) == 1 and len(made) > 1
    assert not any(r["kind"] == "replay" or r["replay_of"] for r in shown)
    assert len(everything) == len(shown) + len(made)
    text = cli(project, "ls")
    assert f"{len(made)} run(s) reprokit made itself not shown: --all shows them" in text.stderr
    # the count is of the runs --all would add to this listing: one verdict named replay
    assert "(1 run(s) reprokit made itself" in cli(project, "ls", "--name", "replay").stderr


def test_ls_filters_by_name_status_and_tag(project):
    assert names(ls(project, "--name", "train")) == ["train"] * 3
    assert names(ls(project, "--status", "failed")) == ["broken"]
    assert names(ls(project, "--tag", "eval")) == ["eval"]
    assert names(ls(project, "--tag", "baseline", "--tag", "cpu")) == ["train"] * 3
    assert ls(project, "--tag", "baseline", "--tag", "eval") == []


def test_ls_param_filter_compares_typed_values(project):
    # lr=0.1: the float 0.1 (a train run, the completed broken run) and the text "0.1"
    found = ls(project, "--param", "lr=0.1")
    assert sorted(names(found)) == ["broken", "broken", "train"]
    assert names(ls(project, "--param", 'lr="0.1"')) == ["broken"]  # only the text
    assert names(ls(project, "--param", "lr=1")) == ["eval"]  # the int 1
    # true is a bool: the int 1 of eval's `fast` does not match, and 1 does not match True
    assert names(ls(project, "--param", "fast=true")) == ["train"] * 3
    assert names(ls(project, "--param", "fast=1")) == ["eval"]
    assert [r["id"] for r in ls(project, "--param", "opt.momentum=0.2")] == [
        r["id"] for r in ls(project, "--param", "lr=0.2")
    ]


def test_ls_metric_filter_reads_the_last_value(project):
    # train's last loss is 1 - 2 lr: 0.8, 0.6, 0.4; eval's is 0.2
    assert len(ls(project, "--metric", "loss<0.5")) == 2
    assert len(ls(project, "--metric", "loss<=0.6", "--name", "train")) == 2
    assert len(ls(project, "--metric", "loss>0.7")) == 1
    assert len(ls(project, "--metric", "loss == 0.2")) == 1
    assert ls(project, "--metric", "accuracy>0") == []


def test_ls_time_filters_and_limit(project):
    rows = ls(project)
    newest, oldest = rows[0]["started"], rows[-1]["started"]
    assert len(ls(project, "--since", oldest)) == len(rows)
    # (A replay's verdict and its re-execution can start within the same millisecond.)
    at_newest = [r["id"] for r in rows if r["started"] == newest]
    assert [r["id"] for r in ls(project, "--since", newest)] == at_newest
    before = [r["id"] for r in rows if r["started"] != newest]
    assert [r["id"] for r in ls(project, "--until", newest)] == before and before
    assert ls(project, "--since", "2000-01-01", "--until", "2000-01-02") == []
    assert len(ls(project, "--since", "1d")) == len(rows)
    assert [r["id"] for r in ls(project, "-n", "2")] == [r["id"] for r in rows[:2]]
    composed = ls(project, "--name", "train", "--metric", "loss>0.5", "-n", "1")
    assert len(composed) == 1 and composed[0]["id"] == ls(project, "--param", "lr=0.2")[0]["id"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metric", "loss~1"], "--metric expects NAME<VALUE"),
        (["--metric", "loss<low"], "--metric has a value that is not a number"),
        (["--param", "lr"], "--param expects KEY=VALUE"),
        (["--since", "yesterday"], "--since expects a date"),
        (["-n", "0"], "-n must be at least 1"),
    ],
)
def test_ls_bad_filters_exit_2_with_one_line(project, args, message):
    proc = cli(project, "ls", *args)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"reprokit: error: {message}"), proc.stderr
    assert len(proc.stderr.splitlines()) == 1


# -- references by name and "latest" -------------------------------------------------------------


def test_name_at_latest_and_name_at_n_count_from_the_newest(project):
    trains = ls(project, "--name", "train")
    assert manifest(project, "train@latest")["run"]["id"] == trains[0]["id"]
    assert manifest(project, "train@1")["run"]["id"] == trains[0]["id"]
    assert manifest(project, "train@3")["run"]["id"] == trains[2]["id"]
    # the replay's re-execution of train is newer, but reprokit made it
    assert manifest(project, "train@latest")["params"]["lr"] == 0.3
    # a name only reprokit uses still resolves
    assert manifest(project, "replay@latest")["run"]["entry"]["kind"] == "replay"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("train@4", "train@4 (only 3 runs are called 'train')"),
        ("nobody@latest", "no run matches 'nobody@latest'"),
        ("train@0", "after @: 'latest' or a number from 1"),
        ("train@newest", "after @: 'latest' or a number from 1"),
    ],
)
def test_a_name_reference_that_names_no_run_exits_2(project, ref, message):
    proc = cli(project, "verify", ref)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_latest_skips_replays_and_nested_runs(project):
    # the newest runs are the replay's; the newest one the user started is the failed broken
    assert manifest(project, "latest")["run"]["name"] == "broken"


POOL = """
import multiprocessing as mp
import reprokit

@reprokit.track
def work(x=1):
    return x * 2

if __name__ == "__main__":
    with mp.get_context("spawn").Pool(2) as pool:
        print(pool.map(work, [1, 2]))
"""


def test_latest_after_a_command_with_a_pool_is_the_command_run(repo):
    (repo / "pool.py").write_text(POOL)
    git(repo, "add", "pool.py")
    git(repo, "commit", "-q", "-m", "pool")
    proc = cli(repo, "run", "--name", "sweep", "--", sys.executable, "pool.py")
    assert proc.returncode == 0, proc.stderr
    rows = ls(repo)
    assert sorted(names(rows)) == ["sweep", "work", "work"]
    newest = rows[0]
    assert newest["name"] == "work" and newest["parent"]  # a worker's call is the newest run
    assert manifest(repo, "latest")["run"]["name"] == "sweep"
    replayed = cli(repo, "replay", "latest", "--json")
    assert replayed.returncode == 0, replayed.stderr
    doc = json.loads(replayed.stdout)
    assert doc["run"] == manifest(repo, "sweep@latest")["run"]["id"]
    assert doc["verdict"] == "identical"


def test_latest_from_python_matches_the_cli(project):
    import reprokit

    ours = reprokit.load("latest", store=project / ".reprokit")
    assert ours.id == manifest(project, "latest")["run"]["id"]
    st = Store(project / ".reprokit")
    assert st.resolve("train@2") == ls(project, "--name", "train")[1]["id"]


# -- compare -------------------------------------------------------------------------------------


def test_compare_shows_params_results_and_verdicts_and_marks_differences(project):
    proc = cli(project, "compare", "train@1", "train@2", "train@3")
    assert proc.returncode == 0, proc.stderr
    lines = {line[3:].split("  ")[0].strip(): line for line in proc.stdout.splitlines()[1:]}
    assert lines["param lr"].startswith("*") and "0.3" in lines["param lr"]
    assert lines["param epochs"].startswith(" ")
    assert lines["result metric loss"].startswith("*")
    assert lines["result return.acc"].split()[-3:] == ["0.3", "0.2", "0.1"]
    assert lines["verdict replay"].split()[-3:] == ["identical", "-", "-"]
    assert "rows differ (marked *)" in proc.stderr


def test_compare_json_and_csv_hold_the_same_rows(project):
    doc = json.loads(cli(project, "compare", "train@1", "eval@latest", "--json").stdout)
    assert doc["schema"] == 1 and len(doc["runs"]) == 2
    rows = {(r["section"], r["key"]): r for r in doc["rows"]}
    assert rows[("param", "lr")]["values"] == [0.3, 1]
    assert rows[("param", "lr")]["differs"] is True
    assert rows[("param", "opt.momentum")]["values"] == [0.3, None]
    assert rows[("result", "metric loss")]["values"] == [0.4, 0.2]
    assert rows[("run", "status")]["differs"] is False
    text = cli(project, "compare", "train@1", "eval@latest", "--csv").stdout
    table = list(csv.reader(io.StringIO(text)))
    assert table[0] == ["section", "key", *doc["runs"], "differs"]
    assert ["param", "lr", "0.3", "1", "1"] in table
    assert len(table) == len(doc["rows"]) + 1


def test_compare_needs_two_runs(project):
    proc = cli(project, "compare", "train@1", "train@latest")
    assert proc.returncode == 2
    assert "compare needs two different runs" in proc.stderr


# -- the console output of `reprokit run` --------------------------------------------------------

LOUD = f"""
import sys
print("epoch 1 loss 0.5", flush=True)
print("warning: token {TOKEN}", file=sys.stderr, flush=True)
for i in range(int(sys.argv[1])):
    print(f"line {{i:06d}} " + "x" * 50)
print("done")
"""


def test_run_keeps_the_console_output_redacted_and_passes_it_through(repo):
    (repo / "loud.py").write_text(LOUD)
    proc = cli(
        repo,
        "run",
        "--tag",
        "cli",
        "--note",
        "from the shell",
        "--",
        sys.executable,
        "loud.py",
        "3",
    )
    assert proc.returncode == 0, proc.stderr
    assert "epoch 1 loss 0.5" in proc.stdout and "done" in proc.stdout  # seen live
    assert f"warning: token {TOKEN}" in proc.stderr  # the user's own terminal is not redacted
    m = manifest(repo, "latest")
    assert m["run"]["tags"] == ["cli"] and m["run"]["note"] == "from the shell"
    console = m["outputs"]["console"]
    assert console["file"] == "console.log" and "truncated" not in console
    kept = (repo / ".reprokit" / "runs" / m["run"]["id"] / "console.log").read_text()
    # Both streams, whole lines; the order between the two pipes is not known finer than that.
    lines = kept.splitlines()
    assert "warning: token <redacted>" in lines and TOKEN not in kept
    stdout = [line for line in lines if not line.startswith("warning")]
    assert stdout == ["epoch 1 loss 0.5", *(f"line {i:06d} " + "x" * 50 for i in range(3)), "done"]
    assert console["bytes"] == len(kept.replace("<redacted>", TOKEN).encode())
    assert "console.log" in m["digests"]
    assert cli(repo, "verify", "latest").returncode == 0
    shown = cli(repo, "show", "latest").stdout
    assert "console   console.log in the run folder" in shown


def test_run_keeps_only_the_last_part_of_a_long_output(repo):
    (repo / "loud.py").write_text(LOUD)
    proc = cli(repo, "run", "--max-console", "4096", "--", sys.executable, "loud.py", "2000")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("line ") == 2000  # everything still reaches the terminal
    m = manifest(repo, "latest")
    kept = (repo / ".reprokit" / "runs" / m["run"]["id"] / "console.log").read_text()
    assert kept.startswith("[reprokit: ") and "earlier bytes of output dropped]" in kept
    # (The stderr line may be read before or after stdout's last block: the two pipes are read
    # by two threads. The kept stdout lines end with the last ones.)
    stdout_kept = "".join(x for x in kept.splitlines(True) if not x.startswith("warning: "))
    assert stdout_kept.endswith("line 001999 " + "x" * 50 + "\ndone\n")
    assert len(kept.encode()) < 4096 + 100
    assert m["outputs"]["console"]["truncated"].startswith("the first ")
    assert "epoch 1" not in kept


def test_run_with_max_console_0_keeps_no_output(repo):
    (repo / "loud.py").write_text(LOUD)
    proc = cli(repo, "run", "--max-console", "0", "--", sys.executable, "loud.py", "1")
    assert proc.returncode == 0 and "done" in proc.stdout
    m = manifest(repo, "latest")
    assert "console" not in m["outputs"] and "console.log" not in m["digests"]


def test_an_archive_carries_the_console_output(repo, tmp_path):
    (repo / "loud.py").write_text(LOUD)
    git(repo, "add", "loud.py")
    git(repo, "commit", "-q", "-m", "loud")
    assert cli(repo, "run", "--", sys.executable, "loud.py", "2").returncode == 0
    rid = manifest(repo, "latest")["run"]["id"]
    out = tmp_path / "paper.tar.gz"
    proc = cli(repo, "archive", "latest", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(out) as tar:
        member = next(n for n in tar.getnames() if n.endswith(f"{rid}/console.log"))
        kept = tar.extractfile(member).read().decode()  # type: ignore[union-attr]
    assert "epoch 1 loss 0.5" in kept and "<redacted>" in kept


def test_a_secret_cut_in_half_by_the_size_cap_is_not_kept(repo):
    code = f"print('x' * 100 + '{TOKEN}')\nprint('tail')\n"
    (repo / "half.py").write_text(code)
    proc = cli(repo, "run", "--max-console", "30", "--", sys.executable, "half.py")
    assert proc.returncode == 0, proc.stderr
    rid = manifest(repo, "latest")["run"]["id"]
    kept = (repo / ".reprokit" / "runs" / rid / "console.log").read_text()
    assert kept.endswith("]\ntail\n")  # the note, then the whole lines after the cut
    assert TOKEN[-12:] not in kept


def test_an_unknown_status_is_refused_and_an_empty_filtered_listing_says_so(tmp_path):
    repo = make_repo(tmp_path / "repo")
    proc = run_python(repo, "import reprokit\nwith reprokit.run('one'):\n    pass\n")
    assert proc.returncode == 0, proc.stderr
    bad = cli(repo, "ls", "--status", "bogus")
    assert bad.returncode == 2 and "--status must be one of completed" in bad.stderr, bad.stderr
    none = cli(repo, "ls", "--name", "nope")
    assert none.returncode == 0 and none.stderr.startswith("no runs match the filters"), none
