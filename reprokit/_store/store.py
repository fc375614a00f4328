"""The plain-file store: write-once run folders, a content-addressed object area, a ledger.

Layout of a store folder (``.reprokit/`` at the repository root by default)::

    .gitignore                 "*": the store never makes the working tree dirty
    runs/<id>/                 one folder per run; ``manifest.yaml`` is its commit point
    objects/<ab>/<sha256>      blobs shared by runs (source patches, snapshots), named by content
    active/<host>-<pid>-<tok>  one journal per recording process: its pid and host, then the
                               id of each run it started (so `ls` can tell running from dead)
    ledger                     append-only, hash-chained list of sealed manifests' digests
    remote-ledger              (remote stores only) the local copy of the remote's ledger

Every file operation of a folder store lives in this module. A remote store (``s3://bucket/
prefix``) is a folder store on this machine that stages the runs recorded here and caches the
ones read from the remote; ``remote.py`` sends and fetches them through a backend's three
operations (put-if-absent, get, list; ``backend.py``).
"""

from __future__ import annotations

import os
import re
import time

from reprokit._model.digest import sha256_file
from reprokit._model.errors import (
    AmbiguousRun,
    ManifestError,
    RunNotFound,
    StoreError,
    TamperedError,
    warn,
)
from reprokit._model.manifest import Manifest
from reprokit._model.protocol import ChildProtocol
from reprokit._store.backend import check_url, is_url, local_root, write_once
from reprokit._store.layout import GENESIS, MANIFEST, files_under, referenced_objects
from reprokit._store.layout import chain as _chain
from reprokit._store.remote import REMOTE_LEDGER, Remote

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from typing import Any

STORE_DIRNAME = ".reprokit"
_GENESIS = GENESIS
_files_under = files_under
_SAFE_REF = re.compile(r"^[A-Za-z0-9._~-]+$")
_OBJECT = re.compile(r"[0-9a-f]{64}\Z")


def new_run_id(now: float | None = None) -> str:
    """A run id sortable by start time and unique across processes: time + random suffix."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{stamp}-{int(now * 1000) % 1000:03d}-{os.urandom(3).hex()}"


def default_store_path(start: str | os.PathLike[str] | None = None) -> str:
    """The store a run in ``start`` uses: $REPROKIT_STORE, else .reprokit at the repository root
    (the folder holding ``.git``), else in ``start`` itself."""
    env = ChildProtocol.from_env().store
    if env:
        return env if is_url(env) else os.path.abspath(os.path.expanduser(env))
    folder = os.path.abspath(os.fspath(start) if start is not None else os.getcwd())
    probe = folder
    while True:
        if os.path.exists(os.path.join(probe, ".git")):
            return os.path.join(probe, STORE_DIRNAME)
        parent = os.path.dirname(probe)
        if parent == probe:
            return os.path.join(folder, STORE_DIRNAME)
        probe = parent


class RunEntry:
    """A run folder as listed: its id, state and, when sealed, its manifest."""

    __slots__ = ("id", "path", "state", "manifest", "error")

    def __init__(
        self,
        id: str,
        path: Path,
        state: str,  # "sealed", "running", "incomplete" or "corrupt"
        manifest: Manifest | None = None,
        error: str | None = None,
    ) -> None:
        self.id, self.path, self.state = id, path, state
        self.manifest, self.error = manifest, error

    def __repr__(self) -> str:
        return f"RunEntry({self.id!r}, {self.state!r})"


def _path(text: str) -> Path:
    from pathlib import Path

    return Path(text)


def _hostname() -> str:
    try:
        return os.uname().nodename
    except AttributeError:  # pragma: no cover - Windows
        import platform

        return platform.node()


_unreachable: dict[str, tuple[float, str]] = {}  # remote URL -> (when, why) a send failed
_ready: set[str] = set()  # store roots whose folders exist (checked once per process)
_journals: dict[str, Any] = {}  # store root -> this process's open journal in active/
_journal_pid: dict[str, int] = {}


def _close_journals() -> None:
    """At exit: a finished process leaves no journal behind."""
    for root, fh in list(_journals.items()):
        try:
            fh.close()
            if _journal_pid.get(root) == os.getpid():
                os.unlink(fh.name)
        except OSError:
            pass
    _journals.clear()


class Store:
    """A store folder. Creating the object does not touch the disk; writing does, lazily.

    The writing side (used while recording, inside the user's process) works on plain strings:
    pathlib costs milliseconds to import. ``root``, ``runs``, ``objects``, ``ledger`` are Paths.

    With ``remote`` (a URL), the folder is this machine's copy of that remote store: a sealed
    run is sent to it at once (or kept here until :meth:`push`), and reading first fetches the
    remote's sealed runs (:meth:`pull`).
    """

    def __init__(self, root: str | os.PathLike[str], remote: str | None = None) -> None:
        self._root = os.path.abspath(os.fspath(root))
        self.remote = remote
        self._remote = Remote(remote, self._root) if remote else None
        self._pulled = False
        self._runs = os.path.join(self._root, "runs")
        self._objects = os.path.join(self._root, "objects")
        self._active = os.path.join(self._root, "active")
        self._tmp = os.path.join(self._root, "tmp")
        self._ledger = os.path.join(self._root, "ledger")

    @classmethod
    def at(
        cls, store: Store | str | os.PathLike[str] | None = None, start: str | None = None
    ) -> Store:
        """The store given (a folder, or a remote store's URL such as ``s3://bucket/prefix``),
        or the default one for ``start``."""
        if isinstance(store, Store):
            return store
        address = default_store_path(start) if store is None else store
        if is_url(address):
            url = check_url(address)  # type: ignore[arg-type]
            return cls(local_root(url), remote=url)
        return cls(os.path.expanduser(os.fspath(address)))

    def __repr__(self) -> str:
        if self.remote:
            return f"Store({self._root!r}, remote={self.remote!r})"
        return f"Store({self._root!r})"

    @property
    def address(self) -> str:
        """What names this store to another process: the remote's URL, else the folder."""
        return self.remote or self._root

    @property
    def root(self) -> Path:
        return _path(self._root)

    @property
    def runs(self) -> Path:
        return _path(self._runs)

    @property
    def objects(self) -> Path:
        return _path(self._objects)

    @property
    def active(self) -> Path:
        return _path(self._active)

    @property
    def ledger(self) -> Path:
        return _path(self._ledger)

    def run_path(self, run_id: str) -> str:
        return os.path.join(self._runs, run_id)

    # -- writing -------------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the store's folders and its .gitignore (idempotent)."""
        if self._root in _ready:
            return
        try:
            for folder in (self._runs, self._objects, self._active, self._tmp):
                os.makedirs(folder, exist_ok=True)
            ignore = os.path.join(self._root, ".gitignore")
            if not os.path.exists(ignore):
                note = b"# written by reprokit: the store stays out of git\n*\n"
                self.put_if_absent(ignore, note)
        except OSError as exc:
            raise StoreError(
                f"cannot create store {self._root}: {exc.strerror}", self._root
            ) from None
        _ready.add(self._root)

    def new_run_dir(self, run_id: str | None = None) -> tuple[str, str]:
        """Create an empty, unique run folder and an "in progress" marker; return (id, folder)."""
        self.ensure()
        for _ in range(100):
            rid = run_id or new_run_id()
            path = os.path.join(self._runs, rid)
            try:
                os.mkdir(path)
            except FileExistsError:
                if run_id:
                    raise StoreError(f"run {run_id} already exists", path) from None
                continue
            except OSError as exc:
                raise StoreError(f"cannot create run folder: {exc.strerror}", path) from None
            self._journal(rid)
            return rid, path
        raise StoreError("could not find a free run id", self._runs)  # pragma: no cover

    def put_if_absent(self, path: str | os.PathLike[str], data: bytes) -> bool:
        """Write ``data`` to ``path`` atomically unless it exists; True if this call wrote it.

        Temp file in the store's tmp folder (same filesystem), fsync, then a hard link as the
        create-if-absent commit (O_EXCL where links are not supported).
        """
        path = os.fspath(path)
        return write_once(path, data, self._tmp if os.path.isdir(self._tmp) else None)

    def put_object(self, digest: str, content: bytes | str | os.PathLike[str]) -> None:
        """Keep a blob under its sha256 (no-op when the store already has it)."""
        self.ensure()
        target = self._object_str(digest)
        if os.path.exists(target):
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if isinstance(content, (bytes, bytearray)):
            data = bytes(content)
        else:
            with open(content, "rb") as fh:
                data = fh.read()
        import hashlib

        if hashlib.sha256(data).hexdigest() != digest:
            raise StoreError(f"object content does not match its name {digest}", target)
        if self.put_if_absent(target, data):
            try:
                os.chmod(target, 0o444)
            except OSError:
                pass

    def _object_str(self, digest: str) -> str:
        if not _OBJECT.match(digest):
            raise ManifestError(f"bad object name {digest!r}")
        return os.path.join(self._objects, digest[:2], digest)

    def object_path(self, digest: str) -> Path:
        """Where the object named ``digest`` lives."""
        return _path(self._object_str(digest))

    def seal(self, run_id: str, manifest_text: str) -> str:
        """Commit a run: ledger entry, then its manifest (create-if-absent), then read-only files.

        The ledger is written first so that a crash in between leaves at worst a ledger entry
        for a run that never appeared, never a manifest the ledger does not vouch for.
        """
        import hashlib

        folder = os.path.join(self._runs, run_id)
        data = manifest_text.encode("utf-8")
        self._append_ledger(run_id, hashlib.sha256(data).hexdigest())
        if not self.put_if_absent(os.path.join(folder, MANIFEST), data):
            raise StoreError(f"run {run_id} is already sealed", folder)
        for path in _files_under(folder):
            try:
                os.chmod(path, 0o444)
            except OSError:
                pass
        if self._remote is not None:
            self._send(run_id)
        return folder

    def _send(self, run_id: str) -> None:
        """Send a run just sealed here to the remote; if that fails it stays here, with a
        warning (recording never fails because the network did)."""
        down = _unreachable.get(self.remote or "")
        try:
            if down is not None and time.monotonic() - down[0] < 60:
                # A sweep must not wait on a dead endpoint once per run: try again in a minute.
                raise StoreError(f"unreachable a moment ago: {down[1]}")
            self._remote.push(run_id)  # type: ignore[union-attr]
        except Exception as exc:
            if down is None or time.monotonic() - down[0] >= 60:
                _unreachable[self.remote or ""] = (time.monotonic(), str(exc))
            warn(
                f"run {run_id} is kept in {self._root} and not yet in {self.remote} ({exc}); "
                "`reprokit push` sends it later"
            )

    def push(self) -> list[str]:
        """Send every run sealed here that the remote store lacks; the ids sent."""
        if self._remote is None:
            raise StoreError(f"store {self._root} has no remote to push to", self._root)
        return self._remote.push_pending()

    def push_run(self, run_id: str) -> bool:
        """Send the run ``run_id`` sealed here; True if this call committed it remotely."""
        if self._remote is None:
            raise StoreError(f"store {self._root} has no remote to push to", self._root)
        return self._remote.push(run_id)

    def pending(self) -> list[str]:
        """The runs sealed here that the remote store does not have yet."""
        return self._remote.pending() if self._remote is not None else []

    def pull(self) -> list[str]:
        """Fetch the remote store's sealed runs this folder lacks; the ids fetched."""
        if self._remote is None:
            return []
        self._pulled = True
        self.ensure()
        return self._remote.pull()

    def _journal(self, run_id: str) -> None:
        """Note in this process's journal that it started ``run_id``.

        One file per process, opened once and appended to: a file created per run would cost
        more than the rest of the run's bookkeeping on a slow disk.
        """
        fh = _journals.get(self._root)
        try:
            if fh is None or fh.closed or _journal_pid.get(self._root) != os.getpid():
                # (a forked child keeps its parent's handle: it gets a journal of its own)
                name = f"{_hostname()}-{os.getpid()}-{os.urandom(3).hex()}"
                fh = open(os.path.join(self._active, name), "a", encoding="utf-8")  # noqa: SIM115
                fh.write(f"{os.getpid()} {_hostname()}\n")
                _journals[self._root] = fh
                _journal_pid[self._root] = os.getpid()
                if len(_journals) == 1:
                    import atexit

                    atexit.register(_close_journals)
            fh.write(run_id + "\n")
            fh.flush()
        except OSError:
            pass  # the journal only tells running from dead; recording goes on without it

    def discard(self, run_id: str) -> None:
        """Remove an unsealed run's folder (used when sealing failed half-way)."""
        import shutil

        folder = os.path.join(self._runs, run_id)
        if os.path.exists(os.path.join(folder, MANIFEST)):
            return
        shutil.rmtree(folder, ignore_errors=True)

    def _append_ledger(self, run_id: str, manifest_sha256: str) -> None:
        fd = os.open(self._ledger, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            _lock(fd)
            size = os.fstat(fd).st_size
            prev, seq = _GENESIS, 0
            if size:
                tail = os.pread(fd, min(size, 4096), max(0, size - 4096))
                if not tail.endswith(b"\n"):
                    # A line cut short by a crash or a full disk (never vouched for a sealed
                    # run: its manifest is written after the line): drop it.
                    cut = tail.rfind(b"\n")
                    size = size - len(tail) + cut + 1 if cut >= 0 else max(0, size - len(tail))
                    os.ftruncate(fd, size)
                    tail = tail[: cut + 1] if cut >= 0 else b""
                last = tail.decode("ascii", "replace").rstrip("\n").rsplit("\n", 1)[-1].split()
                if len(last) == 4:
                    seq, prev = int(last[0]) + 1, last[3]
            chain = _chain(prev, run_id, manifest_sha256)
            line = f"{seq} {run_id} {manifest_sha256} {chain}\n".encode("ascii")
            try:
                written = 0
                while written < len(line):
                    written += os.write(fd, line[written:])
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, size)  # all or nothing: never leave half a line
                raise
        finally:
            os.close(fd)  # closing releases the lock

    # -- reading -------------------------------------------------------------------------------

    def run_ids(self) -> list[str]:
        """Every run folder's id, oldest first (sealed or not)."""
        if self._remote is not None and not self._pulled:
            self.pull()
        try:
            names = os.listdir(self._runs)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(f"cannot list {self.runs}: {exc.strerror}", self.runs) from None
        return sorted(n for n in names if not n.startswith("."))

    def entry(self, run_id: str, head: bool = False) -> RunEntry:
        """The run folder ``run_id`` with its state and (when sealed) its manifest (with
        ``head``, only its run and code sections: enough for a listing)."""
        folder = self.runs / run_id
        mpath = folder / MANIFEST
        if mpath.exists():
            try:
                return RunEntry(run_id, folder, "sealed", Manifest.load(mpath, head=head))
            except ManifestError as exc:
                return RunEntry(run_id, folder, "corrupt", error=str(exc))
        return RunEntry(run_id, folder, "running" if self._alive(run_id) else "incomplete")

    def entries(self, head: bool = False) -> Iterator[RunEntry]:
        """Every run, newest first (``head``: manifests parsed only as far as a listing needs)."""
        for rid in reversed(self.run_ids()):
            yield self.entry(rid, head=head)

    def _alive(self, run_id: str) -> bool:
        """Whether the process that started ``run_id`` is still running."""
        try:
            names = os.listdir(self._active)
        except OSError:
            return False
        for name in names:
            try:
                with open(os.path.join(self._active, name), encoding="utf-8") as fh:
                    head = fh.readline().split()
                    if run_id not in (line.strip() for line in fh):
                        continue
            except OSError:
                continue
            if len(head) != 2:
                return False
            pid_s, host = head
            if host != _hostname():
                return True  # another machine's run: assume it is still going
            try:
                os.kill(int(pid_s), 0)
            except ProcessLookupError:
                return False
            except (PermissionError, ValueError):
                return True
            return True
        return False

    def resolve(self, ref: str) -> str:
        """The run id ``ref`` names: a full id, ``latest``, a unique prefix or a unique suffix."""
        if not ref or not _SAFE_REF.match(ref) or ref in (".", ".."):
            raise RunNotFound(ref, self.root) if ref else RunNotFound("", self.root)
        ids = self.run_ids()
        if ref == "latest":
            # The newest sealed run the user made: replays and their re-executions are records
            # about an earlier run, so "latest" looks past them.
            newest_any = None
            for rid in reversed(ids):
                if not os.path.exists(os.path.join(self._runs, rid, MANIFEST)):
                    continue
                newest_any = newest_any or rid
                entry = self.entry(rid, head=True)
                run = entry.manifest.run if entry.manifest is not None else {}
                if not run.get("replay_of") and (run.get("entry") or {}).get("kind") != "replay":
                    return rid
            if newest_any is None:
                raise RunNotFound("latest", self.root)
            return newest_any
        if ref in ids:
            return ref
        matches = [i for i in ids if i.startswith(ref)] or [i for i in ids if i.endswith(ref)]
        if not matches:
            raise RunNotFound(ref, self.root)
        if len(matches) > 1:
            raise AmbiguousRun(ref, matches)
        return matches[0]

    def load(self, ref: str) -> Manifest:
        """The sealed manifest of the run ``ref`` names."""
        rid = self.resolve(ref)
        entry = self.entry(rid)
        if entry.state == "corrupt":
            raise ManifestError(entry.error or f"{self.runs / rid / MANIFEST}: corrupt manifest")
        if entry.manifest is None:
            raise RunNotFound(f"{ref} (run {rid} is {entry.state}, not sealed)", self.root)
        return entry.manifest

    def _vouched(self, rid: str, actual: str) -> str | None:
        """The head of the ledger that vouches for run ``rid`` sealed with digest ``actual``
        (the remote's when both do), None when none names it; TamperedError when one names it
        with another digest or a chain is broken."""
        head = None
        for name in ("ledger", REMOTE_LEDGER):
            if name == REMOTE_LEDGER and not (self.root / name).exists():
                continue
            recorded, prev = _vouch(self._ledger_file(name), rid, name)
            if recorded is not None:
                if recorded != actual:
                    raise TamperedError(
                        f"{rid}/{MANIFEST} was modified after sealing", rid, MANIFEST
                    )
                head = prev
        return head

    def ledger_entries(self) -> list[tuple[int, str, str, str]]:
        """The ledger's lines as (seq, run id, manifest sha256, chain)."""
        return self._ledger_file("ledger")

    def remote_ledger_entries(self) -> list[tuple[int, str, str, str]]:
        """The remote store's ledger as last read (empty for a folder store)."""
        return self._ledger_file(REMOTE_LEDGER)

    def _ledger_file(self, name: str) -> list[tuple[int, str, str, str]]:
        path = self.root / name
        try:
            text = path.read_text("ascii")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise TamperedError(f"{name} unreadable: {exc}", path=str(path)) from None
        out = []
        for n, line in enumerate(text.splitlines()):
            parts = line.split()
            if len(parts) != 4 or not parts[0].isdigit():
                raise TamperedError(f"{name} line {n + 1} is malformed", path=name)
            out.append((int(parts[0]), parts[1], parts[2], parts[3]))
        return out

    def verify(self, ref: str) -> dict[str, object]:
        """Check a sealed run against its digests and the ledger; raise TamperedError naming
        the first file that does not match. Returns a summary of what was checked."""
        import hashlib

        rid = self.resolve(ref)
        folder = self.runs / rid
        mpath = folder / MANIFEST
        if not mpath.exists():
            raise TamperedError(f"run {rid} has no manifest (not sealed)", rid, MANIFEST)
        raw = mpath.read_bytes()
        actual = hashlib.sha256(raw).hexdigest()
        # A run recorded here is in the local ledger; one recorded elsewhere and fetched from a
        # remote store is in the remote's (sent runs are in both): every ledger that names the
        # run must vouch for this manifest, and at least one must name it.
        head = self._vouched(rid, actual)
        if head is None and self._remote is not None:
            # The local copy of the remote ledger may predate this run: read the remote's.
            self._remote.ledger()
            head = self._vouched(rid, actual)
        if head is None:
            raise TamperedError(f"run {rid} is not in the store's ledger", rid, "ledger")
        try:
            manifest = Manifest.from_bytes(raw, mpath)
        except ManifestError as exc:
            raise TamperedError(str(exc), rid, MANIFEST) from None
        if manifest.id != rid:
            raise TamperedError(f"manifest id {manifest.id} does not match folder {rid}", rid)
        expected = dict(manifest.digests)
        present = {_rel(p, folder): p for p in _files_under(folder)}
        present.pop(MANIFEST, None)
        for rel in sorted(set(present) | set(expected)):
            if rel not in expected:
                raise TamperedError(f"{rid}/{rel} was added after sealing", rid, rel)
            if rel not in present:
                raise TamperedError(f"{rid}/{rel} is missing", rid, rel)
            if sha256_file(present[rel])[0] != expected[rel]:
                raise TamperedError(f"{rid}/{rel} was modified after sealing", rid, rel)
        objects = referenced_objects(manifest)
        for digest in objects:
            path = self.object_path(digest)
            if not path.exists():
                raise TamperedError(f"object {digest[:12]} ({path.name}) is missing", rid)
            if sha256_file(path)[0] != digest:
                raise TamperedError(f"object {digest[:12]} was modified", rid, str(path))
        return {
            "run": rid,
            "manifest_sha256": actual,
            "files": len(expected) + 1,
            "objects": len(objects),
            "ledger_head": head,
        }


def _vouch(entries: list[tuple[int, str, str, str]], rid: str, name: str) -> tuple[str | None, str]:
    """Check a ledger's chain; (the manifest digest it records for ``rid`` or None, its head)."""
    prev = _GENESIS
    recorded = None
    for i, (seq, lrid, digest, chain) in enumerate(entries):
        if seq != i or chain != _chain(prev, lrid, digest):
            raise TamperedError(f"{name} chain broken at line {i + 1} (run {lrid})", rid, name)
        prev = chain
        if lrid == rid:
            if recorded is not None:
                # A run is sealed once: a second line for it is how a re-signed manifest
                # would be vouched for.
                raise TamperedError(
                    f"run {rid} appears twice in the store's {name} (line {i + 1})", rid, name
                )
            recorded = digest
    return recorded, prev


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: O_APPEND writes of one line suffice there
        return
    fcntl.flock(fd, fcntl.LOCK_EX)


def _rel(path: str, folder: str | os.PathLike[str]) -> str:
    return os.path.relpath(path, folder).replace(os.sep, "/")


def digest_folder(folder: str | os.PathLike[str]) -> dict[str, str]:
    """sha256 of every file in a run folder, by relative POSIX path (manifest excluded)."""
    out = {}
    for path in _files_under(folder):
        rel = _rel(path, folder)
        if rel != MANIFEST:
            out[rel] = sha256_file(path)[0]
    return dict(sorted(out.items()))
