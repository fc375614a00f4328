"""The numbers inside a JSON, CSV/TSV or NPY output file, so a replay can compare them with a
tolerance instead of byte for byte.

A file's record gets ``numbers``: a digest of everything in it that is not a number (its
``skeleton``: keys, strings, the row layout, an array's dtype and shape) and its numbers as
``reprokit._model.numbers`` keeps them. Two files whose skeletons match differ only in their
numbers, which a tolerance can then judge.
"""

from __future__ import annotations

import hashlib
import json
import os

from reprokit._model import numbers as kept_numbers

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

NUMERIC_SUFFIXES = (".json", ".csv", ".tsv", ".npy")
MAX_FILE_BYTES = 1024 * 1024  # larger files are not parsed (recording must stay cheap)
FILE_KEPT = 4096  # numbers kept per file in the manifest; beyond, their summary


def _number(text: str) -> float | None:
    try:
        return float(text) if "_" not in text else None
    except ValueError:
        return None


def _json_numbers(data: Any, out: list[float]) -> Any:
    """``data`` with each number replaced by a placeholder; the numbers appended to ``out``."""
    if isinstance(data, bool) or data is None or isinstance(data, str):
        return data
    if isinstance(data, (int, float)):
        out.append(float(data))
        return "\u0000#"
    if isinstance(data, list):
        return [_json_numbers(v, out) for v in data]
    if isinstance(data, dict):
        return {k: _json_numbers(data[k], out) for k in sorted(data)}
    return repr(data)


def _parse(path: Path, suffix: str) -> tuple[Any, list[float]] | None:
    values: list[float] = []
    if suffix == ".json":
        with open(path, encoding="utf-8") as fh:
            return _json_numbers(json.load(fh), values), values
    if suffix in (".csv", ".tsv"):
        import csv

        with open(path, encoding="utf-8", newline="") as fh:
            rows = []
            for row in csv.reader(fh, delimiter="\t" if suffix == ".tsv" else ","):
                shaped = []
                for cell in row:
                    x = _number(cell)
                    if x is None:
                        shaped.append(cell)
                    else:
                        values.append(x)
                        shaped.append("\u0000#")
                rows.append(shaped)
        return rows, values
    if suffix == ".npy":
        try:
            import numpy as np
        except ImportError:
            return None
        arr = np.load(path, allow_pickle=False)
        if arr.dtype.kind not in "iuf":
            return None
        values = arr.astype("<f8").ravel().tolist()
        return {"dtype": arr.dtype.str, "shape": list(arr.shape)}, values
    return None


def numbers_in_file(path: Path, size: int) -> dict[str, Any] | None:
    """The ``numbers`` record of a numeric output file, or None for other files.

    Never raises: a file that does not parse is compared byte for byte, as before.
    """
    suffix = os.path.splitext(path.name)[1].lower()
    if suffix not in NUMERIC_SUFFIXES:
        return None
    if size > MAX_FILE_BYTES:
        return {"skipped": f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MB"}
    try:
        parsed = _parse(path, suffix)
    except Exception:
        return None
    if parsed is None:
        return None
    skeleton, values = parsed
    if not values:
        return None
    text = json.dumps(skeleton, sort_keys=True, separators=(",", ":"), default=repr)
    out: dict[str, Any] = {"skeleton": hashlib.sha256(text.encode()).hexdigest()}
    out.update(kept_numbers.keep(values, FILE_KEPT))
    return out
