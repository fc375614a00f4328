"""The wheel of the reprokit that is running, for archives to carry.

A reviewer installs reprokit from the archive itself, never from a package index by a name
someone else could own. Two ways to get the wheel:

- running from a source tree (a checkout, an editable install): ``pip wheel --no-deps`` of it,
  cached by a digest of the files that go into the wheel, so a second archive costs nothing;
- an installed distribution: its installed files, packed again as the wheel they came from
  (the installer's own files -- RECORD, INSTALLER, REQUESTED, direct_url.json, bytecode --
  left out, RECORD written anew).

Both give the same bytes for the same reprokit, so archiving twice stays byte-identical.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from reprokit._model.version import __version__
from reprokit._verbs.templates import PACKAGE_DIR

DIST_NAME = "reprokit-verdict"  # the distribution; the import name is reprokit
WHEEL_STEM = DIST_NAME.replace("-", "_")
_INSTALLER_FILES = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


class OwnWheel:
    """A wheel file of the running reprokit and how it was obtained (or why there is none)."""

    def __init__(self, path: Path | None, how: str) -> None:
        self.path = path
        self.how = how

    @property
    def name(self) -> str | None:
        return self.path.name if self.path is not None else None


def source_tree() -> Path | None:
    """The source tree the running reprokit was imported from, when it runs from one."""
    here = PACKAGE_DIR.parent
    if (here / "pyproject.toml").is_file() and (here / "reprokit").is_dir():
        return here
    return None


def _source_digest(root: Path) -> str:
    """A digest of every file that goes into the wheel built from ``root``."""
    h = hashlib.sha256()
    paths = [root / "pyproject.toml", root / "README.md"]
    for folder in ("reprokit", "templates"):
        for dirpath, dirs, names in os.walk(root / folder):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            paths.extend(Path(dirpath, n) for n in sorted(names) if not n.endswith(".pyc"))
    for p in paths:
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + b"\0")
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:24]


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "reprokit", "wheels")


def _built(root: Path, scratch: str) -> OwnWheel:
    key = _source_digest(root)
    cached = _cache_dir() / key
    found = sorted(cached.glob(f"{WHEEL_STEM}-*.whl")) if cached.is_dir() else []
    if found:
        return OwnWheel(found[0], f"built from the source tree {root} (cached)")
    out = tempfile.mkdtemp(prefix="wheel-", dir=scratch)
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, str(root)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wheels = sorted(Path(out).glob(f"{WHEEL_STEM}-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stdout or "").strip().splitlines()[-1:] or ["no wheel written"]
        return OwnWheel(None, f"pip wheel of {root} failed: {last[0]}")
    wheel = wheels[0]
    try:
        cached.mkdir(parents=True, exist_ok=True)
        tmp = cached / f".{wheel.name}.{os.getpid()}"
        shutil.copyfile(wheel, tmp)
        os.replace(tmp, cached / wheel.name)
        wheel = cached / wheel.name
    except OSError:
        pass  # an unwritable cache: use the one in scratch
    return OwnWheel(wheel, f"built from the source tree {root}")


def _repacked(scratch: str) -> OwnWheel:
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution(DIST_NAME)
    except importlib.metadata.PackageNotFoundError:
        return OwnWheel(None, f"the {DIST_NAME} distribution is not installed")
    files = list(dist.files or [])
    if not files:
        return OwnWheel(None, f"{DIST_NAME} lists no installed files")
    site = Path(str(dist.locate_file("")))
    if not (site / "reprokit" / "__init__.py").is_file() or (
        (site / "reprokit").resolve() != PACKAGE_DIR.resolve()
    ):
        return OwnWheel(None, f"the installed {DIST_NAME} is not the reprokit that is running")
    members: list[tuple[str, bytes]] = []
    for f in files:
        rel = f.as_posix()
        parts = rel.split("/")
        if rel.startswith("..") or "__pycache__" in parts or rel.endswith(".pyc"):
            continue  # console scripts and bytecode are the installer's
        if parts[0].endswith(".dist-info") and parts[-1] in _INSTALLER_FILES:
            continue
        try:
            members.append((rel, (site / rel).read_bytes()))
        except OSError as exc:
            return OwnWheel(None, f"cannot read the installed {rel}: {exc.strerror}")
    info = next(
        (r.split("/")[0] for r, _ in members if r.split("/")[0].endswith(".dist-info")), None
    )
    if info is None:
        return OwnWheel(None, f"the installed {DIST_NAME} has no .dist-info")
    record = []
    for rel, data in sorted(members):
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{rel},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    members.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))
    path = Path(scratch, f"{WHEEL_STEM}-{dist.version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        # dist-info last, as wheels are written
        for rel, data in sorted(members, key=lambda m: (m[0].startswith(info), m[0])):
            zi = zipfile.ZipInfo(rel, _FIXED_TIME)
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zi, data)
    return OwnWheel(path, f"packed from the installed {DIST_NAME} {dist.version}")


def own_wheel(scratch: str) -> OwnWheel:
    """The running reprokit as a wheel file (written under ``scratch`` or a cache)."""
    root = source_tree()
    if root is not None:
        return _built(root, scratch)
    return _repacked(scratch)


def is_reprokit(name: str) -> bool:
    """Whether a distribution name, however spelled, is reprokit (this one or its old name)."""
    return name.lower().replace("_", "-").replace(".", "-") in ("reprokit", DIST_NAME)


def requirement_name() -> str:
    """``reprokit-verdict==X``: the running release, by the distribution's own name."""
    return f"{DIST_NAME}=={__version__}"
