"""What a run produced, described for the manifest: files and folders by size and sha256,
values by fingerprint (and the value itself when small and plain, or its numbers for
tolerances)."""

from __future__ import annotations

import os

from reprokit._capture.params import record_params
from reprokit._model import numbers as nums
from reprokit._model.digest import fingerprint_exact, plain_floats, sha256_stream
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


def _special(mode: int) -> str | None:
    """Why a file of this ``st_mode`` is not hashed, or None for a regular file."""
    import stat

    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "symbolic link (not followed)"
    if stat.S_ISFIFO(mode):
        return "FIFO (reading it could block)"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device or other special file"


def _hash_regular(path: str, follow: bool = False) -> tuple[str, int]:
    """sha256 and size of a regular file, opened without following a link (unless ``follow``)
    and without blocking (a FIFO swapped in after the check must not hang the user's program)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as fh:
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(0, "not a regular file")
        return sha256_stream(fh)


def describe_output(path: Path, root: Path) -> dict[str, Any]:
    """Size and sha256 of a file, or of every file in a folder, with paths relative to root.

    Never follows a link inside a folder, never opens a FIFO or a device, never raises for one
    entry: links,
    special files and unreadable files of a folder are listed under ``skipped`` with the
    reason (a top-level one is described by ``skipped`` alone). Raises OSError only when
    ``path`` itself cannot be looked at.
    """
    from pathlib import Path

    try:
        rel = path.resolve().relative_to(root.resolve()).as_posix()
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
        rel = os.fspath(path)
    import stat

    try:  # the path the user named is followed if it is a link; links inside it are not
        top = os.stat(path)
    except OSError:
        top = os.lstat(path)

    if stat.S_ISDIR(top.st_mode):
        files = []
        skipped: list[dict[str, str]] = []
        total = 0
        for dirpath, dirs, names in os.walk(path):  # never follows links to folders
            dirs.sort()
            for n in sorted(names + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]):
                f = Path(dirpath) / n
                frel = f.relative_to(path).as_posix()
                try:
                    why = _special(os.lstat(f).st_mode)
                    if why is None:
                        digest, size = _hash_regular(str(f))
                except OSError as exc:
                    why = f"unreadable: {exc.strerror or exc}"
                if why is not None:
                    skipped.append({"path": frel, "reason": why})
                    continue
                rec = {"path": frel, "size": size, "sha256": digest}
                found = numbers_in_file(f, size)  # JSON/CSV/NPY: their numbers, for tolerances
                if found is not None:
                    rec["numbers"] = found
                files.append(rec)
                total += size
        out: dict[str, Any] = {"path": rel, "kind": "folder", "size": total, "files": files}
        if skipped:
            out["skipped"] = skipped
        return out
    why = _special(top.st_mode)
    if why is None:
        try:
            digest, size = _hash_regular(os.fspath(path), follow=True)
            out = {"path": rel, "kind": "file", "size": size, "sha256": digest}
            found = numbers_in_file(path, size)
            if found is not None:
                out["numbers"] = found
            return out
        except OSError as exc:
            why = f"unreadable: {exc.strerror or exc}"
    return {"path": rel, "kind": "file", "size": None, "sha256": None, "skipped": why}


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
    out: dict[str, Any] = {"type": f"{type(value).__module__}.{type(value).__qualname__}"}
    fp, exact = safe_fingerprint(value)
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


def safe_fingerprint(value: Any) -> tuple[str | None, bool]:
    """``fingerprint_exact(value)``, or (None, False) for a value it cannot encode (nested too
    deeply, a broken container): recording never raises into the user's code."""
    try:
        return fingerprint_exact(value)
    except (Exception, RecursionError):
        return None, False


def numeric_summary(value: Any, keep: int = INLINE_CHECKPOINT) -> dict[str, Any] | None:
    """The numbers of a numeric value, for tolerances: inline when small, compressed up to
    ``keep`` numbers (see ``reprokit._model.numbers``), else summary statistics."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value.bit_length() > 63:
        return None  # beyond what YAML, JSON and float comparisons hold faithfully
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
    if isinstance(value, (list, tuple)) and len(value) > 0:
        if plain_floats(value):  # weights as plain floats: the common case
            return nums.keep(list(value), keep)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return nums.keep([float(v) for v in value], keep)
    return None
