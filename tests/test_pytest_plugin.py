"""The pytest plugin, driven through pytester: a real pytest session per test."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import reprokit
from tests.conftest import clean_env

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _no_reprokit_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("REPROKIT_")]:
        monkeypatch.delenv(key)


SEEDED = """
import random, pytest, reprokit

@reprokit.track
def train(steps=4):
    w = 0.0
    for i in range(steps):
        w += random.random()
        reprokit.checkpoint("w", w)
        reprokit.log_metric("loss", 1 / (1 + w), step=i)
    return w

@pytest.mark.reproducible(runs=2)
def test_train():
    assert train() > 0
"""

UNSEEDED = """
import random, pytest, reprokit

@reprokit.track
def train(steps=5):
    draw = random.SystemRandom().random
    w = 0.0
    for i in range(steps):
        w += 1.0 if i < 2 else draw()
        reprokit.checkpoint("w", w)
    return w

@pytest.mark.reproducible(runs=2)
def test_train():
    train()
"""


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    found = [ep for ep in entry_points(group="pytest11") if ep.value == "reprokit.pytest_plugin"]
    assert [ep.name for ep in found] == ["reprokit"]


def test_importing_the_plugin_loads_nothing_of_recording_or_the_verbs() -> None:
    code = (
        "import sys, json, reprokit.pytest_plugin; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('reprokit'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, check=True
    ).stdout
    loaded = json.loads(out)
    heavy = [m for m in loaded if m.startswith(("reprokit._record", "reprokit._verbs"))]
    assert heavy == [], heavy
    assert "reprokit._store.store" not in loaded


def test_a_deterministic_test_passes_after_two_executions(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_train=SEEDED)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_an_unseeded_rng_fails_naming_the_first_divergent_checkpoint(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_train=UNSEEDED)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*not reproducible: 2 executions with seed * differ*",
            "*first divergence at train#0 checkpoint #2 (w)*",
            "*repeat with: pytest 'test_train.py::test_train' --reprokit-seed=*",
        ]
    )


def test_a_failing_execution_fails_the_test_with_its_output(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_boom="""
        import pytest

        @pytest.mark.reproducible(runs=3)
        def test_boom():
            assert 1 + 1 == 3, "arithmetic is broken"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*execution 1 of 3 (seed *) did not pass*arithmetic is broken*"])


def test_a_marker_with_too_few_runs_fails_saying_why(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_one="""
        import pytest

        @pytest.mark.reproducible(runs=1)
        def test_one():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*reproducible(runs=...) must be at least 2, got 1*"])


def test_the_fixture_records_into_a_temporary_store_and_seals_failures(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_fixture="""
        import json, reprokit

        def where(run, name):
            with open(name, "w") as fh:
                json.dump({"store": str(run.store.root), "id": run.id}, fh)

        def test_ok(reprokit_run):
            reprokit.log_metric("loss", 0.5, step=0)
            reprokit_run.log_params(lr=0.1)
            where(reprokit_run, "ok.json")

        def test_bad(reprokit_run):
            where(reprokit_run, "bad.json")
            raise ValueError("nope")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*reprokit*", "run * (seed *) in store *"])
    assert not (pytester.path / ".reprokit").exists()  # nothing in the project's store
    ok_at = json.loads((pytester.path / "ok.json").read_text())
    bad_at = json.loads((pytester.path / "bad.json").read_text())
    assert ok_at["store"] != bad_at["store"]  # each test gets its own store
    ok = reprokit.load(ok_at["id"], store=ok_at["store"])
    assert ok.status == "completed"
    assert ok.params == {"lr": 0.1}
    assert ok.outputs["metrics"]["loss"]["last"] == 0.5
    bad = reprokit.load(bad_at["id"], store=bad_at["store"])
    assert bad.status == "failed"
    assert bad.run["error"]["type"] == "builtins.ValueError"


def test_session_seed_is_printed_and_fixes_every_rng_and_tracked_run(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_seeded="""
        import random, json, reprokit

        def test_first(reprokit_run):
            with open("first.json", "w") as fh:
                json.dump({"x": random.random(), "seed": reprokit_run.seed}, fh)

        def test_second():
            with open("second.json", "w") as fh:
                json.dump({"x": random.random()}, fh)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--reprokit-seed=1234")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["Using --reprokit-seed=1234"])
    expected = random.Random(1234).random()  # what random.seed(1234) gives: golden by definition
    first = json.loads((pytester.path / "first.json").read_text())
    second = json.loads((pytester.path / "second.json").read_text())
    assert first == {"x": expected, "seed": 1234}
    assert second == {"x": expected}  # every test starts from the seed: order does not matter


def test_a_bad_session_seed_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--reprokit-seed=abc")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--reprokit-seed expects an integer*'abc'*"])


def _readme_block(section: str, lang: str) -> str:
    """The first ``lang`` code block of README section ``section``."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    body = readme.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return body.split(f"```{lang}\n", 1)[1].split("```", 1)[0]


def test_the_readme_pytest_example_behaves_as_its_transcript_shows(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("numpy")
    code = _readme_block("pytest", "python")
    transcript = _readme_block("pytest", "console")
    pytester.makepyfile(test_train=code)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--reprokit-seed=7")
    result.assert_outcomes(failed=1, passed=1)
    for line in ("Using --reprokit-seed=7", "not reproducible: 2 executions with seed 7 differ"):
        assert line in transcript
        result.stdout.fnmatch_lines([f"*{line}*"])
    result.stdout.fnmatch_lines(
        ["*first divergence at train#0 checkpoint #2 (w)*", "*checkpoints different*"]
    )


def test_executions_get_the_plugins_and_ini_overrides_of_the_session(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        myplug="""
        import pytest

        @pytest.fixture
        def answer():
            return 42
        """,
        test_uses_plugin="""
        import pytest, reprokit

        @pytest.mark.reproducible(runs=2)
        def test_answer(answer):
            reprokit.log_metric("answer", answer)
            assert answer == 42
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "myplug")
    result.assert_outcomes(passed=1)
