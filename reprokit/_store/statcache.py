"""The store's stat cache: input digests that need not be computed again.

Like git's index, a file whose inode, size, mtime_ns and ctime_ns are what they were when it
was hashed keeps its digest without being read again. A folder is cached twice over: a
signature of every file's stat (one small file: an unchanged folder costs a walk and one
comparison) and the per-file entries behind it (a folder where one file changed rehashes only
that file).

Layout, under the store's ``cache/`` folder (never covered by a digest: it is only a cache)::

    inputs-files.json          {"v": 1, "files": {realpath: [ino, size, mtime_ns, ctime_ns, sha]}}
    inputs-folders/<key>.sig   {"path": ..., "sig": ..., "result": {...}}   key: sha of the path
    inputs-folders/<key>.json  {"path": ..., "files": {rel: [ino, size, mtime_ns, ctime_ns, sha]}}

Files modified less than ``RACY_NS`` before they were hashed are not kept: a write in the
same clock tick could leave the stat unchanged while the bytes changed (git's "racy" files).
Every write is a temp file and a rename; a cache that cannot be read or written is ignored.
"""

from __future__ import annotations

import hashlib
import os
import time

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from typing import Any

RACY_NS = 2_000_000_000
VERSION = 1
MAX_FILES = 50_000  # single-file entries kept; beyond, only those this process used survive


def stat_key(st: os.stat_result) -> list[int]:
    """What a cache entry compares: inode, size, mtime_ns, ctime_ns."""
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def cacheable(st: os.stat_result, racy_ns: int = RACY_NS) -> bool:
    """False for a file modified so recently that a write in the same clock tick could leave
    its stat unchanged while its bytes change."""
    return st.st_mtime_ns < time.time_ns() - racy_ns


def _read_json(path: str) -> Any:
    import json  # not at module top: recording a run must not pay for it

    try:
        with open(path, "rb") as fh:
            return json.loads(fh.read())
    except (OSError, ValueError):
        return None


def _write_json(path: str, data: Any) -> None:
    import json

    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.{os.urandom(3).hex()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError:
        pass


class StatCache:
    """Digests by stat, kept in ``folder`` (None: a cache that remembers nothing)."""

    def __init__(self, folder: str | None, racy_ns: int = RACY_NS) -> None:
        self.folder = folder
        self.racy_ns = racy_ns
        self._files: dict[str, list[Any]] | None = None
        self._used: set[str] = set()
        self._dirty = False

    # -- single files ------------------------------------------------------------------------

    def _file_table(self) -> dict[str, list[Any]]:
        if self._files is None:
            table = os.path.join(self.folder, "inputs-files.json") if self.folder else None
            data = _read_json(table) if table else None
            ok = isinstance(data, dict) and data.get("v") == VERSION
            files = data.get("files") if ok and isinstance(data, dict) else None
            self._files = files if isinstance(files, dict) else {}
        return self._files

    def file(self, real: str, st: os.stat_result) -> str | None:
        """The cached sha256 of the file at ``real`` when its stat is unchanged."""
        if self.folder is None:
            return None
        entry = self._file_table().get(real)
        if isinstance(entry, list) and len(entry) == 5 and entry[:4] == stat_key(st):
            self._used.add(real)
            return entry[4]
        return None

    def remember_file(self, real: str, st: os.stat_result, sha256: str) -> None:
        if self.folder is None or not cacheable(st, self.racy_ns):
            return
        self._file_table()[real] = [*stat_key(st), sha256]
        self._used.add(real)
        self._dirty = True

    # -- folders -----------------------------------------------------------------------------

    def _folder_base(self, real: str) -> str | None:
        if self.folder is None:
            return None
        key = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        return os.path.join(self.folder, "inputs-folders", key)

    def folder_result(self, real: str, signature: str) -> dict[str, Any] | None:
        """The cached description of folder ``real`` when its stat signature is unchanged."""
        base = self._folder_base(real)
        if base is None:
            return None
        data = _read_json(base + ".sig")
        if isinstance(data, dict) and data.get("sig") == signature and data.get("path") == real:
            result = data.get("result")
            return result if isinstance(result, dict) else None
        return None

    def folder_summary(self, real: str) -> dict[str, Any] | None:
        """The description of folder ``real`` as last seen with no racy file (None: none kept).

        Unverified: a caller checks it against the folder (``folder_result``) before relying
        on it."""
        base = self._folder_base(real)
        data = _read_json(base + ".sig") if base is not None else None
        if isinstance(data, dict) and data.get("path") == real:
            result = data.get("result")
            return result if isinstance(result, dict) else None
        return None

    def folder_files(self, real: str) -> dict[str, list[Any]]:
        """The per-file entries of folder ``real``: rel -> [ino, size, mtime_ns, ctime_ns, sha]."""
        base = self._folder_base(real)
        if base is None:
            return {}
        data = _read_json(base + ".json")
        files = data.get("files") if isinstance(data, dict) and data.get("path") == real else None
        return files if isinstance(files, dict) else {}

    def remember_folder(
        self,
        real: str,
        signature: str | None,
        result: dict[str, Any],
        files: dict[str, list[Any]],
    ) -> None:
        """Keep a folder's per-file entries and, when none of them is racy, its signature."""
        base = self._folder_base(real)
        if base is None:
            return
        _write_json(base + ".json", {"path": real, "files": files})
        if signature is not None:
            _write_json(base + ".sig", {"path": real, "sig": signature, "result": result})
        else:
            try:  # a summary of an older state must not stand for this one
                os.unlink(base + ".sig")
            except OSError:
                pass

    def save(self) -> None:
        """Write the single-file entries back (a no-op when nothing was added)."""
        if self.folder is None or not self._dirty or self._files is None:
            return
        if len(self._files) > MAX_FILES:
            self._files = {k: v for k, v in self._files.items() if k in self._used}
        _write_json(
            os.path.join(self.folder, "inputs-files.json"), {"v": VERSION, "files": self._files}
        )
        self._dirty = False
