"""Names and formats a folder store and a remote store share: the manifest's file name, the
objects a manifest relies on, and the ledger's line format and hash chain."""

from __future__ import annotations

import os
import re

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from reprokit._model.manifest import Manifest

MANIFEST = "manifest.yaml"
GENESIS = "0" * 64

_OBJECT = re.compile(r"[0-9a-f]{64}\Z")  # an object's name: its sha256


def chain(prev: str, run_id: str, digest: str) -> str:
    """The ledger's chain value after ``prev`` for run ``run_id`` sealed with ``digest``."""
    import hashlib

    return hashlib.sha256(f"{prev} {run_id} {digest}".encode()).hexdigest()


def ledger_line(seq: int, run_id: str, digest: str, prev: str) -> str:
    """One ledger line (newline included): ``seq run_id manifest_sha256 chain``."""
    return f"{seq} {run_id} {digest} {chain(prev, run_id, digest)}\n"


def parse_ledger_line(line: str) -> tuple[int, str, str, str] | None:
    """(seq, run id, manifest sha256, chain), or None for a malformed line."""
    parts = line.split()
    if len(parts) != 4 or not parts[0].isdigit():
        return None
    return int(parts[0]), parts[1], parts[2], parts[3]


def object_key(digest: str) -> str:
    """Where the object named ``digest`` lives, relative to the store's root."""
    return f"objects/{digest[:2]}/{digest}"


def referenced_objects(manifest: Manifest) -> list[str]:
    """The store objects a manifest relies on (source patch, snapshot files)."""
    code = manifest.code
    found = []
    patch = code.get("patch")
    if isinstance(patch, dict) and isinstance(patch.get("sha256"), str):
        found.append(patch["sha256"])
    files = code.get("files")
    if isinstance(files, dict):
        found.extend(v for v in files.values() if isinstance(v, str))
    # A folder input's digest names its listing (one "sha256 size path" line per file).
    inputs = manifest.get("inputs")
    for rec in (inputs.get("declared") or []) if isinstance(inputs, dict) else []:
        digest = rec.get("sha256") if isinstance(rec, dict) else None
        if rec.get("kind") == "folder" and isinstance(digest, str) and _OBJECT.match(digest):
            found.append(digest)
    return sorted(set(found))


def files_under(folder: str | os.PathLike[str]) -> list[str]:
    """Every file below ``folder`` (strings; sorted), as ``os.walk`` finds them: a link to a
    folder is neither followed nor listed, a folder that cannot be read is skipped."""
    out: list[str] = []
    todo = [os.fspath(folder)]
    while todo:
        try:
            with os.scandir(todo.pop()) as it:
                for entry in it:
                    if not entry.is_dir():
                        out.append(entry.path)
                    elif not entry.is_symlink():
                        todo.append(entry.path)
        except OSError:
            continue
    return sorted(out)
