"""What a process renders once (environment, hardware) and when it renders them again: each
invalidation is a real process that records runs, changes one thing between them, and reads the
manifests back."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from reprokit._store.store import Store
from tests.conftest import clean_env, make_repo, run_python

HEAD = """
import json, os, sys
import reprokit
from reprokit._record.process import CAPTURE

def record(name):
    with reprokit.run(name) as run:
        pass
    return run.id

ids = {}
"""


def manifests(repo: Path, out: str) -> dict[str, object]:
    store = Store(repo / ".reprokit")
    return {name: store.load(rid) for name, rid in json.loads(out.splitlines()[-1]).items()}


def record(tmp_path: Path, body: str, **env: str) -> tuple[Path, dict[str, object], str]:
    repo = make_repo(tmp_path / "repo")
    proc = run_python(repo, HEAD + body + "\nprint(json.dumps(ids))\n", env=clean_env(**env))
    assert proc.returncode == 0, proc.stderr
    return repo, manifests(repo, proc.stdout), proc.stdout


def test_environment_and_hardware_are_rendered_once_while_nothing_changes(tmp_path):
    _, ms, out = record(tmp_path, """
ids["a"] = record("a")
env, hw = CAPTURE.env_text, CAPTURE.hardware_text
ids["b"] = record("b")
print("same", CAPTURE.env_text is env, CAPTURE.hardware_text is hw)
""")  # fmt: skip
    assert "same True True" in out
    assert ms["a"].environment == ms["b"].environment
    assert ms["a"].hardware == ms["b"].hardware


def test_a_numerics_variable_set_between_runs_is_in_the_next_manifest(tmp_path):
    _, ms, _ = record(tmp_path, """
ids["a"] = record("a")
os.environ["OMP_NUM_THREADS"] = "3"
ids["b"] = record("b")
del os.environ["OMP_NUM_THREADS"]
ids["c"] = record("c")
""")  # fmt: skip
    assert "OMP_NUM_THREADS" not in ms["a"].environment["variables"]
    assert ms["b"].environment["variables"]["OMP_NUM_THREADS"] == "3"
    assert "OMP_NUM_THREADS" not in ms["c"].environment["variables"]


def test_a_protocol_variable_set_between_runs_is_read_by_the_next_run(tmp_path):
    # What the parent told the process (REPROKIT_*) is read once while os.environ stays as it
    # was: setting or removing a variable between runs is seen by the next run.
    _, ms, out = record(tmp_path, """
from reprokit._model.protocol import ChildProtocol
ids["a"] = record("a")
os.environ["REPROKIT_SEED"] = "4242"
ids["b"] = record("b")
told = ChildProtocol.from_env()
told.seed = 7  # a copy: the next reader still sees the environment's value
print("seed", ChildProtocol.from_env().seed)
del os.environ["REPROKIT_SEED"]
ids["c"] = record("c")
""")  # fmt: skip
    assert "seed 4242" in out
    assert ms["b"].seeds["seed"] == 4242
    assert ms["a"].seeds["seed"] != 4242 and ms["c"].seeds["seed"] != 4242


def tiny_wheel(folder: Path) -> Path:
    """A wheel of distribution ``tinydist`` 1.0 (module ``tinymod``), made by hand."""
    files = {
        "tinymod/__init__.py": b"VALUE = 1\n",
        "tinydist-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinydist\nVersion: 1.0\n",
        "tinydist-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = ""
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{name},sha256={digest},{len(data)}\n"
    record += "tinydist-1.0.dist-info/RECORD,,\n"
    wheel = folder / "tinydist-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr("tinydist-1.0.dist-info/RECORD", record)
    return wheel


@pytest.mark.skipif(importlib.util.find_spec("pip") is None, reason="pip is not installed")
def test_installing_and_removing_a_distribution_between_runs_changes_the_next_manifest(tmp_path):
    """pip installs into a folder on sys.path between runs; removing it is an uninstall."""
    wheel = tiny_wheel(tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    _, ms, _ = record(tmp_path, f"""
import shutil, subprocess
sys.path.append({str(site)!r})
ids["a"] = record("a")
subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                "--target", {str(site)!r}, {str(wheel)!r}], check=True)
ids["b"] = record("b")
import tinymod
ids["c"] = record("c")
for name in ("tinydist-1.0.dist-info", "tinymod"):
    shutil.rmtree(os.path.join({str(site)!r}, name))
ids["d"] = record("d")
""")  # fmt: skip
    assert "tinydist" not in ms["a"].environment["packages"]
    assert ms["b"].environment["packages"]["tinydist"] == "1.0"
    assert "tinydist" not in ms["b"].environment["imported"]
    assert "tinydist" in ms["c"].environment["imported"]
    assert "tinydist" not in ms["d"].environment["packages"]


def test_a_folder_added_to_sys_path_between_runs_is_scanned(tmp_path):
    site = tmp_path / "site"
    (site / "otherdist-2.0.dist-info").mkdir(parents=True)
    (site / "otherdist-2.0.dist-info" / "METADATA").write_text("Name: otherdist\nVersion: 2.0\n")
    _, ms, _ = record(tmp_path, f"""
ids["a"] = record("a")
sys.path.insert(0, {str(site)!r})
ids["b"] = record("b")
""")  # fmt: skip
    assert "otherdist" not in ms["a"].environment["packages"]
    assert ms["b"].environment["packages"]["otherdist"] == "2.0"


def test_a_distribution_imported_between_runs_is_in_the_next_manifest(tmp_path):
    _, ms, _ = record(tmp_path, """
ids["a"] = record("a")
import idna
ids["b"] = record("b")
""")  # fmt: skip
    assert "idna" not in ms["a"].environment["imported"]
    assert "idna" in ms["b"].environment["imported"]


@pytest.mark.skipif(importlib.util.find_spec("numpy") is None, reason="numpy is not installed")
def test_numpy_imported_between_runs_adds_blas_to_the_next_hardware_section(tmp_path):
    _, ms, _ = record(tmp_path, """
ids["a"] = record("a")
import numpy
ids["b"] = record("b")
""")  # fmt: skip
    assert "blas" not in ms["a"].hardware
    assert "blas" in ms["b"].hardware


@pytest.mark.torch
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_a_torch_setting_changed_between_runs_is_in_the_next_hardware_section(tmp_path):
    _, ms, _ = record(tmp_path, """
import torch
torch.backends.cudnn.benchmark = False
ids["a"] = record("a")
torch.backends.cudnn.benchmark = True
torch.set_num_threads(1)
ids["b"] = record("b")
""")  # fmt: skip
    assert ms["a"].hardware["torch"]["cudnn_benchmark"] is False
    assert ms["b"].hardware["torch"]["cudnn_benchmark"] is True
    assert ms["b"].hardware["torch"]["num_threads"] == 1


# -- what each distribution provides, cached across processes ----------------------------------

IMPORTED = """
import json, sys
sys.path.insert(0, sys.argv[1])
import shared
from reprokit._capture.environment import imported_distributions
print(json.dumps(imported_distributions()))
"""


def wheel_of(folder: Path, dist: str, module: str) -> Path:
    """A wheel of distribution ``dist`` 1.0 providing top-level module ``module`` (no
    top_level.txt: what it provides is read from RECORD)."""
    files = {
        f"{module}/__init__.py": b"",
        f"{dist}-1.0.dist-info/METADATA": f"Name: {dist}\nVersion: 1.0\n".encode(),
        f"{dist}-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\n",
    }
    lines = "".join(f"{name},,\n" for name in files) + f"{dist}-1.0.dist-info/RECORD,,\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{dist}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(f"{dist}-1.0.dist-info/RECORD", lines)
    return wheel


def pip_install(site: Path, wheel: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                    "--target", str(site), str(wheel)], check=True)  # fmt: skip


def imported_in_new_process(tmp_path: Path, site: Path) -> list[str]:
    env = clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", IMPORTED, str(site)], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.skipif(importlib.util.find_spec("pip") is None, reason="pip is not installed")
def test_the_cross_process_cache_is_dropped_when_a_distribution_is_reinstalled(tmp_path):
    import shutil

    site = tmp_path / "site"
    # alpha 1.0 provides `shared`; the next process learns that from RECORD and caches it.
    pip_install(site, wheel_of(tmp_path / "w1", "alpha", "shared"))
    assert "alpha" in imported_in_new_process(tmp_path, site)
    (cache,) = (tmp_path / "cache" / "reprokit").glob("distributions-*.json")
    assert any("alpha-1.0.dist-info" in k for k in json.loads(cache.read_text()))
    # Uninstall; then alpha 1.0 comes back in a folder of the same name providing `other`, and
    # beta provides `shared`: a cache keyed on names alone would still credit alpha.
    for name in ("alpha-1.0.dist-info", "shared"):
        shutil.rmtree(site / name)
    pip_install(site, wheel_of(tmp_path / "w2", "alpha", "other"))
    pip_install(site, wheel_of(tmp_path / "w3", "beta", "shared"))
    found = imported_in_new_process(tmp_path, site)
    assert "beta" in found
    assert "alpha" not in found
