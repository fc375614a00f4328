"""The inputs of archived runs: listed with digest, size and source; packed when asked.

Packed inputs live under ``inputs/<recorded path>`` in the archive — the layout of a data root —
so ``verify --replay`` finds them there; inputs that are not packed (too large, secret, changed
since the recording, not asked for) are listed in REPRODUCE.md with what a reviewer must fetch,
and found below the data root the reviewer names.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from reprokit._model.digest import sha256_file
from reprokit._model.errors import TamperedError
from reprokit._model.manifest import Manifest
from reprokit._record.inputs import parse_listing
from reprokit._store.store import Store

DEFAULT_MAX_INPUT = 100 * 1024 * 1024
INPUTS_DIR = "inputs"


def input_rows(runs: list[Manifest]) -> list[dict[str, Any]]:
    """One row per distinct input of ``runs`` outside their source trees (path, digest)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for m in runs:
        for rec in m.inputs:
            if rec.get("in_tree"):
                continue
            key = (str(rec["path"]), str(rec.get("sha256") or ""))
            row = rows.setdefault(
                key,
                {
                    "path": str(rec["path"]),
                    "kind": rec.get("kind", "file"),
                    "size": rec.get("size"),
                    "files": rec.get("files"),
                    "sha256": rec.get("sha256"),
                    "source": rec.get("source"),
                    "secret": bool(rec.get("secret")),
                    "runs": [],
                    "included": False,
                    "why": None,
                },
            )
            row["runs"].append(m.id)
    return [rows[k] for k in sorted(rows)]


def packable(path: str) -> bool:
    """Whether an input recorded at ``path`` can be packed under inputs/ (relative, no ..)."""
    parts = path.split("/")
    return not path.startswith("/") and ".." not in parts and "" not in parts


def pack_inputs(
    rows: list[dict[str, Any]],
    store: Store,
    data_root: str,
    add_file: Callable[..., Any],
    max_size: int,
) -> None:
    """Copy each input whose bytes still match its record, up to ``max_size`` per input; say
    in ``row["why"]`` why any other is not included."""
    packed: dict[str, str] = {}
    for row in rows:
        path, digest = row["path"], row["sha256"]
        if row["secret"]:
            row["why"] = "a secret file"
        elif not digest:
            row["why"] = "listed by stat only when recorded"
        elif not packable(path):
            row["why"] = "outside the recorded repository"
        elif path in packed and packed[path] != digest:
            row["why"] = "another run's version of this path is included"
        elif isinstance(row["size"], int) and row["size"] > max_size:
            row["why"] = f"larger than {max_size:,} bytes"
        else:
            found = os.path.join(data_root, *path.split("/"))
            members = _members(row, store, found)
            if members is None:
                row["why"] = "changed or gone since it was recorded"
                continue
            if path not in packed:
                for rel, full in members:
                    add_file(f"{INPUTS_DIR}/{rel}", full)
                packed[path] = digest
            row["included"] = True


def _members(row: dict[str, Any], store: Store, found: str) -> list[tuple[str, str]] | None:
    """(archive-relative path, file) pairs of an input whose bytes match its record."""
    if row["kind"] != "folder":
        if os.path.isfile(found) and sha256_file(found)[0] == row["sha256"]:
            return [(row["path"], found)]
        return None
    if not os.path.isdir(found) or not store.has_object(row["sha256"]):
        return None
    listing = parse_listing(store.object_path(row["sha256"]).read_bytes())
    out = []
    for rel, (digest, _size) in sorted(listing.items()):
        full = os.path.join(found, *rel.split("/"))
        if digest == "secret":
            continue
        if not os.path.isfile(full) or sha256_file(full)[0] != digest:
            return None
        out.append((f"{row['path']}/{rel}", full))
    return out


def check_archived_inputs(top: str, runs: list[Manifest], store: Store) -> None:
    """Every file under ``inputs/`` is an input some run recorded, with the recorded digest."""
    folder = os.path.join(top, INPUTS_DIR)
    if not os.path.isdir(folder):
        return
    expected: dict[str, set[str]] = {}
    for m in runs:
        for rec in m.inputs:
            digest = rec.get("sha256")
            if not digest:
                continue
            path = str(rec["path"])
            if rec.get("kind") == "folder" and store.has_object(digest):
                listing = parse_listing(store.object_path(digest).read_bytes())
                for rel, (d, _size) in listing.items():
                    expected.setdefault(f"{path}/{rel}", set()).add(d)
            else:
                expected.setdefault(path, set()).add(digest)
    for dirpath, _dirs, files in os.walk(folder):
        for n in files:
            full = os.path.join(dirpath, n)
            rel = os.path.relpath(full, folder).replace(os.sep, "/")
            member = f"{INPUTS_DIR}/{rel}"
            if rel not in expected:
                raise TamperedError(
                    f"{member} is not an input any archived run recorded", None, member
                )
            if sha256_file(full)[0] not in expected[rel]:
                raise TamperedError(f"{member} does not match the recorded input", None, member)
