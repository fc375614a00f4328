"""A remote store: a backend (S3, a shared folder) with a local folder that stages and caches it.

Recording never writes to the network first: a run is sealed in the local folder exactly as in
a plain folder store, and then *sent*: its objects, its files, a ledger entry, and its manifest
last, each with put-if-absent. A run the remote did not take (unreachable, no credentials) stays
in the local folder and :meth:`Remote.push` sends it later. Reading *pulls* the remote's sealed
runs into the same folder, so every verb works on it as on any folder store.

Remote layout under the URL (all keys create-only; nothing is renamed or overwritten)::

    runs/<id>/<file>           a run's files; runs/<id>/manifest.yaml, written last, commits it
    objects/<ab>/<sha256>      content-addressed blobs
    ledger/<seq, 12 digits>    one line per sealed run: "seq id manifest_sha256 chain", where
                               chain = sha256(previous chain, id, digest): slot seq+1 can only
                               be taken once, so every writer agrees on one order and one head

A run whose manifest is absent remotely (a writer killed while sending) is never pulled.
"""

from __future__ import annotations

import os
import time

from reprokit._model.errors import ManifestError, StoreError
from reprokit._model.manifest import Manifest
from reprokit._store.backend import open_backend, write_once
from reprokit._store.layout import (
    GENESIS,
    MANIFEST,
    files_under,
    ledger_line,
    object_key,
    parse_ledger_line,
    referenced_objects,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from reprokit._store.backend import Backend

REMOTE_LEDGER = "remote-ledger"  # the local copy of the remote ledger, in the local folder
_SLOT = "ledger/{:012d}"
_backends: dict[tuple[str, int], Backend] = {}


class Remote:
    """The remote ``url`` with its local folder ``root`` (a folder store's layout)."""

    def __init__(self, url: str, root: str, backend: Backend | None = None) -> None:
        self.url = url
        self.root = root
        self._backend = backend

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            # One client per URL and process: making an S3 client costs more than a run.
            key = (self.url, os.getpid())
            if key not in _backends:
                _backends[key] = open_backend(self.url)
            self._backend = _backends[key]
        return self._backend

    def _local(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    # -- sending -----------------------------------------------------------------------------

    def remote_runs(self) -> set[str]:
        """The ids of the runs sealed on the remote (their manifest is there)."""
        suffix = "/" + MANIFEST
        return {k[5 : -len(suffix)] for k in self.backend.list("runs/") if k.endswith(suffix)}

    def local_runs(self) -> list[str]:
        """The ids of the runs sealed in the local folder, oldest first."""
        try:
            names = os.listdir(self._local("runs"))
        except FileNotFoundError:
            return []
        return sorted(n for n in names if os.path.exists(self._local("runs", n, MANIFEST)))

    def pending(self) -> list[str]:
        """Runs sealed locally that the remote does not have yet, oldest first."""
        there = self.remote_runs()
        return [rid for rid in self.local_runs() if rid not in there]

    def push(self, run_id: str) -> bool:
        """Send the locally sealed run ``run_id``; True if this call committed it remotely."""
        folder = self._local("runs", run_id)
        mkey = f"runs/{run_id}/{MANIFEST}"
        try:
            with open(os.path.join(folder, MANIFEST), "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            raise StoreError(f"run {run_id} is not sealed here", folder) from None
        # No "is it there already?" round trip: every step below is create-only and accepts
        # finding its own bytes, so sending a run twice (or finishing an interrupted send) is
        # safe, and the manifest's put says whether this call committed it.
        manifest = Manifest.from_bytes(data, _path(os.path.join(folder, MANIFEST)))
        uploads = [
            (object_key(d), self._local(*object_key(d).split("/")))
            for d in referenced_objects(manifest)
        ]
        for path in files_under(folder):
            rel = os.path.relpath(path, folder).replace(os.sep, "/")
            if rel != MANIFEST:
                uploads.append((f"runs/{run_id}/{rel}", path))
        _each(lambda item: self._put_same(item[0], _read(item[1])), uploads)
        import hashlib

        self._append_ledger(run_id, hashlib.sha256(data).hexdigest())
        # The commit point: before it, the run's other keys are invisible to every reader.
        if not self.backend.put_if_absent(mkey, data):
            if self.backend.get(mkey) != data:
                raise StoreError(f"run {run_id} differs on {self.url}", self.url)
            return False
        return True

    def push_pending(self) -> list[str]:
        """Send every run the remote does not have yet; the ids this call committed."""
        return [rid for rid in self.pending() if self.push(rid)]

    def _put_same(self, key: str, data: bytes) -> None:
        """Create ``key``; if it exists, it must hold the same bytes (an earlier, interrupted
        send of this run wrote it)."""
        if not self.backend.put_if_absent(key, data) and self.backend.get(key) != data:
            raise StoreError(f"{key} exists on {self.url} with other content", self.url)

    # -- the ledger ------------------------------------------------------------------------------

    def ledger(self) -> list[tuple[int, str, str, str]]:
        """The remote ledger, read through the local copy: entries are immutable, so only the
        ones after the last known are fetched."""
        path = self._local(REMOTE_LEDGER)
        known: list[tuple[int, str, str, str]] = []
        try:
            with open(path, encoding="ascii") as fh:
                for n, line in enumerate(fh):
                    entry = parse_ledger_line(line)
                    if entry is None or entry[0] != n:
                        known = []  # a damaged copy: read the remote again
                        break
                    known.append(entry)
        except (OSError, UnicodeDecodeError):
            known = []
        return self._extend(known, save=True)

    def _extend(
        self, known: list[tuple[int, str, str, str]], save: bool
    ) -> list[tuple[int, str, str, str]]:
        start = len(known)
        while True:
            raw = self.backend.get(_SLOT.format(len(known)))
            if raw is None:
                break
            entry = parse_ledger_line(raw.decode("ascii", "replace"))
            if entry is None or entry[0] != len(known):
                # Kept as read: verify reports the broken chain naming the line.
                entry = (len(known), "?", "?", raw.decode("ascii", "replace").strip() or "?")
            known.append(entry)
        if save and len(known) > start:
            self._save_ledger(known)
        return known

    def _save_ledger(self, entries: list[tuple[int, str, str, str]]) -> None:
        text = "".join(f"{s} {r} {d} {c}\n" for s, r, d, c in entries)
        path = self._local(REMOTE_LEDGER)
        try:
            if os.path.getsize(path) >= len(text):
                return  # another process saved as much or more (entries never change)
        except OSError:
            pass
        tmp = f"{path}.{os.getpid()}.{os.urandom(3).hex()}.tmp"
        try:
            with open(tmp, "w", encoding="ascii") as fh:
                fh.write(text)
            # A cache of immutable remote entries: any process's copy is a prefix of the truth.
            os.replace(tmp, path)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def _append_ledger(self, run_id: str, digest: str) -> None:
        entries = self.ledger()
        for attempt in range(1000):
            mine = [e for e in entries if e[1] == run_id]
            if mine:
                if mine[0][2] != digest:
                    raise StoreError(
                        f"run {run_id} is in {self.url}'s ledger with another manifest", self.url
                    )
                return  # an earlier, interrupted send of this run got this far
            seq = len(entries)
            prev = entries[-1][3] if entries else GENESIS
            line = ledger_line(seq, run_id, digest, prev)
            if self.backend.put_if_absent(_SLOT.format(seq), line.encode("ascii")):
                entries.append(parse_ledger_line(line))  # type: ignore[arg-type]
                self._save_ledger(entries)
                return
            # Another writer took the slot: read what it wrote and try the next one. (Slots
            # are dense and immutable and every attempt first reads all of them, so a run is
            # never vouched for twice, even when two processes send it at once.)
            import random

            # (exponential backoff with jitter: losers of a slot spread out instead of
            # all asking for the next one at once)
            time.sleep(random.uniform(0, 0.01 * 2 ** min(attempt, 6)))
            entries = self._extend(entries, save=False)
        raise StoreError(f"could not append to {self.url}'s ledger: too many writers", self.url)

    # -- receiving ---------------------------------------------------------------------------

    def pull(self) -> list[str]:
        """Copy the remote's sealed runs (and their objects) that the local folder lacks; the
        ids copied. A run appears locally whole or not at all."""
        files: dict[str, list[str]] = {}
        for key in self.backend.list("runs/"):
            parts = key.split("/", 2)
            if len(parts) == 3:
                files.setdefault(parts[1], []).append(parts[2])
        # After the listing: a run's ledger entry is written before its manifest, so every run
        # listed as sealed is in the ledger read now.
        self.ledger()
        todo = [
            (rid, rels)
            for rid, rels in sorted(files.items())
            if MANIFEST in rels and not os.path.exists(self._local("runs", rid))
        ]
        done = _each(lambda item: self._pull_run(*item), todo)
        return [rid for (rid, _rels), ok in zip(todo, done, strict=True) if ok]

    def _pull_run(self, rid: str, rels: list[str]) -> bool:
        tmp = self._local("tmp", f"pull-{rid}-{os.urandom(3).hex()}")
        try:
            os.makedirs(tmp)
            manifest = None
            for rel in sorted(r for r in rels if r != MANIFEST) + [MANIFEST]:
                if any(p in ("", ".", "..") for p in rel.split("/")):
                    raise StoreError(f"{self.url}: bad key runs/{rid}/{rel}", self.url)
                data = self.backend.get(f"runs/{rid}/{rel}")
                if data is None:
                    raise StoreError(f"{self.url}: runs/{rid}/{rel} vanished", self.url)
                path = os.path.join(tmp, *rel.split("/"))
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as fh:
                    fh.write(data)
                if rel == MANIFEST:
                    try:
                        manifest = Manifest.from_bytes(data, _path(path))
                    except ManifestError:
                        pass  # verify says what is wrong with it
            for digest in referenced_objects(manifest) if manifest is not None else []:
                self._pull_object(digest)
            for path in files_under(tmp):
                os.chmod(path, 0o444)
            try:
                os.rename(tmp, self._local("runs", rid))
            except OSError:
                return False  # another process pulled it first
            return True
        finally:
            if os.path.exists(tmp):
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)

    def _pull_object(self, digest: str) -> None:
        key = object_key(digest)
        path = self._local(*key.split("/"))
        if os.path.exists(path):
            return
        data = self.backend.get(key)
        if data is None:
            return  # verify reports the missing object
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # Kept as received, even if it does not match its name: verify says so.
        write_once(path, data, self._local("tmp"), 0o444)


def _path(text: str) -> Any:
    from pathlib import Path  # (only a remote store gets here: pathlib is no cost to recording)

    return Path(text)


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _each(fn: Any, items: list[Any], threads: int = 8) -> list[Any]:
    """``fn`` over ``items``, a few at once when there are several: each is a network round
    trip, and an object store answers many in parallel. Results in order; the first error
    raised is raised."""
    if len(items) <= 2:
        return [fn(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
        return list(pool.map(fn, items))
