"""Drift compares like with like (issue 16, item 5): sets as sets, variables libraries set at
import are not drift, a drift line shows what the replay ran with, and numerics variables the
recorded run did not have are not passed on from the replaying shell."""

from __future__ import annotations

import json

import reprokit
from reprokit._model.manifest import Manifest
from reprokit._verbs.replay import environment_drift
from tests.conftest import clean_env, cli, run_python

A = {"internal_api": "openblas", "version": "0.3.27", "num_threads": 2, "filepath": "a.so"}
B = {"internal_api": "openmp", "version": None, "num_threads": 2, "filepath": "b.so"}


def manifest(variables=None, blas=None) -> Manifest:
    return Manifest(
        {
            "schema": 1,
            "run": {},
            "environment": {"python": {"version": "3"}, "variables": variables or {}},
            "hardware": {"blas": blas},
        }
    )


def test_the_same_blas_libraries_in_another_order_are_no_drift():
    m = manifest(blas=[A, B])
    env = {"python": {"version": "3"}}
    same = environment_drift(m, env, {"blas": [B, A]}, hw_keys=("blas",), ran_with={})
    assert "hardware" not in same
    other = environment_drift(m, env, {"blas": [A]}, hw_keys=("blas",), ran_with={})
    assert other["hardware"]


def test_variables_set_at_import_are_no_drift_and_lines_show_what_the_replay_ran_with():
    recorded = {"KMP_DUPLICATE_LIB_OK": "True", "KMP_INIT_AT_FORK": "FALSE", "OMP_NUM_THREADS": "1"}
    m = manifest(variables=recorded)
    env = {"python": {"version": "3"}}
    drift = environment_drift(m, env, {}, ran_with={"OMP_NUM_THREADS": "1"})
    assert "variables" not in drift
    drift = environment_drift(m, env, {}, ran_with={"OMP_NUM_THREADS": "2"})
    assert drift["variables"] == [{"key": "OMP_NUM_THREADS", "a": "1", "b": "2"}]


def test_replay_restores_recorded_numerics_variables_and_unsets_the_others(repo):
    code = """
import os, reprokit
@reprokit.track
def train():
    return {k: os.environ.get(k, "unset") for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
train()
"""
    proc = run_python(repo, code, env=clean_env(OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr
    m = reprokit.load("latest", store=repo / ".reprokit")
    assert m.outputs["return"]["value"] == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "unset"}
    shell = clean_env(OMP_NUM_THREADS="4", MKL_NUM_THREADS="3")
    shell.pop("PYTHONHASHSEED", None)
    rep = cli(repo, "replay", m.id, "--json", env=shell)
    assert rep.returncode == 0, rep.stdout + rep.stderr
    data = json.loads(rep.stdout)
    assert data["verdict"] == "identical"
    assert "variables" not in data["drift"], data["drift"]
