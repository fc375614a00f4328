"""What a run produced, described for the manifest: files and folders by size and sha256,
values by fingerprint (and the value itself when small and plain, or its numbers for
tolerances)."""

from __future__ import annotations

import os

from reprokit._capture.params import record_params
from reprokit._model import numbers as nums
from reprokit._model.digest import fingerprint_exact, sha256_file
from reprokit._model.yaml import dump
from reprokit._record.file_numbers import numbers_in_file

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

SMALL_VALUE_BYTES = 4096
INLINE_CHECKPOINT = nums.INLINE  # numbers kept inline in a record, for divergence sizes


def safe_rel(rel: str) -> str:
    """``rel`` with every part that could climb out of a folder dropped."""
    from pathlib import Path

    parts = [p for p in Path(rel).parts if p not in ("..", "/", "\\") and not Path(p).anchor]
    return "/".join(parts) or "artifact"


def describe_output(path: Path, root: Path) -> dict[str, Any]:
    """Size and sha256 of a file, or of every file in a folder, with paths relative to root."""
    from pathlib import Path

    try:
        rel = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        rel = os.fspath(path)
    if path.is_dir():
        files = []
        total = 0
        for dirpath, dirs, names in os.walk(path):
            dirs.sort()
            for n in sorted(names):
                f = Path(dirpath) / n
                digest, size = sha256_file(f)
                rec = {"path": f.relative_to(path).as_posix(), "size": size, "sha256": digest}
                found = numbers_in_file(f, size)
                if found is not None:
                    rec["numbers"] = found
                files.append(rec)
                total += size
        return {"path": rel, "kind": "folder", "size": total, "files": files}
    digest, size = sha256_file(path)
    out = {"path": rel, "kind": "file", "size": size, "sha256": digest}
    found = numbers_in_file(path, size)  # JSON/CSV/NPY: their numbers, for tolerances
    if found is not None:
        out["numbers"] = found
    return out


def describe_declared(paths: list[str], base: str, cwd: str | None = None) -> list[dict[str, Any]]:
    """Each declared output described as ``describe_output`` does, relative to ``base``; a path
    given relative is found from ``cwd`` (default: ``base``). One that is missing or unreadable
    says so instead."""
    from pathlib import Path

    out: list[dict[str, Any]] = []
    for rel in paths:
        if not rel:
            continue
        path = Path(rel) if os.path.isabs(rel) else Path(cwd or base, *str(rel).split("/"))
        if not (path.exists() or path.is_symlink()):
            out.append({"path": rel, "missing": True})
            continue
        try:
            out.append(describe_output(path, Path(base)))
        except OSError as exc:
            out.append({"path": rel, "unreadable": exc.strerror or str(exc)})
    return out


def describe_value(value: Any) -> dict[str, Any]:
    """Fingerprint of a value, plus the value itself when it is small plain data."""
    fp, exact = fingerprint_exact(value)
    out: dict[str, Any] = {"type": f"{type(value).__module__}.{type(value).__qualname__}"}
    out["fingerprint"] = fp
    if not exact:
        out["exact"] = False
    plain = record_params({"v": value})
    small = not plain.problems and not plain.redacted
    if small and len(dump({"v": plain.values["v"]})) <= SMALL_VALUE_BYTES:
        out["value"] = plain.values["v"]
    summary = numeric_summary(value)
    if summary is not None and "value" not in out:
        out.update(summary)
    return out


def numeric_summary(value: Any, keep: int = INLINE_CHECKPOINT) -> dict[str, Any] | None:
    """The numbers of a numeric value, for tolerances: inline when small, compressed up to
    ``keep`` numbers (see ``reprokit._model.numbers``), else summary statistics."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return {"value": value}
    module = type(value).__module__
    if module == "numpy" or module.startswith("torch"):
        try:
            if module.startswith("torch"):
                value = value.detach().cpu()
                if not (value.is_floating_point() or value.dtype.is_signed):
                    return None
                value = value.double().numpy()
            import numpy as np

            arr = np.asarray(value)
            if arr.dtype.kind not in "iuf":
                return None
            if arr.size <= INLINE_CHECKPOINT:
                return {"values": arr.astype(float).ravel().tolist(), "shape": list(arr.shape)}
            a = arr.astype("<f8").ravel()
            out: dict[str, Any] = {
                "shape": list(arr.shape),
                "stats": {
                    "count": int(a.size),
                    "mean": float(a.mean()),
                    "std": float(a.std()),
                    "min": float(a.min()),
                    "max": float(a.max()),
                    "l2": float(np.sqrt((a * a).sum())),
                },
            }
            if a.size <= keep:
                if arr.dtype.kind == "f" and arr.dtype.itemsize <= 4:
                    out["packed"] = nums.pack_bytes(arr.astype("<f4").ravel().tobytes())
                    out["packed_dtype"] = "<f4"
                else:
                    out["packed"] = nums.pack_bytes(a.tobytes())
            return out
        except Exception:
            return None
    if (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        return nums.keep([float(v) for v in value], keep)
    return None
