"""The executor interface: any object with ``name`` and ``map(fn, items)`` runs replays."""

from __future__ import annotations

import json

import pytest

from reprokit._model.errors import ReprokitError
from reprokit._verbs.executors import LocalExecutor, make_executor
from reprokit._verbs.parallel import replay_runs
from tests.conftest import cli, make_repo, run_python


def square_or_fail(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x * x


@pytest.mark.parametrize("jobs", [1, 2])
def test_local_executor_yields_every_result_and_turns_errors_into_outcomes(jobs):
    got = dict(LocalExecutor(jobs).map(square_or_fail, [1, 2, 3, 4]))
    assert got[0] == 1 and got[1] == 4 and got[3] == 16
    assert isinstance(got[2], ValueError)


def test_unknown_executor_and_bad_jobs_are_errors():
    with pytest.raises(ReprokitError, match="unknown executor"):
        make_executor("ray")
    with pytest.raises(ReprokitError, match="at least 1"):
        LocalExecutor(0)
    with pytest.raises(ReprokitError, match="scheduler"):
        make_executor("dask")


class Inline:
    """A third-party adapter in a dozen lines: replay does not need to know about it."""

    name = "inline"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def map(self, fn, items):
        for i, item in enumerate(items):
            self.seen.append(item["run"])
            yield i, fn(item)


def test_a_new_executor_is_one_class_with_map(tmp_path, monkeypatch):
    code = "import reprokit\n@reprokit.track\ndef f(x=1):\n    return x\nf(1)\nf(2)\n"
    repo = make_repo(tmp_path / "repo", {"job.py": code})
    assert run_python(repo, code).returncode == 0
    monkeypatch.chdir(repo)
    ex = Inline()
    report = replay_runs(store=repo / ".reprokit", all_runs=True, executor=ex)
    assert report.executor == "inline" and report.exit_code == 0
    assert [r["run"] for r in report.results] == ex.seen
    doc = json.loads(cli(repo, "ls", "--all", "--json").stdout)
    assert sum(1 for r in doc["runs"] if r.get("kind") == "replay") == 2
