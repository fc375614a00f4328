"""The run query behind `reprokit ls`: typed param equality, metric comparisons, times."""

from __future__ import annotations

import pytest

from reprokit._model.errors import ArgumentError
from reprokit._model.manifest import Manifest, made_by_reprokit, top_level
from reprokit._store.query import RunQuery, parse_time


def manifest(**run: object) -> Manifest:
    params = run.pop("params", {})
    metrics = run.pop("metrics", {})
    base = {"id": "20261127-120000-000-aaaaaa", "status": "completed"}
    base["started"] = "2026-11-27T12:00:00.000Z"
    base.update(run)  # type: ignore[arg-type]
    return Manifest({"schema": 1, "run": base, "params": params, "outputs": {"metrics": metrics}})


@pytest.mark.parametrize(
    ("recorded", "given", "expected"),
    [
        (0.1, "0.1", True),
        (0.1, "0.10", True),
        ("0.1", "0.1", True),  # an untyped argparse option, given as written
        ("0.1", '"0.1"', True),
        (0.1, '"0.1"', False),
        (10, "10", True),
        (10.0, "10", True),
        (True, "1", False),
        (1, "true", False),
        (True, "true", True),
        ("adam", "adam", True),
        (None, "null", True),
        ([1, 2], "[1, 2]", True),
        ("<redacted>", "secret", False),
    ],
)
def test_param_filter_compares_typed(recorded, given, expected):
    query = RunQuery.parse(params=[f"p={given}"])
    assert query.matches(manifest(params={"p": recorded})) is expected


def test_param_filter_follows_dotted_paths_and_prefers_a_flat_key():
    query = RunQuery.parse(params=["opt.lr=0.5"])
    assert query.matches(manifest(params={"opt": {"lr": 0.5}}))
    assert query.matches(manifest(params={"opt.lr": 0.5, "opt": {"lr": 1}}))
    assert not query.matches(manifest(params={"opt": {"lr": 1}}))
    assert not query.matches(manifest(params={}))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("loss<0.5", True), ("loss<=0.4", True), ("loss>0.4", False), ("loss>=0.4", True),
     ("loss==0.4", True), ("loss == 0.4", True), ("acc>0", False)],
)  # fmt: skip
def test_metric_filter_reads_the_last_value(text, expected):
    m = manifest(metrics={"loss": {"count": 3, "last": 0.4, "last_step": 2}})
    assert RunQuery.parse(metrics=[text]).matches(m) is expected


def test_a_nan_metric_matches_no_comparison():
    m = manifest(metrics={"loss": {"count": 1, "last": float("nan")}})
    assert not RunQuery.parse(metrics=["loss<1"]).matches(m)
    assert not RunQuery.parse(metrics=["loss>=1"]).matches(m)


def test_times_are_utc_dates_iso_times_or_ages():
    day = parse_time("2026-11-27", "since")
    assert day == 1795737600.0
    assert parse_time("2026-11-27", "until", end=True) == day + 86400
    assert parse_time("2026-11-27T12:00", "since") == day + 43200
    assert parse_time("2026-11-27T12:00:00.000Z", "since") == day + 43200
    assert parse_time("2026-11-27T13:00+01:00", "since") == day + 43200
    assert parse_time("2h", "since", now=day) == day - 7200
    with pytest.raises(ArgumentError, match="expects a date"):
        parse_time("yesterday", "since")


def test_since_and_until_bracket_the_start_time():
    m = manifest()  # started 2026-11-27T12:00Z
    assert RunQuery.parse(since="2026-11-27", until="2026-11-27").matches(m)
    assert RunQuery.parse(since="2026-11-27T12:00").matches(m)
    assert not RunQuery.parse(until="2026-11-27T12:00").matches(m)
    assert not RunQuery.parse(since="2026-11-28").matches(m)


def test_runs_reprokit_made_are_hidden_unless_everything():
    replay = manifest(entry={"kind": "replay", "of": "x"}, replay_of="x")
    swept = manifest(group="seeds-1234")
    for m in (replay, swept):
        assert made_by_reprokit(m.run) and not top_level(m.run)
        assert not RunQuery.parse().matches(m)
        assert RunQuery.parse(everything=True).matches(m)
    nested = manifest(parent="20261127-110000-000-bbbbbb")
    assert RunQuery.parse().matches(nested) and not top_level(nested.run)
    assert top_level(manifest().run) and not top_level(manifest(worker_of=123).run)


def test_a_folder_that_is_no_sealed_run_matches_only_a_status_filter():
    assert RunQuery.parse().matches(None, "incomplete")
    assert RunQuery.parse(status="incomplete").matches(None, "incomplete")
    assert not RunQuery.parse(status="completed").matches(None, "incomplete")
    assert not RunQuery.parse(name="train").matches(None, "incomplete")
