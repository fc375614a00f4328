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
from reprokit._seeding import MAX_SEED, check_seed, draw_seed, jax_key, worker_init_fn

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run_child(code: str, **env: str) -> dict:
    """Run ``code`` in a fresh interpreter and return the JSON it prints on its last line.

    CUBLAS_WORKSPACE_CONFIG, PYTHONHASHSEED and the thread variables are dropped unless given.
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("REPROKIT_")}
    for name in ("CUBLAS_WORKSPACE_CONFIG", "PYTHONHASHSEED", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        full_env.pop(name, None)
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
    assert np.random.RandomState  # numpy's RNG loaded (numpy 2 loads it on first use)
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


def test_deterministic_records_thread_settings() -> None:
    out = _run_child(
        "import json\n"
        "from reprokit import seed_everything\n"
        "print(json.dumps(seed_everything(1, deterministic=True)['deterministic']['threads']))\n",
        OMP_NUM_THREADS="3",
    )
    assert out == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": None}


def test_deterministic_without_cuda_does_not_warn() -> None:
    out = _run_child(
        "import json, warnings\n"
        "from reprokit import ReprokitWarning, seed_everything\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    seed_everything(1, deterministic=True)\n"
        "print(json.dumps([str(w.message) for w in caught"
        " if issubclass(w.category, ReprokitWarning)]))\n",
        PYTHONHASHSEED="0",
    )
    assert out == []


@pytest.mark.torch
def test_deterministic_reads_back_torch_state() -> None:
    pytest.importorskip("torch")
    out = _run_child(
        "import json, torch\n"
        "from reprokit import seed_everything\n"
        "det = seed_everything(1, deterministic=True)['deterministic']\n"
        "print(json.dumps({'det': det, 'threads': torch.get_num_threads()}))\n"
    )
    det = out["det"]
    assert det["requested"] is True
    assert det["torch"]["deterministic_algorithms"] is True
    assert det["torch"]["cudnn_deterministic"] is True
    assert det["torch"]["cudnn_benchmark"] is False
    assert det["threads"]["torch"] == out["threads"]


@pytest.mark.torch
def test_not_deterministic_reads_back_torch_off() -> None:
    pytest.importorskip("torch")
    out = _run_child(
        "import json, torch\n"
        "from reprokit import seed_everything\n"
        "print(json.dumps(seed_everything(1)['deterministic']['torch']))\n"
    )
    assert out["deterministic_algorithms"] is False


def test_jax_imported_is_recorded_as_explicit_keys() -> None:
    out = _run_child(
        "import json, sys, types\n"
        "sys.modules.setdefault('jax', types.ModuleType('jax'))\n"
        "from reprokit import seed_everything\n"
        "print(json.dumps(seed_everything(1)['seeded']['jax']))\n"
    )
    assert out == {
        "note": "explicit keys: not seedable globally",
        "key_helper": "reprokit.jax_key(name)",
    }


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
        "import json\nfrom reprokit._seeding import hash_state\nprint(json.dumps(hash_state()))\n",
        PYTHONHASHSEED="123",
    )
    assert out == {"pythonhashseed": "123", "hash_randomization": True}


_HASH_WARNINGS = (
    "import json, warnings\n"
    "from reprokit import ReprokitWarning, seed_everything\n"
    "with warnings.catch_warnings(record=True) as caught:\n"
    "    warnings.simplefilter('always')\n"
    "    seed_everything(1)\n"
    "    seed_everything(2)\n"
    "    seed_everything(3, deterministic=True)\n"
    "print(json.dumps([[str(w.message), w.filename] for w in caught"
    " if issubclass(w.category, ReprokitWarning) and 'hash' in str(w.message)]))\n"
)


def test_hash_randomization_warning_is_issued_once_per_process() -> None:
    out = _run_child(_HASH_WARNINGS)
    assert len(out) == 1
    message, filename = out[0]
    assert "hash randomization is on (PYTHONHASHSEED unset)" in message
    assert "set PYTHONHASHSEED=0" in message
    assert filename == "<string>"  # points at the caller of seed_everything


@pytest.mark.parametrize("value", ["0", "123"])
def test_hash_randomization_warning_is_not_issued_with_a_fixed_pythonhashseed(
    value: str,
) -> None:
    assert _run_child(_HASH_WARNINGS, PYTHONHASHSEED=value) == []


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


# --- worker_init_fn -------------------------------------------------------------------------


def test_worker_init_fn_seeds_random_and_numpy_from_the_derived_seed() -> None:
    out = _run_child(
        "import json, random\n"
        "import numpy as np\n"
        "from reprokit import seed_everything\n"
        "from reprokit._seeding import worker_init_fn\n"
        "seed_everything(5)\n"
        "worker_init_fn(2)\n"
        "print(json.dumps([random.random(), np.random.rand()]))\n"
    )
    expected_seed = derive_seed("dataloader-worker-2", 5)
    assert expected_seed == 2530923680
    random.seed(expected_seed)
    np.random.seed(expected_seed)
    assert out == [random.random(), np.random.rand()]
    assert out == [0.996628535751329, 0.9480416345085464]


def test_worker_init_fn_gives_each_worker_its_own_seed() -> None:
    out = _run_child(
        "import json, random\n"
        "from reprokit import seed_everything\n"
        "from reprokit._seeding import worker_init_fn\n"
        "seed_everything(5)\n"
        "values = []\n"
        "for worker in range(4):\n"
        "    worker_init_fn(worker)\n"
        "    values.append(random.random())\n"
        "print(json.dumps(values))\n"
    )
    assert len(set(out)) == 4


def test_worker_init_fn_without_a_master_seed_warns_and_does_not_raise() -> None:
    out = _run_child(
        "import json, warnings\n"
        "from reprokit import ReprokitWarning\n"
        "from reprokit._seeding import worker_init_fn\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    worker_init_fn(0)\n"
        "print(json.dumps([str(w.message) for w in caught"
        " if issubclass(w.category, ReprokitWarning)]))\n"
    )
    assert len(out) == 1
    assert "no master seed" in out[0]


def test_worker_init_fn_rejects_a_non_int_worker_id() -> None:
    with pytest.raises(ReprokitError, match="worker_id"):
        worker_init_fn("2")  # type: ignore[arg-type]


@pytest.mark.torch
def test_worker_init_fn_in_a_real_dataloader() -> None:
    pytest.importorskip("torch")
    out = _run_child(
        "import json, random, torch\n"
        "from torch.utils.data import DataLoader, Dataset\n"
        "from reprokit import derive_seed, seed_everything\n"
        "from reprokit._seeding import worker_init_fn\n"
        "class D(Dataset):\n"
        "    def __len__(self):\n"
        "        return 2\n"
        "    def __getitem__(self, i):\n"
        "        return torch.utils.data.get_worker_info().id, random.random()\n"
        "if __name__ == '__main__':\n"
        "    seed_everything(5)\n"
        "    loader = DataLoader(D(), batch_size=1, num_workers=2,"
        " worker_init_fn=worker_init_fn, multiprocessing_context='fork')\n"
        "    got = {int(w): float(v) for w, v in loader}\n"
        "    expected = {}\n"
        "    for w in (0, 1):\n"
        "        random.seed(derive_seed(f'dataloader-worker-{w}', 5))\n"
        "        expected[w] = random.random()\n"
        "    print(json.dumps(got == expected))\n"
    )
    assert out is True


# --- jax_key --------------------------------------------------------------------------------


def test_jax_key_is_the_prng_key_of_the_derived_seed() -> None:
    jax = pytest.importorskip("jax")
    key = jax_key("init", 5)
    assert (key == jax.random.PRNGKey(derive_seed("init", 5))).all()
    assert (jax_key(seed=5) == jax.random.PRNGKey(derive_seed("jax", 5))).all()


def test_jax_key_without_jax_names_what_is_missing() -> None:
    out = _run_child(
        "import importlib.util, json\n"
        "from reprokit import ReprokitError\n"
        "from reprokit._seeding import jax_key\n"
        "if importlib.util.find_spec('jax') is not None:\n"
        "    print(json.dumps('installed'))\n"
        "    raise SystemExit\n"
        "try:\n"
        "    jax_key('init', 5)\n"
        "except ReprokitError as exc:\n"
        "    print(json.dumps(str(exc)))\n"
    )
    if out == "installed":
        pytest.skip("jax is installed here")
    assert "jax" in out.lower()
    assert "not installed" in out
