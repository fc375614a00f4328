"""One canonical byte form of values and files: the single definition of "same" in reprokit.

``fingerprint(obj)`` hashes a type-tagged encoding of ``obj``: floats by their exact IEEE-754
bits (so ``0.1 + 0.2`` differs from ``0.3`` and ``-0.0`` from ``0.0``), dict entries in an order
that does not depend on insertion, arrays and tensors by dtype, shape and contiguous bytes.
The encoding uses no ``hash()``, no pickle and no platform-dependent width, so a fingerprint is
the same across processes, machines and Python versions. Golden-value tests pin it.
"""

from __future__ import annotations

import enum
import hashlib
import os
import struct

from reprokit._model.bounded import TimedOut, bounded

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, BinaryIO

_VERSION = b"reprokit-fp-1\0"
_CHUNK = 1 << 20


_FLOAT = {float}
_BLOCK = 4096  # floats packed per call


def plain_floats(values: list[Any] | tuple[Any, ...]) -> bool:
    """True for a non-empty list or tuple of plain floats only (not ints, bools, subclasses):
    weights as Python numbers, the case fingerprints and kept numbers take at once."""
    return bool(values) and set(map(type, values)) == _FLOAT


def _floats(sink: Any, values: list[float] | tuple[float, ...]) -> None:
    """``b"f" + 8 big-endian bytes`` per float into ``sink``, as ``encode`` writes one float,
    packed a block at a time: every ninth byte a tag, the packed doubles in between."""
    for start in range(0, len(values), _BLOCK):
        block = values[start : start + _BLOCK]
        n = len(block)
        packed = struct.pack(f">{n}d", *block)
        out = bytearray(9 * n)
        out[0::9] = b"f" * n
        for j in range(8):
            out[1 + j :: 9] = packed[j::8]
        sink.update(out)


class _Encoder:
    """Streams the canonical encoding of a value into ``sink``; notes lossy fallbacks."""

    __slots__ = ("sink", "exact", "_active")

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.exact = True
        self._active: set[int] = set()

    def _len(self, tag: bytes, n: int) -> None:
        self.sink.update(tag + n.to_bytes(8, "big"))

    def _blob(self, tag: bytes, data: bytes | memoryview) -> None:
        self._len(tag, len(data))
        self.sink.update(data)

    def encode(self, obj: Any) -> None:
        # Order matters: bool before int, numpy scalars before float (np.float64 is a float).
        if obj is None:
            self.sink.update(b"N")
        elif obj is True:
            self.sink.update(b"T")
        elif obj is False:
            self.sink.update(b"F")
        elif _is_numpy(obj):
            self._numpy(obj)
        elif _is_torch_tensor(obj):
            self._torch(obj)
        elif isinstance(obj, enum.Enum):
            self._blob(b"e", _qualname(obj).encode())
            self.encode(obj.value)
        elif isinstance(obj, int):
            n = int(obj)
            if n.bit_length() < 10_000:
                self._blob(b"i", str(n).encode())
            else:  # str() refuses ints this long (CPython's digit limit); hex does not
                self._blob(b"x", hex(n).encode())
        elif isinstance(obj, float):
            self.sink.update(b"f" + struct.pack(">d", obj))
        elif isinstance(obj, complex):
            self.sink.update(b"c" + struct.pack(">dd", obj.real, obj.imag))
        elif isinstance(obj, str):
            self._blob(b"s", obj.encode("utf-8", "surrogatepass"))
        elif isinstance(obj, (bytes, bytearray, memoryview)):
            self._blob(b"b", bytes(obj))
        elif isinstance(obj, (list, tuple, dict, set, frozenset)):
            self._container(obj)
        elif isinstance(obj, os.PathLike):
            self._blob(b"p", os.fspath(obj).encode("utf-8", "surrogatepass"))
        elif hasattr(obj, "__dataclass_fields__") and not isinstance(obj, type):
            if id(obj) in self._active:
                self.exact = False
                self.sink.update(b"C")
                return
            self._active.add(id(obj))
            try:
                self._blob(b"D", _qualname(obj).encode())
                self.encode({f: getattr(obj, f) for f in obj.__dataclass_fields__})
            finally:
                self._active.discard(id(obj))
        else:
            # No faithful encoding: fall back to type and repr, and say so.
            self.exact = False
            try:
                text = bounded(repr, obj)
            except TimedOut:
                text = "<repr timed out>"
            except Exception as exc:
                text = f"<repr raised {type(exc).__name__}>"
            self._blob(b"R", f"{_qualname(obj)}:{text}".encode("utf-8", "backslashreplace"))

    def _container(self, obj: Any) -> None:
        key = id(obj)
        if key in self._active:
            self.exact = False
            self.sink.update(b"C")
            return
        self._active.add(key)
        try:
            if isinstance(obj, (list, tuple)):
                self._len(b"l" if isinstance(obj, list) else b"t", len(obj))
                if plain_floats(obj):
                    # Weights as a list of floats: the bytes encode() writes item by item, at once.
                    _floats(self.sink, obj)
                    return
                for item in obj:
                    self.encode(item)
            elif isinstance(obj, dict):
                # Order-independent: sort entries by the digest of their encoded key.
                entries = sorted((self._sub(k), self._sub(v)) for k, v in obj.items())
                self._len(b"d", len(entries))
                for kdigest, vdigest in entries:
                    self.sink.update(kdigest + vdigest)
            else:
                parts = sorted(self._sub(item) for item in obj)
                self._len(b"S", len(parts))
                for part in parts:
                    self.sink.update(part)
        finally:
            self._active.discard(key)

    def _sub(self, obj: Any) -> bytes:
        sub = _Encoder(hashlib.sha256())
        sub._active = self._active
        sub.encode(obj)
        self.exact = self.exact and sub.exact
        return sub.sink.digest()

    def _numpy(self, obj: Any) -> None:
        import numpy as np

        arr = np.asarray(obj)
        if arr.dtype.hasobject:
            self._blob(b"O", str(arr.shape).encode())
            self.encode(arr.tolist())
            return
        arr = np.ascontiguousarray(arr)
        head = f"{arr.dtype.str}|{','.join(map(str, arr.shape))}".encode()
        self._blob(b"A", head)
        # A uint8 view works for every dtype (memoryview refuses datetime64, for one).
        flat: Any = arr.reshape(-1).view(np.uint8)
        self._blob(b"a", memoryview(flat) if arr.size else b"")

    def _torch(self, obj: Any) -> None:
        import torch

        t = obj.detach()
        if t.layout != torch.strided:
            t = t.to_dense()
        t = t.cpu().contiguous()
        head = f"{t.dtype}|{','.join(map(str, t.shape))}".encode()
        self._blob(b"P", head)
        if t.numel() == 0:
            self._blob(b"a", b"")
            return
        raw = t.reshape(-1).view(torch.uint8).numpy()
        self._blob(b"a", memoryview(raw).cast("B"))


def _qualname(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_numpy(obj: Any) -> bool:
    module = type(obj).__module__
    return module == "numpy" and (hasattr(obj, "dtype") and hasattr(obj, "shape"))


def _is_torch_tensor(obj: Any) -> bool:
    return (
        type(obj).__module__.startswith("torch")
        and hasattr(obj, "detach")
        and hasattr(obj, "dtype")
    )


def fingerprint(obj: Any) -> str:
    """Return the SHA-256 hex digest of ``obj``'s canonical, type-tagged encoding."""
    return fingerprint_exact(obj)[0]


def fingerprint_exact(obj: Any) -> tuple[str, bool]:
    """Return ``(fingerprint, exact)``; ``exact`` is False where ``obj`` fell back to repr."""
    enc = _Encoder(hashlib.sha256(_VERSION))
    enc.encode(obj)
    return enc.sink.hexdigest(), enc.exact


def sha256_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """Return ``(sha256 hex, size in bytes)`` of a file, streamed at hashlib's own speed."""
    with open(path, "rb") as fh:
        return sha256_stream(fh)


def sha256_stream(fh: BinaryIO) -> tuple[str, int]:
    """Return ``(sha256 hex, byte count)`` of what remains in a binary file object."""
    file_digest = getattr(hashlib, "file_digest", None)
    if file_digest is not None:
        start = fh.tell()
        digest = file_digest(fh, "sha256")
        return digest.hexdigest(), fh.tell() - start
    h = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    size = 0
    while n := fh.readinto(buf):  # type: ignore[attr-defined]
        h.update(view[:n])
        size += n
    return h.hexdigest(), size


def sha256_bytes(data: bytes) -> str:
    """Return the SHA-256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def snapshot_digest(files: Mapping[str, str]) -> str:
    """The digest of a snapshot (a run's source outside git): sha256 over the sorted
    ``"<sha256>  <path>"`` lines of its files."""
    listing = "".join(f"{d}  {p}\n" for p, d in sorted(files.items())).encode()
    return "sha256:" + hashlib.sha256(listing).hexdigest()
