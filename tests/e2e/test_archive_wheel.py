"""Archives carry the wheel of the reprokit that wrote them; REPRODUCE.md installs it offline.

The distribution is ``reprokit-verdict`` ("reprokit" on the public index is another project);
the import name stays ``reprokit``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import reprokit
from reprokit._verbs.wheel import DIST_NAME, WHEEL_STEM
from tests.conftest import clean_env, cli, run_python

TRAIN = """
import reprokit

@reprokit.track(seed=1)
def train(lr=0.5):
    reprokit.log_metric("loss", 1 - lr, step=0)
    return lr * 2

train()
"""


@pytest.fixture
def archived(repo: Path, tmp_path: Path) -> tuple[Path, Path]:
    proc = run_python(repo, TRAIN, script="train.py")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "paper.tar.gz"
    made = cli(repo, "archive", "latest", "-o", str(out), "--name", "paper")
    assert made.returncode == 0, made.stderr
    unpacked = tmp_path / "unpacked"
    with tarfile.open(out) as tf:
        tf.extractall(unpacked, filter="data")
    return out, unpacked / "paper"


def _wheel_of(top: Path) -> Path:
    (wheel,) = sorted((top / "wheels").glob(f"{WHEEL_STEM}-*.whl"))
    return wheel


def test_the_archive_carries_a_wheel_of_the_running_reprokit(archived) -> None:
    _, top = archived
    wheel = _wheel_of(top)
    assert wheel.name == f"{WHEEL_STEM}-{reprokit.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(f"{info}/METADATA").decode())
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
        packaged_init = zf.read("reprokit/__init__.py")
    assert meta["Name"] == DIST_NAME and meta["Version"] == reprokit.__version__
    assert "reprokit/templates/REPRODUCE.md.j2" in names
    assert "reprokit = reprokit.pytest_plugin" in entry_points
    assert packaged_init == Path(reprokit.__file__).read_bytes()
    sums = (top / "CHECKSUMS.sha256").read_text()
    assert f"  wheels/{wheel.name}\n" in sums  # covered by verify like every member


def test_reproduce_md_installs_reprokit_from_the_archive_never_by_name(archived) -> None:
    _, top = archived
    text = (top / "REPRODUCE.md").read_text()
    wheel = _wheel_of(top)
    assert f"pip install --no-index paper/wheels/{wheel.name}" in text
    assert "pip install reprokit\n" not in text
    assert "pip install reprokit " not in text


def test_the_wheel_installs_offline_and_verifies_the_archive(archived, tmp_path) -> None:
    archive, top = archived
    target = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
        + ["--target", str(target), str(_wheel_of(top))],
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    assert pip.returncode == 0, pip.stderr
    env = clean_env(PYTHONPATH=str(target))  # the installed wheel first on the path
    where = subprocess.run(
        [sys.executable, "-c", "import reprokit; print(reprokit.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert where.stdout.strip() == str(target / "reprokit" / "__init__.py")
    ok = cli(archive.parent, "verify", archive.name, env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("intact:")

    # An installed (not editable) reprokit packs its own files back into the same wheel.
    repack = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, tempfile; from reprokit._verbs.wheel import own_wheel; "
            "w = own_wheel(tempfile.mkdtemp()); print(w.path); print(w.how)",
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert repack.returncode == 0, repack.stderr
    path, how = repack.stdout.strip().splitlines()
    assert how.startswith(f"packed from the installed {DIST_NAME}")

    def contents(wheel: str | Path) -> dict[str, bytes]:
        with zipfile.ZipFile(wheel) as zf:
            return {n: zf.read(n) for n in zf.namelist() if not n.endswith("/RECORD")}

    assert contents(path) == contents(_wheel_of(top))
    assert os.path.basename(path) == _wheel_of(top).name


def test_the_lock_leaves_reprokit_to_the_wheel(archived) -> None:
    _, top = archived
    lock = (top / "requirements.lock").read_text().lower()
    assert "reprokit_verdict" not in lock and "reprokit-verdict" not in lock


def test_runs_recorded_by_another_reprokit_version_are_named() -> None:
    from reprokit._model.manifest import Manifest
    from reprokit._verbs.archive import recorded_with

    def recorded_by(name: str, version: str) -> Manifest:
        return Manifest({"schema": 1, "run": {}, "environment": {"packages": {name: version}}})

    runs = [
        recorded_by("reprokit_verdict", "0.0.9"),
        recorded_by("reprokit", "0.0.8"),
        recorded_by("reprokit-verdict", reprokit.__version__),
        recorded_by("numpy", "0.0.1"),
    ]
    assert recorded_with(runs) == ["0.0.8", "0.0.9"]
