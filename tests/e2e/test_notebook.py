"""Notebook runs with a real Jupyter kernel: `%load_ext reprokit`, `%%track`, `reprokit.run()`
in a kernel, and replay in a fresh kernel."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

import reprokit
from tests.conftest import clean_env, cli, make_repo

pytest.importorskip("nbclient")
pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

pytestmark = pytest.mark.notebook

EXECUTE = """\
import json, sys
import nbformat
from nbclient import NotebookClient
cells = json.loads(sys.argv[1])
nb = nbformat.v4.new_notebook()
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
               resources={"metadata": {"path": "."}}).execute()
print(json.dumps([c.outputs for c in nb.cells]))
"""


def run_notebook(cwd: Path, cells: list[str]) -> list[list[dict]]:
    """Execute ``cells`` in a fresh kernel in ``cwd``, as nbclient / nbconvert --execute do."""
    proc = subprocess.run(
        [sys.executable, "-c", EXECUTE, json.dumps(cells)],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def text(outputs: list[dict], name: str = "stdout") -> str:
    return "".join(o.get("text", "") for o in outputs if o.get("name") == name)


TRACKED = [
    "%load_ext reprokit",
    "import random\nscale = 2.0",
    "%%track train --seed 3\n"
    "import reprokit\n"
    "xs = [random.random() * scale for _ in range(3)]\n"
    "reprokit.log_metric('loss', sum(xs))\n"
    "print(xs)",
]


def test_track_magic_records_the_cells_in_order_and_replays_identically(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    outputs = run_notebook(repo, TRACKED)
    random.seed(3)
    assert text(outputs[2]).strip() == repr([random.random() * 2.0 for _ in range(3)])
    m = reprokit.load("latest", store=repo / ".reprokit")
    assert m.name == "train" and m.seeds["seed"] == 3
    entry = m.run["entry"]
    assert entry["kind"] == "notebook"
    assert [c["execution_count"] for c in entry["cells"]] == [1, 2, 3]
    assert [c["source"] for c in entry["cells"]] == TRACKED
    assert m.run["replayable"] is True
    out = cli(repo, "replay", "latest")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "verdict: identical" in out.stdout
    assert "metric loss                  identical" in out.stdout


def test_run_block_in_a_kernel_is_a_notebook_run_outside_git_too(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    run_notebook(
        folder,
        [
            "import random, reprokit",
            "with reprokit.run('block', seed=5):\n    reprokit.log_metric('v', random.random())",
        ],
    )
    m = reprokit.load("latest", store=folder / ".reprokit")
    assert m.run["entry"]["kind"] == "notebook"  # not ipykernel_launcher.py -f ...
    assert "argv" not in m.run["entry"]
    assert m.run["replayable"] is True
    out = cli(folder, "replay", "latest")
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_secret_in_a_cell_makes_the_run_not_replayable_and_says_so(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    outputs = run_notebook(
        repo,
        [
            "%load_ext reprokit",
            "token = 'ghp_" + "a1B2" * 9 + "'",
            "%%track t\nx = 1",
        ],
    )
    assert "not replayable" in text(outputs[2], "stderr")  # said when it is recorded
    m = reprokit.load("latest", store=repo / ".reprokit")
    assert m.run["replayable"] is False
    assert "ghp_" + "a1B2" * 9 not in json.dumps(m.run["entry"])
    out = cli(repo, "replay", "latest")
    assert out.returncode == 2
    assert "a cell held a secret" in out.stderr


def test_track_magic_rejects_unknown_options(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    outputs = run_notebook(repo, ["%load_ext reprokit", "%%track a --speed 3\nx = 1"])
    errors = [o for o in outputs[1] if o.get("output_type") == "error"]
    assert errors and "usage: %%track [NAME] [--seed S]" in errors[0]["evalue"]
