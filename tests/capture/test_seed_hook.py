"""The import hook: libraries imported after seed_everything are seeded as their import ends.

Every test runs in a fresh interpreter: the hook, the late-seeding record and ``sys.modules``
are process state, and the test process has numpy imported already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

NUMPY_RAND_AFTER_SEED_123 = 0.6964691855978616  # np.random.seed(123); np.random.rand()
NUMPY_RAND_AFTER_SEED_7 = 0.07630828937395717  # np.random.seed(7); np.random.rand()

# A stand-in Keras with the one call reprokit makes; like the real one, it reseeds `random`.
FAKE_KERAS = (
    "import random, types\n"
    "__version__ = '0.0-test'\n"
    "seeds = []\n"
    "def _set_random_seed(seed):\n"
    "    seeds.append(seed)\n"
    "    random.seed(seed)\n"
    "utils = types.SimpleNamespace(set_random_seed=_set_random_seed)\n"
)


def _child(code: str, path: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("REPROKIT_")}
    full_env.update(env)
    full_env["PYTHONPATH"] = os.pathsep.join([str(path)] * (path is not None) + [str(REPO_ROOT)])
    return subprocess.run(
        [sys.executable, "-c", code],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _run_child(code: str, path: Path | None = None, **env: str) -> dict:
    """Run ``code`` in a fresh interpreter and return the JSON it prints on its last line."""
    done = _child(code, path, **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _package(root: Path, name: str, init: str) -> Path:
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text(init)
    return root


def test_numpy_imported_after_seed_everything_gets_the_seed() -> None:
    out = _run_child(
        "import json, sys\n"
        "from reprokit._seeding import late_seeded, seed_everything\n"
        "seed_everything(123)\n"
        "assert 'numpy' not in sys.modules\n"
        "import numpy as np\n"
        "print(json.dumps({'rand': np.random.rand(), 'late': late_seeded(),"
        " 'version': np.__version__}))\n"
    )
    assert out["rand"] == NUMPY_RAND_AFTER_SEED_123
    assert out["late"] == {"numpy": {"seed": 123, "version": out["version"], "at": "import"}}


def test_numpy_loaded_before_but_its_rng_unused_is_seeded_when_the_rng_loads() -> None:
    # numpy 2 loads numpy.random on first use. A program that imported numpy (PyTorch does)
    # but not its RNG is not made to load it by seed_everything: the hook seeds it when the
    # program first uses it, with the same numbers as seeding it up front.
    out = _run_child(
        "import json, sys\n"
        "import numpy as np\n"
        "from reprokit._seeding import late_seeded, seed_everything\n"
        "lazy = 'numpy.random' not in sys.modules\n"
        "state = seed_everything(123)\n"
        "loaded_by_seeding = 'numpy.random' in sys.modules\n"
        "print(json.dumps({'lazy': lazy, 'loaded_by_seeding': loaded_by_seeding,"
        " 'seeded': sorted(state['seeded']), 'rand': np.random.rand(),"
        " 'late': sorted(late_seeded())}))\n"
    )
    if not out["lazy"]:
        pytest.skip("this numpy loads numpy.random with numpy itself")
    assert out["loaded_by_seeding"] is False
    assert out["seeded"] == ["python"]
    assert out["rand"] == NUMPY_RAND_AFTER_SEED_123
    assert out["late"] == ["numpy"]


def test_the_hook_uses_the_newest_seed() -> None:
    out = _run_child(
        "import json\n"
        "from reprokit._seeding import late_seeded, seed_everything\n"
        "seed_everything(123)\n"
        "seed_everything(7)\n"
        "import numpy as np\n"
        "print(json.dumps({'rand': np.random.rand(), 'seed': late_seeded()['numpy']['seed']}))\n"
    )
    assert out == {"rand": NUMPY_RAND_AFTER_SEED_7, "seed": 7}


def test_reset_then_reseed_without_new_imports_records_nothing() -> None:
    out = _run_child(
        "import json\n"
        "from reprokit._seeding import late_seeded, reset_late_seeded, seed_everything\n"
        "seed_everything(123)\n"
        "import numpy\n"
        "numpy.random.rand()\n"
        "before = sorted(late_seeded())\n"
        "reset_late_seeded()\n"
        "seed_everything(7)\n"
        "import numpy, json, decimal\n"
        "print(json.dumps({'before': before, 'after': late_seeded()}))\n"
    )
    assert out == {"before": ["numpy"], "after": {}}


def test_unrelated_imports_are_not_recorded() -> None:
    out = _run_child(
        "import json, sys\n"
        "from reprokit._seeding import late_seeded, seed_everything\n"
        "seed_everything(1)\n"
        "import decimal, fractions, email.parser\n"
        "print(json.dumps(late_seeded()))\n"
    )
    assert out == {}


def test_the_hook_is_installed_once_and_first() -> None:
    out = _run_child(
        "import json, sys\n"
        "from reprokit._seeding import _SeedOnImport, seed_everything\n"
        "for s in (1, 2, 3):\n"
        "    seed_everything(s)\n"
        "hooks = [i for i, f in enumerate(sys.meta_path) if isinstance(f, _SeedOnImport)]\n"
        "print(json.dumps(hooks))\n"
    )
    assert out == [0]


def test_the_imported_module_keeps_its_real_loader() -> None:
    out = _run_child(
        "import json\n"
        "from reprokit._seeding import seed_everything\n"
        "seed_everything(1)\n"
        "import numpy, numpy.random\n"
        "print(json.dumps([type(m.__loader__).__name__ for m in (numpy, numpy.random)]"
        " + [type(m.__spec__.loader).__name__ for m in (numpy, numpy.random)]))\n"
    )
    assert out == ["SourceFileLoader"] * 4


def test_an_import_error_in_a_watched_package_is_raised_unchanged(tmp_path: Path) -> None:
    root = _package(tmp_path, "cupy", "raise ImportError('fake cupy: no CUDA toolkit')\n")
    code = (
        "import json, sys\n"
        "from reprokit._seeding import late_seeded, seed_everything\n"
        "if sys.argv[-1:] != ['plain']:\n"
        "    seed_everything(1)\n"
        "try:\n"
        "    import cupy\n"
        "except ImportError as exc:\n"
        "    print(json.dumps([type(exc).__name__, str(exc), late_seeded(),"
        " 'cupy' in sys.modules]))\n"
    )
    hooked = _run_child(code, root)
    assert hooked == ["ImportError", "fake cupy: no CUDA toolkit", {}, False]


def test_a_missing_dependency_of_a_watched_package_fails_as_without_the_hook(
    tmp_path: Path,
) -> None:
    root = _package(tmp_path, "keras", "import reprokit_test_no_such_module\n")
    code = (
        "import json\n"
        "from reprokit._seeding import seed_everything\n"
        "{seed}"
        "try:\n"
        "    import keras\n"
        "except ImportError as exc:\n"
        "    print(json.dumps([type(exc).__name__, str(exc), exc.name]))\n"
    )
    with_hook = _run_child(code.format(seed="seed_everything(1)\n"), root)
    without = _run_child(code.format(seed=""), root)
    assert with_hook == without
    assert with_hook[0] == "ModuleNotFoundError"
    assert with_hook[2] == "reprokit_test_no_such_module"


def test_a_missing_watched_package_fails_as_without_the_hook(tmp_path: Path) -> None:
    # An empty folder first on the path, so a real cupy does not count; this one has none.
    code = (
        "import json, sys, importlib.util\n"
        "from reprokit._seeding import seed_everything\n"
        "if importlib.util.find_spec('cupy') is not None:\n"
        "    print(json.dumps('installed'))\n"
        "    raise SystemExit\n"
        "seed_everything(1)\n"
        "try:\n"
        "    import cupy\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(json.dumps([str(exc), exc.name]))\n"
    )
    out = _run_child(code, tmp_path)
    if out == "installed":
        pytest.skip("cupy is installed here")
    assert out == ["No module named 'cupy'", "cupy"]


def test_a_seeding_failure_never_breaks_the_import(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        "keras",
        "import types\n"
        "def _fail(seed):\n"
        "    raise RuntimeError('no backend configured')\n"
        "utils = types.SimpleNamespace(set_random_seed=_fail)\n"
        "READY = True\n",
    )
    out = _run_child(
        "import json\n"
        "from reprokit._seeding import late_seeded, seed_everything\n"
        "seed_everything(1)\n"
        "import keras\n"
        "print(json.dumps({'ready': keras.READY, 'late': late_seeded()}))\n",
        root,
    )
    assert out["ready"] is True
    assert out["late"]["keras"]["at"] == "import"
    assert "RuntimeError: no backend configured" in out["late"]["keras"]["error"]


def test_keras_imported_late_is_seeded_without_rewinding_random(tmp_path: Path) -> None:
    root = _package(tmp_path, "keras", FAKE_KERAS)
    out = _run_child(
        "import json, random\n"
        "from reprokit._seeding import late_seeded, seed_everything\n"
        "seed_everything(3)\n"
        "first = random.random()\n"
        "import keras\n"
        "second = random.random()\n"
        "random.seed(3)\n"
        "expected = [random.random(), random.random()]\n"
        "print(json.dumps({'got': [first, second], 'expected': expected,"
        " 'keras_seeds': keras.seeds, 'late': late_seeded()}))\n",
        root,
    )
    assert out["got"] == out["expected"]
    assert out["keras_seeds"] == [3]
    assert out["late"] == {"keras": {"seed": 3, "version": "0.0-test", "at": "import"}}


def test_keras_already_imported_is_seeded_by_seed_everything(tmp_path: Path) -> None:
    root = _package(tmp_path, "keras", FAKE_KERAS)
    out = _run_child(
        "import json\n"
        "import keras\n"
        "from reprokit._seeding import seed_everything\n"
        "state = seed_everything(9)\n"
        "print(json.dumps({'seeded': state['seeded']['keras'], 'calls': keras.seeds}))\n",
        root,
    )
    assert out == {"seeded": {"seed": 9, "version": "0.0-test"}, "calls": [9]}


def test_nothing_is_hooked_before_seed_everything() -> None:
    out = _run_child(
        "import json, sys\n"
        "from reprokit._seeding import _SeedOnImport, late_seeded\n"
        "import numpy\n"
        "print(json.dumps([any(isinstance(f, _SeedOnImport) for f in sys.meta_path),"
        " late_seeded()]))\n"
    )
    assert out == [False, {}]


def _torch_child(code: str) -> dict:
    pytest.importorskip("torch")
    return _run_child(code)


@pytest.mark.torch
def test_deterministic_mode_loading_numpys_rng_under_torch_still_seeds_it() -> None:
    # torch imports numpy without its RNG; torch.use_deterministic_algorithms then loads parts
    # of torch that load numpy.random, inside seed_everything: it is seeded there all the same.
    out = _torch_child(
        "import json, torch, numpy as np\n"
        "from reprokit._seeding import seed_everything\n"
        "seeded = seed_everything(123, deterministic=True)['seeded']\n"
        "print(json.dumps([sorted(seeded), np.random.rand()]))\n"
    )
    assert {"numpy", "torch"} <= set(out[0]) and out[1] == NUMPY_RAND_AFTER_SEED_123


@pytest.mark.torch
def test_torch_imported_after_seed_everything_gets_the_seed() -> None:
    out = _torch_child(
        "import json\n"
        "from reprokit._seeding import late_seeded, seed_everything\n"
        "seed_everything(5, deterministic=True)\n"
        "import torch\n"
        "got = torch.rand(3).tolist()\n"
        "torch.manual_seed(5)\n"
        "print(json.dumps({'got': got, 'expected': torch.rand(3).tolist(),"
        " 'late': late_seeded()['torch'],"
        " 'det': torch.are_deterministic_algorithms_enabled()}))\n"
    )
    assert out["got"] == out["expected"]
    assert out["late"]["seed"] == 5
    assert out["late"]["at"] == "import"
    assert out["late"]["deterministic"] is True
    assert out["det"] is True
