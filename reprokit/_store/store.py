"""The plain-file store: write-once run folders, a content-addressed object area, a ledger.

Layout of a store folder (``.reprokit/`` at the repository root by default)::

    .gitignore                 "*": the store never makes the working tree dirty
    runs/<id>/                 one folder per run; ``manifest.yaml`` is its commit point
    objects/<ab>/<sha256>      blobs shared by runs (source patches, snapshots), named by content
    active/<host>-<pid>-<tok>  one journal per recording process: its pid and host, then a line
                               "<id> <parent or ->" per run it started and "<id> end" per run
                               it finished (so `ls` can tell running from dead, and a worker
                               process can find the run that started it)
    ledger                     append-only, hash-chained list of sealed manifests' digests
    groups/<ab>/<key>          a distributed job's agreed run id and seed (put-if-absent)
    shards/<id>/rank-<r>/      a rank's write-once shard of group run <id>: shard.yaml (its
                               commit point, in the ledger as "<id>/rank-<r>") and its files
    remote-ledger              (remote stores only) the local copy of the remote's ledger

Every write into a folder store goes through ``Store``: run folders are created by
``new_run_dir``, filled while the run is recorded by ``open_stream`` (metrics, checkpoints)
and ``keep_copy`` (artifacts kept with ``copy=True``), and committed by ``seal``. A remote
store (``s3://bucket/prefix``) is a folder store on this machine that stages the runs recorded
here and caches the ones read from the remote; ``remote.py`` sends and fetches them through a
backend's three operations (put-if-absent, get, list; ``backend.py``).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
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
from reprokit._model.manifest import Manifest, made_by_reprokit, top_level
from reprokit._model.protocol import ChildProtocol
from reprokit._store.backend import check_url, is_url, local_root, write_all, write_once
from reprokit._store.layout import GENESIS, MANIFEST, files_under, referenced_objects
from reprokit._store.layout import chain as _chain
from reprokit._store.remote import REMOTE_LEDGER, Remote

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from typing import Any

# What a run appends to while it is recorded (console.log: a command's output, `reprokit run`).
STREAMS = ("metrics.jsonl", "checkpoints.jsonl", "console.log")
SHARD = "shard.yaml"
STORE_DIRNAME = ".reprokit"
_GENESIS = GENESIS
# A ledger line's digest for a run whose sealing failed after its line (written by stores before
# the manifest came first; still read).
VOID = "0" * 64
_files_under = files_under
_SAFE_REF = r"^[A-Za-z0-9._~-]+$"  # compiled at first use (re's own cache)
_OBJECT = re.compile(r"[0-9a-f]{64}\Z")


def new_run_id(now: float | None = None) -> str:
    """A run id sortable by start time and unique across processes: time + random suffix.

    The ids one process makes from the clock also sort in the order it made them: runs a
    millisecond apart or less (a fast sweep) share the millisecond and take suffixes above
    the last one, so "latest" and ``ls`` never swap them."""
    rand = int.from_bytes(os.urandom(3), "big")
    if now is None:
        with _ID_LOCK:
            ms = int(time.time() * 1000)
            last_ms, last_suffix = _LAST_ID[0]
            if ms <= last_ms:  # the same millisecond (or the clock stepped back)
                ms, rand = last_ms, last_suffix + 1 + rand % 4096
                if rand > 0xFFFFFF:
                    ms, rand = last_ms + 1, rand % 4096
            _LAST_ID[0] = (ms, rand)
    else:
        ms = int(now * 1000)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(ms // 1000))
    return f"{stamp}-{ms % 1000:03d}-{rand:06x}"


_ID_LOCK = threading.Lock()
_LAST_ID = [(0, 0)]  # (millisecond, suffix) of the last id this process made from the clock


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
# Held while this process appends to a ledger: a fork in the middle would hand the child a copy
# of the locked descriptor, and the lock would outlive the append for as long as the child lives.
_LEDGER_LOCK = threading.Lock()
# Held while a thread writes (or closes) a journal: a fork taken in the middle of a write would
# leave the child a copy of the file object whose buffer lock belongs to a thread that does not
# exist there, and the child would wait on it forever the first time the object is flushed.
_JOURNAL_LOCK = threading.Lock()
# In a forked child: the file objects it inherited, kept (never flushed or closed by us; they
# are the parent's) rather than released inside the at-fork handler.
_inherited: list[Any] = []


def _before_fork() -> None:
    _JOURNAL_LOCK.acquire()
    _LEDGER_LOCK.acquire()


def _after_fork_in_parent() -> None:
    _LEDGER_LOCK.release()
    _JOURNAL_LOCK.release()


def _forget_after_fork() -> None:
    """In a forked child: the parent's journals are not this process's; its locks are free.

    Lock-free and without I/O: the locks are replaced, not taken, and the inherited journal
    objects are parked, not released (releasing one would close, so flush, it here)."""
    global _LEDGER_LOCK, _JOURNAL_LOCK, _ID_LOCK
    _LEDGER_LOCK = threading.Lock()
    _JOURNAL_LOCK = threading.Lock()
    _ID_LOCK = threading.Lock()  # (a thread of the parent may have held it: the child's is free)
    _inherited.extend(_journals.values())
    _journals.clear()
    _journal_pid.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_forget_after_fork,
    )


def _close_journals() -> None:
    """At exit: a finished process leaves no journal behind."""
    with _JOURNAL_LOCK:
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
        self.unreachable: str | None = None  # why the last pull failed, when reads went local
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
    def folder(self) -> str:
        """The store's folder as a plain string (``root`` imports pathlib)."""
        return self._root

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

    @property
    def cache_dir(self) -> str:
        """Where caches live (``cache/``: input digests by stat); never covered by a digest."""
        return os.path.join(self._root, "cache")

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

    def _unsealed(self, folder: str) -> str:
        """``folder`` when it is a run folder or a rank's shard folder of this store."""
        real = os.path.abspath(folder)
        if not real.startswith((self._runs + os.sep, os.path.join(self._root, "shards") + os.sep)):
            raise StoreError(f"{folder} is not a run folder of store {self._root}", folder)
        return real

    def open_stream(self, folder: str, name: str) -> Stream:
        """A line file of an unsealed run's ``folder`` (its run folder, or a rank's shard
        folder): ``metrics.jsonl``, ``checkpoints.jsonl`` or ``console.log``, opened for
        appending. Raises OSError (the caller stops recording, never the user's program)."""
        if name not in STREAMS:
            raise StoreError(f"{name!r} is not a stream of a run (one of {', '.join(STREAMS)})")
        path = os.path.join(self._unsealed(folder), name)
        # Created read-only (this process writes through its descriptor): the seal has nothing
        # to change on it. A file already there is appended to.
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        try:
            return Stream(os.open(path, flags | os.O_EXCL, 0o444), 0)
        except FileExistsError:
            fd = os.open(path, flags, 0o444)
            return Stream(fd, os.fstat(fd).st_size)

    def keep_copy(self, folder: str, source: str | os.PathLike[str], rel: str) -> str:
        """Copy a file or folder into the unsealed run ``folder``'s ``artifacts/`` under
        ``rel``; returns the copy's path relative to the run folder. Raises OSError."""
        import shutil

        run_dir = self._unsealed(folder)
        dest = os.path.join(run_dir, "artifacts", *rel.split("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        source = os.path.realpath(source)  # the path the user named is followed, links inside not
        if os.path.isdir(source):
            # Regular files and folders only: a link (dangling, looping or leading out of the
            # run) or a FIFO is never followed into the store.
            def special(folder: str, names: list[str]) -> set[str]:
                return {n for n in names if _not_copied(os.path.join(folder, n))}

            shutil.copytree(source, dest, ignore=special, dirs_exist_ok=True)
        elif not _not_copied(source):
            shutil.copyfile(source, dest)
        else:
            raise OSError(0, "not a regular file or folder", os.fspath(source))
        return os.path.relpath(dest, run_dir).replace(os.sep, "/")

    def new_run_dir(self, run_id: str | None = None, parent: str | None = None) -> tuple[str, str]:
        """Create an empty, unique run folder and an "in progress" marker; return (id, folder).

        ``parent``: the run it is nested in, noted in this process's journal."""
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
            self._journal(f"{rid} {parent or '-'}")
            return rid, path
        raise StoreError("could not find a free run id", self._runs)  # pragma: no cover

    def agree(self, key: str, proposal: str) -> str:
        """The value every caller with ``key`` gets: the first caller's ``proposal`` (stored
        put-if-absent); how the ranks of one job agree on a run id without a service."""
        self.ensure()
        if not re.fullmatch(r"[0-9a-f]{64}", key):
            raise StoreError(f"bad group key {key!r}", self._root)
        path = os.path.join(self._root, "groups", key[:2], key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.put_if_absent(path, proposal.encode("utf-8"))
        with open(path, encoding="utf-8") as fh:
            return fh.read()

    def shard_path(self, run_id: str, rank: int) -> str:
        return os.path.join(self._root, "shards", run_id, f"rank-{rank}")

    def new_shard_dir(self, run_id: str, rank: int) -> str:
        """Create rank ``rank``'s shard folder of group run ``run_id`` (once) and journal it."""
        self.ensure()
        path = self.shard_path(run_id, rank)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.mkdir(path)
        except FileExistsError:
            raise StoreError(f"rank {rank} of run {run_id} already exists", path) from None
        except OSError as exc:
            raise StoreError(f"cannot create shard folder: {exc.strerror}", path) from None
        self._journal(f"{run_id}/rank-{rank} -")
        return path

    def seal_shard(self, run_id: str, rank: int, text: str) -> str:
        """Commit rank ``rank``'s shard: shard.yaml, then ledger entry ``<id>/rank-<r>`` (as
        :meth:`seal`: one fsync, healed after a crash in between)."""
        folder = self.shard_path(run_id, rank)
        label, taken = f"{run_id}/rank-{rank}", f"rank {rank} of run {run_id} is already sealed"
        self._commit(folder, SHARD, label, text.encode("utf-8"), taken)
        return folder

    def shards(self, run_id: str) -> list[RunEntry]:
        """The shards of group run ``run_id`` (ranks other than 0), by rank: sealed, running or
        incomplete (the rank's process died before sealing)."""
        base = os.path.join(self._root, "shards", run_id)
        try:
            names = os.listdir(base)
        except OSError:
            return []
        out = []
        for name in names:
            rank = name[len("rank-") :]
            if not name.startswith("rank-") or not rank.isdigit():
                continue
            folder = _path(os.path.join(base, name))
            spath = folder / SHARD
            label = f"{run_id}/{name}"
            if spath.exists():
                try:
                    out.append(RunEntry(label, folder, "sealed", Manifest.load(spath)))
                except ManifestError as exc:
                    out.append(RunEntry(label, folder, "corrupt", error=str(exc)))
            else:
                out.append(
                    RunEntry(label, folder, "running" if self._alive(label) else "incomplete")
                )
        return sorted(out, key=lambda e: int(e.id.rsplit("-", 1)[1]))

    def ranks_of(self, m: Manifest) -> dict[str, Any] | None:
        """For a group run: its world size; the ranks sealed, still running, ``missing`` (a rank
        started its shard and its process died) and ``absent`` (no record from the rank: it died
        before the call, or the program makes that call on some ranks only); and the status of
        the whole run. None for other runs."""
        ranks = m.run.get("ranks")
        if not isinstance(ranks, dict) or not isinstance(ranks.get("world_size"), int):
            return None
        world = ranks["world_size"]
        sealed, running, missing, absent = [0], [], [], []
        shards = {int(s.id.rsplit("-", 1)[1]): s for s in self.shards(m.id)}
        for r in range(1, world):
            shard = shards.get(r)
            if shard is None:
                absent.append(r)
            elif shard.state == "sealed":
                sealed.append(r)
            elif shard.state == "running":
                running.append(r)
            else:
                missing.append(r)
        status = m.run.get("status")
        if running:
            status = "running"
        elif missing:
            status = "incomplete"
        else:
            statuses = {status} | {
                shard_manifest.run.get("status")
                for r in sealed
                if r in shards and (shard_manifest := shards[r].manifest) is not None
            }
            for worst in ("failed", "interrupted"):
                if worst in statuses:
                    status = worst
        return {
            "world_size": world,
            "sealed": sealed,
            "running": running,
            "missing": missing,
            "absent": absent,
            "status": status,
            "shards": [shards[r] for r in sorted(shards)],
        }

    def folder_of(self, m: Manifest) -> Path:
        """Where the files of ``m`` (a run's manifest or a rank's shard) live."""
        rank = (
            (m.run.get("rank") or {}).get("rank") if isinstance(m.run.get("rank"), dict) else None
        )
        if isinstance(rank, int) and rank != 0:
            return _path(self.shard_path(m.id, rank))
        return self.runs / m.id

    def put_if_absent(
        self, path: str | os.PathLike[str], data: bytes, read_only: bool = False
    ) -> bool:
        """Write ``data`` to ``path`` atomically unless it exists; True if this call wrote it.

        Temp file in the store's tmp folder (same filesystem), fsync, then a hard link as the
        create-if-absent commit (O_EXCL where links are not supported); ``read_only``: created
        read-only (mode 0444).
        """
        path = os.fspath(path)
        tmp = self._tmp if os.path.isdir(self._tmp) else None
        return write_once(path, data, tmp, 0o444 if read_only else 0o644)

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

        if hashlib.sha256(data).hexdigest() != digest:
            raise StoreError(f"object content does not match its name {digest}", target)
        self.put_if_absent(target, data, read_only=True)

    def _object_str(self, digest: str) -> str:
        if not _OBJECT.match(digest):
            raise ManifestError(f"bad object name {digest!r}")
        return os.path.join(self._objects, digest[:2], digest)

    def has_object(self, digest: str) -> bool:
        """True when the store holds the object named ``digest``."""
        return os.path.exists(self._object_str(digest))

    def object_path(self, digest: str) -> Path:
        """Where the object named ``digest`` lives."""
        return _path(self._object_str(digest))

    def seal(self, run_id: str, manifest_text: str, files: list[str] | None = None) -> str:
        """Commit a run: its manifest (create-if-absent), its ledger line, read-only files.

        The manifest is the commit point and the run's one fsync on the caller's path; the ledger
        line is appended after it without an fsync of its own (the kernel writes it back within
        seconds). The ledger never names a run whose manifest was not written. A process killed
        between the two leaves a sealed manifest that its journal names as unfinished: the next
        process that records into the store, and ``verify``, append the missing line
        (:meth:`heal_ledger`), so no crash is ever shown as tampering.

        ``files``: the run folder's files besides the manifest that may still be writable, by
        relative path, when the caller has just listed them (the manifest's digests, less the
        files it created read-only): the folder is not listed again.
        """

        folder = os.path.join(self._runs, run_id)
        data = manifest_text.encode("utf-8")
        self._commit(folder, MANIFEST, run_id, data, f"run {run_id} is already sealed", files)
        if self._remote is not None:
            self._send(run_id)
        return folder

    def _commit(
        self,
        folder: str,
        name: str,
        label: str,
        data: bytes,
        taken: str,
        files: list[str] | None = None,
    ) -> None:
        """Write ``folder/name`` (fsync'd, create-if-absent), append its ledger line ``label``,
        make the folder's files read-only; a ledger that cannot be written undoes the commit."""
        path = os.path.join(folder, name)
        if not self.put_if_absent(path, data, read_only=True):
            raise StoreError(taken, folder)
        try:
            self._append_ledger([(label, hashlib.sha256(data).hexdigest())], sync=False)
        except BaseException:
            # Full disk (or a signal) before the line was written: the manifest is not vouched
            # for, so it goes, and the run is dropped as if sealing had failed before it.
            try:
                os.unlink(path)
            except OSError:
                pass
            raise
        _read_only(folder, files)

    def journal_end(self, run_id: str, last: bool = False) -> None:
        """Note in this process's journal that ``run_id`` is finished (sealed or dropped).

        ``last``: the process has no other run going and may end without running exit handlers
        (a pool worker is terminated by a signal): remove its journal now.
        """
        if _journal_pid.get(self._root) != os.getpid():
            return
        if not last:
            self._journal(f"{run_id} end")
            return
        with _JOURNAL_LOCK:
            fh = _journals.pop(self._root, None)
            _journal_pid.pop(self._root, None)
            if fh is not None:
                try:
                    fh.close()
                    os.unlink(fh.name)
                except OSError:
                    pass

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
        """Fetch the remote store's sealed runs this folder lacks; the ids fetched. Raises
        StoreError when the remote cannot be read."""
        if self._remote is None:
            return []
        self._pulled = True
        self.ensure()
        return self._remote.pull()

    def _pull_for_reading(self) -> None:
        """Pull before a read; when the remote cannot be read, say so once and go on with the
        runs this machine already has (recorded here, or pulled earlier): listing and showing
        them must not depend on the network. ``unreachable`` keeps the reason, so a verb that
        vouches for the remote itself (``verify --all``) can refuse instead."""
        try:
            self.pull()
        except StoreError as exc:
            self.unreachable = str(exc)
            warn(f"{exc}; showing only the runs this machine has (in {self._root})")

    def _journal(self, line: str) -> None:
        """Append ``line`` (a run started or finished) to this process's journal.

        One file per process, opened once and appended to: a file created per run would cost
        more than the rest of the run's bookkeeping on a slow disk.
        """
        fh = _journals.get(self._root)
        try:
            if fh is None or fh.closed or _journal_pid.get(self._root) != os.getpid():
                self._clean_journals()
                self._open_journal()
            with _JOURNAL_LOCK:  # a fork waits for the line to be written and flushed
                fh = _journals.get(self._root)
                if fh is not None and not fh.closed:
                    fh.write(line + "\n")
                    fh.flush()
        except (OSError, ValueError):
            pass  # the journal only tells running from dead; recording goes on without it

    def _open_journal(self) -> None:
        """Open this process's journal in ``active/`` (once per process and store; threads
        that race here keep the first)."""
        name = f"{_hostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        path = os.path.join(self._active, name)
        started = _start_time(os.getpid())
        head = f"{os.getpid()} {_hostname()} {started}\n".replace(" None", "")
        with _JOURNAL_LOCK:
            fh = _journals.get(self._root)
            if fh is not None and not fh.closed and _journal_pid.get(self._root) == os.getpid():
                return
            fh = open(path, "a", encoding="utf-8")  # noqa: SIM115
            fh.write(head)
            fh.flush()
            _journals[self._root] = fh
            _journal_pid[self._root] = os.getpid()
            first = len(_journals) == 1
        if first:
            import atexit

            atexit.register(_close_journals)

    def discard(self, run_id: str) -> None:
        """Remove an unsealed run's folder (used when sealing failed half-way)."""
        import shutil

        folder = os.path.join(self._runs, run_id)
        if os.path.exists(os.path.join(folder, MANIFEST)):
            return
        shutil.rmtree(folder, ignore_errors=True)

    def _append_ledger(self, lines: list[tuple[str, str]], sync: bool = True) -> None:
        with _LEDGER_LOCK:
            fd = os.open(self._ledger, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                _lock(fd)
                _append_locked(fd, lines, sync)
            finally:
                os.close(fd)  # closing releases the lock

    def heal_ledger(self) -> list[str]:
        """Append the ledger lines that processes killed between a seal's manifest and its
        ledger line did not write; the labels healed (run ids, or ``<id>/rank-<r>``).

        Only what a dead process of this host names in its journal as started and not finished,
        and whose manifest (or shard.yaml) is there, is healed: a run folder added by hand is
        in no journal and stays "not in the store's ledger"."""

        todo = []
        for label in self._unfinished_of_dead():
            rid, _, rank = label.partition("/rank-")
            if rank:
                path = os.path.join(self.shard_path(rid, int(rank)), SHARD)
            else:
                path = os.path.join(self._runs, rid, MANIFEST)
            try:
                with open(path, "rb") as fh:
                    todo.append((label, hashlib.sha256(fh.read()).hexdigest()))
            except (OSError, ValueError):
                continue  # never sealed: an incomplete run, nothing to vouch for
        if not todo:
            return []
        with _LEDGER_LOCK:
            fd = os.open(self._ledger, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                _lock(fd)
                size = os.fstat(fd).st_size
                named = {
                    line.split(b" ")[1].decode("ascii", "replace")
                    for line in os.pread(fd, size, 0).splitlines()
                    if line.count(b" ") == 3
                }
                todo = [(label, d) for label, d in todo if label not in named]
                if todo:
                    _append_locked(fd, todo, sync=True)
            finally:
                os.close(fd)
        return [label for label, _ in todo]

    def heal_quietly(self) -> list[str]:
        """:meth:`heal_ledger` where the store may be read-only: nothing healed on OSError."""
        try:
            return self.heal_ledger()
        except OSError:
            return []

    def _unfinished_of_dead(self) -> list[str]:
        """What the journals of this host's dead processes name as started and not finished."""
        host = _hostname()
        try:
            names = [n for n in os.listdir(self._active) if n.startswith(host + "-")]
        except OSError:
            return []
        out: list[str] = []
        for name in sorted(names):
            head, started = _read_journal(os.path.join(self._active, name))
            if len(head) >= 2 and head[1] == host and not _journal_alive(head):
                out.extend(rid for rid, _parent in started)
        return out

    # -- reading -------------------------------------------------------------------------------

    def run_ids(self) -> list[str]:
        """Every run folder's id, oldest first (sealed or not)."""
        if self._remote is not None and not self._pulled:
            self._pull_for_reading()
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

    def running(self, run_id: str) -> bool:
        """Whether the process that started ``run_id`` (this host's, or another host's whose
        journal is here) is still running."""
        return self._alive(run_id)

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
                    if run_id not in (line.split(" ", 1)[0].strip() for line in fh):
                        continue
            except OSError:
                continue
            return _journal_alive(head)
        return False

    def unfinished_runs_of(self, pid: int) -> list[tuple[str, str | None]]:
        """The runs process ``pid`` of this host started in this store and has not finished, as
        (id, parent), in the order it started them (from its journal)."""
        prefix = f"{_hostname()}-{pid}-"
        try:
            names = [n for n in os.listdir(self._active) if n.startswith(prefix)]
        except OSError:
            return []
        started: list[tuple[str, str | None]] = []
        for name in names:
            head, runs = _read_journal(os.path.join(self._active, name))
            if len(head) >= 2 and head[0] == str(pid):
                started += runs
        return started

    def _clean_journals(self) -> None:
        """Remove the journals of this host's processes that are gone (killed, never at exit):
        they would otherwise pile up, and a reused pid could make their runs look alive. What
        they sealed without its ledger line is healed first."""
        try:
            self.heal_ledger()
        except OSError:
            pass  # a read-only ledger: verify reports what is left
        try:
            names = os.listdir(self._active)
        except OSError:
            return
        host = _hostname()
        for name in names:
            if not name.startswith(host + "-"):
                continue
            path = os.path.join(self._active, name)
            try:
                with open(path, encoding="utf-8") as fh:
                    head = fh.readline().split()
                if len(head) >= 2 and head[1] == host and not _journal_alive(head):
                    os.unlink(path)
            except OSError:
                continue

    def resolve(self, ref: str) -> str:
        """The run id ``ref`` names: a full id, a unique prefix or a unique suffix; ``latest``
        (the newest run the user started: not a nested or worker run, not one reprokit made);
        ``NAME@latest`` or ``NAME@N`` (the newest, or N-th newest, run called NAME that
        reprokit did not make)."""
        name, at, which = ref.rpartition("@") if ref else ("", "", "")
        if at and name:
            return self._by_name(ref, name, which)
        if not ref or not re.match(_SAFE_REF, ref) or ref in (".", ".."):
            raise RunNotFound(ref, self.root) if ref else RunNotFound("", self.root)
        ids = self.run_ids()
        if ref == "latest":
            # Replays, audits and sweeps are records about an earlier run, and a nested or
            # worker run is part of the run around it: "latest" looks past them, falling back
            # to the newest run reprokit did not make, then to the newest sealed run.
            found = self._newest(ids, (top_level, lambda r: not made_by_reprokit(r), None))
            if found is None:
                raise RunNotFound("latest", self.root)
            return found
        if ref in ids:
            return ref
        matches = [i for i in ids if i.startswith(ref)] or [i for i in ids if i.endswith(ref)]
        if not matches:
            raise RunNotFound(ref, self.root)
        if len(matches) > 1:
            raise AmbiguousRun(ref, matches)
        return matches[0]

    def _by_name(self, ref: str, name: str, which: str) -> str:
        """``NAME@latest`` / ``NAME@N``: runs called NAME, newest first; the user's own runs,
        else (a name only reprokit uses, such as ``replay``) any run of that name."""
        if which == "latest":
            nth = 1
        elif which.isdigit() and int(which) >= 1:
            nth = int(which)
        else:
            raise RunNotFound(
                f"{ref} (after @: 'latest' or a number from 1, the newest, e.g. {name}@2)",
                self.root,
            )
        ids = self.run_ids()
        for mine in (True, False):
            found = self._named(ids, name, mine, nth)
            if found:
                if len(found) < nth:
                    raise RunNotFound(
                        f"{ref} (only {len(found)} runs are called {name!r})", self.root
                    )
                return found[nth - 1]
        raise RunNotFound(ref, self.root)

    def _named(self, ids: list[str], name: str, mine: bool, enough: int) -> list[str]:
        """Up to ``enough`` sealed runs called ``name``, newest first (``mine``: only those
        reprokit did not make)."""
        out: list[str] = []
        for rid in reversed(ids):
            if len(out) >= enough:
                break
            run = self._sealed_run(rid)
            mine_ok = run is not None and (not mine or not made_by_reprokit(run))
            if mine_ok and run.get("name") == name:
                out.append(rid)
        return out

    def _sealed_run(self, rid: str) -> Any:
        """The ``run`` section of sealed run ``rid``; None when it is not sealed or corrupt."""
        if not os.path.exists(os.path.join(self._runs, rid, MANIFEST)):
            return None
        entry = self.entry(rid, head=True)
        return entry.manifest.run if entry.manifest is not None else None

    def _newest(self, ids: list[str], tests: tuple[Any, ...]) -> str | None:
        """The newest sealed run the first test accepts, else the second's, ...; a test of
        None accepts any sealed run."""
        runs: list[tuple[str, Any]] = []
        for test in tests:
            for rid, run in runs:
                if test is None or test(run):
                    return rid
            # Read the run sections once, lazily: the newest usually passes the first test.
            if not runs:
                for rid in reversed(ids):
                    run = self._sealed_run(rid)
                    if run is None:
                        continue
                    runs.append((rid, run))
                    if test is None or test(run):
                        return rid
        return None

    def load(self, ref: str) -> Manifest:
        """The sealed manifest of the run ``ref`` names."""
        rid = self.resolve(ref)
        entry = self.entry(rid)
        if entry.state == "corrupt":
            raise ManifestError(entry.error or f"{self.runs / rid / MANIFEST}: corrupt manifest")
        if entry.manifest is None:
            raise RunNotFound(f"{ref} (run {rid} is {entry.state}, not sealed)", self.root)
        return entry.manifest

    def _verify_shards(
        self, rid: str, manifest: Manifest, entries: list[tuple[int, str, str, str]]
    ) -> int:
        """Check every sealed shard of a group run against the ledger and its digests."""

        ranks = manifest.run.get("ranks")
        if not isinstance(ranks, dict):
            return 0
        ledger = {lrid: digest for _seq, lrid, digest, _chain in entries}
        checked = 0
        for shard in self.shards(rid):
            spath = shard.path / SHARD
            if not spath.exists():
                continue
            raw = spath.read_bytes()
            if ledger.get(shard.id) != hashlib.sha256(raw).hexdigest():
                raise TamperedError(f"{shard.id}/{SHARD} was modified after sealing", rid, SHARD)
            try:
                m = Manifest.from_bytes(raw, spath)
            except ManifestError as exc:
                raise TamperedError(str(exc), rid, SHARD) from None
            _verify_folder(shard.id, shard.path, SHARD, m.digests)
            checked += 1
        return checked

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
        lines = text.splitlines()
        if lines and not text.endswith("\n"):
            # A last line cut short by a crash mid-append vouches for nothing: ignored; the next
            # append truncates it (and heal_ledger writes it again whole when its run was sealed).
            lines.pop()
        out = []
        for n, line in enumerate(lines):
            parts = line.split()
            if len(parts) != 4 or not parts[0].isdigit():
                raise TamperedError(f"{name} line {n + 1} is malformed", path=name)
            out.append((int(parts[0]), parts[1], parts[2], parts[3]))
        return out

    def verify(self, ref: str) -> dict[str, object]:
        """Check a sealed run against its digests and the ledger; raise TamperedError naming
        the first file that does not match. Returns a summary of what was checked."""

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
        if head is None and self.heal_quietly():
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
        _verify_folder(rid, folder, MANIFEST, manifest.digests)
        objects = referenced_objects(manifest)
        for digest in objects:
            path = self.object_path(digest)
            if not path.exists():
                raise TamperedError(f"object {digest[:12]} ({path.name}) is missing", rid)
            if sha256_file(path)[0] != digest:
                raise TamperedError(f"object {digest[:12]} was modified", rid, str(path))
        shards = self._verify_shards(rid, manifest, self.ledger_entries())
        return {
            "run": rid,
            "shards": shards,
            "manifest_sha256": actual,
            "files": len(manifest.digests) + 1,
            "objects": len(objects),
            "ledger_head": head,
        }


def _verify_folder(label: str, folder: Path, commit: str, digests: Any) -> None:
    expected = dict(digests)
    present = _files_by_rel(folder)
    present.pop(commit, None)
    for rel in sorted(set(present) | set(expected)):
        if rel not in expected:
            raise TamperedError(f"{label}/{rel} was added after sealing", label, rel)
        if rel not in present:
            raise TamperedError(f"{label}/{rel} is missing", label, rel)
        if sha256_file(present[rel])[0] != expected[rel]:
            raise TamperedError(f"{label}/{rel} was modified after sealing", label, rel)


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


def _append_locked(fd: int, lines: list[tuple[str, str]], sync: bool) -> None:
    """Append chained lines for (label, manifest sha256) to the locked ledger ``fd``: all or
    nothing, after dropping a last line cut short by a crash or a full disk."""
    size = os.fstat(fd).st_size
    prev, seq = _GENESIS, 0
    if size:
        tail = os.pread(fd, min(size, 4096), max(0, size - 4096))
        if not tail.endswith(b"\n"):
            # A line cut short mid-append vouches for nothing (a manifest is only vouched for
            # by a whole line): drop it.
            cut = tail.rfind(b"\n")
            size = size - len(tail) + cut + 1 if cut >= 0 else max(0, size - len(tail))
            os.ftruncate(fd, size)
            tail = tail[: cut + 1] if cut >= 0 else b""
        last = tail.decode("ascii", "replace").rstrip("\n").rsplit("\n", 1)[-1].split()
        if len(last) == 4:
            seq, prev = int(last[0]) + 1, last[3]
    out = []
    for label, digest in lines:
        prev = _chain(prev, label, digest)
        out.append(f"{seq} {label} {digest} {prev}\n")
        seq += 1
    data = "".join(out).encode("ascii")
    try:
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        if sync:
            os.fsync(fd)
    except OSError:
        os.ftruncate(fd, size)  # all or nothing: never leave half a line
        raise


def _read_journal(path: str) -> tuple[list[str], list[tuple[str, str | None]]]:
    """A journal's first line (pid, host[, start time]) and the runs it started and did not
    finish, as (id, parent id or None), in order."""
    started: dict[str, str | None] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            head = fh.readline().split()
            for line in fh:
                parts = line.split()
                if len(parts) != 2:
                    continue  # a line still being written
                if parts[1] == "end":
                    started.pop(parts[0], None)
                else:
                    started[parts[0]] = None if parts[1] == "-" else parts[1]
    except (OSError, UnicodeDecodeError):
        return [], []
    return head, list(started.items())


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: O_APPEND writes of one line suffice there
        return
    fcntl.flock(fd, fcntl.LOCK_EX)


def _rel(path: str, folder: str | os.PathLike[str]) -> str:
    return os.path.relpath(path, folder).replace(os.sep, "/")


def _files_by_rel(folder: str | os.PathLike[str]) -> dict[str, str]:
    """Every file below ``folder``, by relative POSIX path (sorted): ``_files_under``'s paths
    start with the folder's own, so the relative path is what follows it."""
    top = os.fspath(folder)
    prefix = top if top.endswith(os.sep) else top + os.sep
    out = {}
    for path in _files_under(top):
        rel = path[len(prefix) :] if path.startswith(prefix) else _rel(path, top)
        out[rel if os.sep == "/" else rel.replace(os.sep, "/")] = path
    return out


class Stream:
    """A run's line file, written as UTF-8 text straight to its descriptor (no buffer: what a
    write hands the kernel survives the process being killed) and hashed as it is written: the
    seal takes its digest from here instead of reading the file back (``digest_folder``'s
    ``written``)."""

    __slots__ = ("_fd", "_sha", "size")

    def __init__(self, fd: int, size: int) -> None:
        self._fd: int | None = fd
        self._sha: Any = hashlib.sha256() if size == 0 else None
        self.size = size  # (appending to what was there: hashed from the file at the seal)

    def write(self, text: str) -> None:
        if self._fd is None:
            raise ValueError("write to a closed stream")
        data = text.encode("utf-8")
        write_all(self._fd, data)
        if self._sha is not None:
            self._sha.update(data)
        self.size += len(data)

    def close(self, keep_descriptor: bool = False) -> None:
        """No more writes; ``keep_descriptor``: leave the descriptor open (a thread still in a
        write keeps writing to this file, never to another one opened under its number)."""
        fd, self._fd = self._fd, None
        if fd is not None and not keep_descriptor:
            os.close(fd)

    def written(self) -> tuple[int, str] | None:
        """(bytes written, their sha256), or None when the file held more than this wrote."""
        return None if self._sha is None else (self.size, self._sha.hexdigest())

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def digest_folder(
    folder: str | os.PathLike[str], written: dict[str, tuple[int, str]] | None = None
) -> dict[str, str]:
    """sha256 of every file in a run folder, by relative POSIX path (manifest excluded).

    ``written``: (size, sha256) of files this process wrote whole through a :class:`Stream`:
    such a file is not read again while its size is still that one (a file another writer
    changed meanwhile is read and hashed as it is)."""
    out = {}
    known = written or {}
    for rel, path in _files_by_rel(folder).items():
        if rel == MANIFEST:
            continue
        mine = known.get(rel)
        if mine is not None:
            try:
                if os.stat(path).st_size == mine[0]:
                    out[rel] = mine[1]
                    continue
            except OSError:
                pass
        out[rel] = sha256_file(path)[0]
    return dict(sorted(out.items()))


def _read_only(folder: str, files: list[str] | None = None) -> None:
    """Make every file below ``folder`` (or its ``files``, relative paths) read-only; those
    created so are left as they are."""
    paths = _files_under(folder) if files is None else [os.path.join(folder, f) for f in files]
    for path in paths:
        try:
            if os.stat(path).st_mode & 0o222:
                os.chmod(path, 0o444)
        except OSError:
            pass


def _not_copied(path: str) -> bool:
    """True for what a copy of an artifact leaves out: links and special files."""
    import stat

    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return True
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _start_time(pid: int) -> str | None:
    """The kernel's start time of process ``pid`` (clock ticks since boot), where /proc tells:
    a pid reused by a later process has another one."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        return stat[stat.rindex(b")") + 2 :].split()[19].decode()
    except (OSError, ValueError, IndexError):
        return None


def _journal_alive(head: list[str]) -> bool:
    """Whether the process a journal's first line names (pid, host[, start time]) still runs."""
    if len(head) not in (2, 3):
        return False
    pid_s, host = head[0], head[1]
    if host != _hostname():
        return True  # another machine's run: assume it is still going
    try:
        os.kill(int(pid_s), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    if len(head) == 3:
        now = _start_time(int(pid_s))
        if now is not None and now != head[2]:
            return False  # the pid now belongs to another process
    return True
