"""Seeds: seeding every imported RNG, derived sub-seeds, validation and determinism state."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reprokit import ReprokitError, derive_seed, seed_everything
from reprokit._capture.seeds import MAX_SEED, check_seed, draw_seed

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run_child(code: str, **env: str) -> dict:
    """Run ``code`` in a fresh interpreter and return the JSON it prints on its last line."""
    full_env = dict(os.environ)
    full_env.pop("CUBLAS_WORKSPACE_CONFIG", None)
    full_env.update(env)
    full_env["PYTHONPATH"] = str(REPO_ROOT)
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- seed_everything ------------------------------------------------------------------------


def test_seed_everything_gives_python_random_the_golden_value() -> None:
    seed_everything(42)
    assert random.random() == 0.6394267984578837


def test_seed_everything_gives_numpy_legacy_rng_the_golden_value() -> None:
    seed_everything(42)
    assert np.random.rand() == 0.3745401188473625


def test_seed_everything_reports_python_and_numpy_seeded() -> None:
    state = seed_everything(42)
    assert state["seed"] == 42
    assert state["seeded"]["python"]["seed"] == 42
    assert state["seeded"]["numpy"] == {"seed": 42, "version": np.__version__}


def test_seed_everything_leaves_numpy_alone_when_not_imported() -> None:
    out = _run_child(
        "import json, sys\n"
        "from reprokit import seed_everything\n"
        "state = seed_everything(7)\n"
        "print(json.dumps({'seeded': sorted(state['seeded']),"
        " 'numpy_imported': 'numpy' in sys.modules}))\n"
    )
    assert out == {"seeded": ["python"], "numpy_imported": False}


def test_seed_everything_rejects_a_bad_seed() -> None:
    with pytest.raises(ReprokitError, match="-5"):
        seed_everything(-5)


def test_deterministic_sets_cublas_workspace_config_when_unset() -> None:
    out = _run_child(
        "import json, os\n"
        "from reprokit import seed_everything\n"
        "before = os.environ.get('CUBLAS_WORKSPACE_CONFIG')\n"
        "state = seed_everything(1, deterministic=True)\n"
        "print(json.dumps({'before': before,"
        " 'after': os.environ.get('CUBLAS_WORKSPACE_CONFIG'),"
        " 'det': state['deterministic']}))\n"
    )
    assert out["before"] is None
    assert out["after"] == ":4096:8"
    assert out["det"]["requested"] is True
    assert out["det"]["cublas_workspace_config"] == ":4096:8"


def test_deterministic_keeps_an_existing_cublas_workspace_config() -> None:
    out = _run_child(
        "import json, os\n"
        "from reprokit import seed_everything\n"
        "seed_everything(1, deterministic=True)\n"
        "print(json.dumps(os.environ.get('CUBLAS_WORKSPACE_CONFIG')))\n",
        CUBLAS_WORKSPACE_CONFIG=":16:8",
    )
    assert out == ":16:8"


def test_not_deterministic_reports_requested_false() -> None:
    assert seed_everything(3)["deterministic"]["requested"] is False


# --- hash state -----------------------------------------------------------------------------


def test_hash_state_reports_pythonhashseed_zero_as_not_randomized() -> None:
    out = _run_child(
        "import json\n"
        "from reprokit import seed_everything\n"
        "state = seed_everything(0)\n"
        "print(json.dumps({k: state[k] for k in ('pythonhashseed', 'hash_randomization')}))\n",
        PYTHONHASHSEED="0",
    )
    assert out == {"pythonhashseed": "0", "hash_randomization": False}


def test_hash_state_reports_fixed_nonzero_pythonhashseed() -> None:
    out = _run_child(
        "import json\n"
        "from reprokit._capture.seeds import hash_state\n"
        "print(json.dumps(hash_state()))\n",
        PYTHONHASHSEED="123",
    )
    assert out == {"pythonhashseed": "123", "hash_randomization": True}


# --- derive_seed ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "seed", "expected"),
    [("data", 0, 2776203564), ("model", 0, 4158063401), ("data", 1, 2190012980)],
)
def test_derive_seed_golden_value(name: str, seed: int, expected: int) -> None:
    assert derive_seed(name, seed) == expected


def test_derive_seed_is_stable_across_processes_and_hash_seeds() -> None:
    code = (
        "import json\n"
        "from reprokit import derive_seed\n"
        "print(json.dumps([derive_seed(n, 5) for n in ('data', 'model', 'aug')]))\n"
    )
    first = _run_child(code, PYTHONHASHSEED="1")
    second = _run_child(code, PYTHONHASHSEED="4242")
    assert first == second
    assert first == [derive_seed(n, 5) for n in ("data", "model", "aug")]


def test_derive_seed_differs_for_different_names() -> None:
    names = [f"part{i}" for i in range(100)]
    assert len({derive_seed(n, 11) for n in names}) == len(names)


def test_derive_seed_differs_for_different_master_seeds() -> None:
    assert derive_seed("data", 0) != derive_seed("data", 1)


def test_derive_seed_stays_in_seed_range() -> None:
    for i in range(500):
        assert 0 <= derive_seed(f"n{i}", MAX_SEED) <= 2**32 - 1


def test_derive_seed_without_seed_after_seed_everything_uses_that_seed() -> None:
    seed_everything(99)
    assert derive_seed("data") == derive_seed("data", 99)


def test_derive_seed_without_run_or_seed_raises() -> None:
    out = _run_child(
        "import json\n"
        "from reprokit import ReprokitError, derive_seed\n"
        "try:\n"
        "    derive_seed('data')\n"
        "except ReprokitError as exc:\n"
        "    print(json.dumps(str(exc)))\n"
        "else:\n"
        "    print(json.dumps(None))\n"
    )
    assert out is not None
    assert "master seed" in out


# --- check_seed -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "shown"),
    [(-1, "-1"), (2**32, "4294967296"), (1.5, "1.5"), ("3", "'3'")],
)
def test_check_seed_rejects_bad_value_naming_it(bad: object, shown: str) -> None:
    with pytest.raises(ReprokitError) as info:
        check_seed(bad)
    assert shown in str(info.value)


def test_check_seed_rejects_true() -> None:
    try:
        accepted = check_seed(True)
    except ReprokitError as exc:
        assert "True" in str(exc)
    else:
        raise AssertionError(f"check_seed(True) returned {accepted!r}")


def test_check_seed_accepts_the_range_ends() -> None:
    assert check_seed(0) == 0
    assert check_seed(2**32 - 1) == 2**32 - 1


def test_check_seed_accepts_numpy_int64_as_python_int() -> None:
    value = check_seed(np.int64(12))
    assert type(value) is int
    assert value == 12


def test_check_seed_rejects_numpy_int_out_of_range() -> None:
    with pytest.raises(ReprokitError, match="4294967296"):
        check_seed(np.uint64(2**32))


# --- draw_seed ------------------------------------------------------------------------------


def test_draw_seed_is_in_range() -> None:
    for _ in range(200):
        assert 0 <= draw_seed() <= MAX_SEED


def test_two_drawn_seeds_differ() -> None:
    assert draw_seed() != draw_seed()
