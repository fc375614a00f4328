"""The numbers an output keeps so that a later run can be compared with a tolerance.

Up to ``INLINE`` numbers are kept as a plain list; up to ``KEPT`` numbers as float64
little-endian bytes, zlib-compressed and base64-encoded (``packed``); beyond that only a
bounded summary (count, min, max, mean, std, L2 norm). A summary can prove two outputs
*different* under a tolerance (each of its statistics moves by at most a known bound when
every value stays within ``atol + rtol*|recorded|``) and gives a lower bound on the largest
difference; it can never prove them *close*, and says so.
"""

from __future__ import annotations

import base64
import math
import sys
import zlib
from array import array

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

INLINE = 64  # numbers kept as a plain list in the record
KEPT = 100_000  # numbers kept (compressed) per output; beyond this, a summary only


def pack(values: Iterable[float]) -> str:
    """``values`` as base64(zlib(float64 little-endian bytes))."""
    arr = array("d", values)
    if sys.byteorder == "big":
        arr.byteswap()
    return pack_bytes(arr.tobytes())


def pack_bytes(little_endian: bytes) -> str:
    """What ``pack`` writes, from little-endian float bytes themselves (numpy's float64, or
    float32 for float32 data, recorded as ``packed_dtype``: half the bytes, still exact)."""
    # A window and hash table sized to the data: zlib's defaults (32 KiB window, 256 KiB of
    # state) cost ~50 us to set up, more than compressing a small output takes; any window
    # reads back with zlib's defaults.
    wbits = min(15, max(9, len(little_endian).bit_length()))
    packer = zlib.compressobj(1, zlib.DEFLATED, wbits, min(8, wbits - 7))
    packed = packer.compress(little_endian) + packer.flush()
    return base64.b64encode(packed).decode("ascii")


def unpack(text: str, dtype: str = "<f8") -> list[float]:
    """The numbers ``pack`` (``dtype`` "<f8") or ``pack_bytes`` wrote."""
    arr = array("f" if dtype == "<f4" else "d")
    arr.frombytes(zlib.decompress(base64.b64decode(text)))
    if sys.byteorder == "big":
        arr.byteswap()
    return arr.tolist()


def summary(values: list[float]) -> dict[str, float]:
    """count, min, max, mean, std and L2 norm of ``values`` (pure Python)."""
    n = len(values)
    if n == 0:
        return {"count": 0}
    mean = math.fsum(values) / n
    var = math.fsum((v - mean) ** 2 for v in values) / n
    return {
        "count": n,
        "mean": mean,
        "std": math.sqrt(var),
        "min": min(values),
        "max": max(values),
        "l2": math.sqrt(math.fsum(v * v for v in values)),
    }


def keep(values: list[float], limit: int = KEPT) -> dict[str, Any]:
    """The record of ``values``: ``values`` (small), ``packed`` (up to ``limit``), or ``stats``."""
    if len(values) <= INLINE:
        return {"values": values}
    out: dict[str, Any] = {"stats": summary(values)}
    if len(values) <= limit:
        out["packed"] = pack(values)
    return out


def summary_bounds(
    recorded: Mapping[str, Any], replayed: Mapping[str, Any], rtol: float, atol: float
) -> tuple[bool, float]:
    """(proven different, lower bound of the largest absolute difference) from two summaries.

    If every replayed value ``x`` is within ``atol + rtol*|y|`` of its recorded ``y``, then min,
    max and mean each move by at most ``atol + rtol*M`` (M: the recorded largest magnitude), and
    the L2 norm by at most ``atol*sqrt(n) + rtol*L2``. A larger move proves a difference.
    The moves of min, max and mean, and the move of L2 over sqrt(n), are each no larger than the
    largest difference, so their maximum is a lower bound for it.
    """
    n = int(recorded.get("count") or 0)
    if n != int(replayed.get("count") or 0):
        return True, math.inf
    if n == 0:
        return False, 0.0
    keys = ("min", "max", "mean", "l2")
    if any(not isinstance(recorded.get(k), (int, float)) for k in keys) or any(
        not isinstance(replayed.get(k), (int, float)) for k in keys
    ):
        return False, 0.0
    a = {k: float(recorded[k]) for k in keys}
    b = {k: float(replayed[k]) for k in keys}
    if any(math.isnan(v) for v in (*a.values(), *b.values())):
        return False, 0.0
    big = max(abs(a["min"]), abs(a["max"]))
    moves = {k: abs(a[k] - b[k]) for k in keys}
    # The statistics themselves carry rounding (a float sum of n numbers): a move that small
    # proves nothing.
    bound = atol + rtol * big + 1e-10 * big
    bound_l2 = atol * math.sqrt(n) + rtol * a["l2"] + 1e-10 * a["l2"]
    proven = any(moves[k] > bound for k in ("min", "max", "mean")) or moves["l2"] > bound_l2
    lower = max(moves["min"], moves["max"], moves["mean"], moves["l2"] / math.sqrt(n))
    return proven, lower
