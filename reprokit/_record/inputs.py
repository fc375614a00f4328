"""Inputs: the data a run read, fingerprinted for the manifest's ``inputs`` section.

A file is described by its path (relative to the recorded root when it lies below it), size and
sha256. A folder by its total size, file count and the sha256 of its *listing* — one
``"<sha256> <size> <path>\\n"`` line per file, sorted by path — which is kept in the store as an
object, so a replay can name the file in a folder that changed. Digests come from the store's
stat cache when a file's inode, size and times are unchanged (``full_hash=True`` reads every
byte again).

Declared inputs (``log_input``, ``track(inputs=)``, ``run(inputs=)``, ``reprokit run --input``)
are hashed when declared. Observed inputs (files the program opened for reading, see
``reprokit._record.observe``) are filtered and hashed when the run seals, within a budget:
``OBSERVED_HASH_FILES`` files and ``OBSERVED_HASH_BYTES`` bytes are hashed, up to
``OBSERVED_LIST_FILES`` more are listed by size and mtime, the rest only counted. Files in the
recorded source tree are covered by the code digest and are not repeated; secret files (``.env``,
``*.pem``, ...) are listed by path only.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time

from reprokit._capture.git import GitError, git
from reprokit._model.digest import sha256_file
from reprokit._model.errors import ReprokitError
from reprokit._model.redact import is_secret_file
from reprokit._record import observe
from reprokit._record.watch import FolderWatch
from reprokit._store.statcache import StatCache, cacheable, stat_key
from reprokit._store.store import Store

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

OBSERVED_HASH_FILES = 1000
OBSERVED_HASH_BYTES = 256 * 1024 * 1024
OBSERVED_LIST_FILES = 1000
# Off the caller's path, while the run goes on: a thread hashes the files the run opened, up to
# this many files and bytes (beyond, the budgets above apply at seal), every BACKGROUND_EVERY s.
BACKGROUND_HASH_FILES = 100_000
BACKGROUND_HASH_BYTES = 64 * 1024**3
BACKGROUND_EVERY = 0.25
# Of each BACKGROUND_EVERY, the background hasher works at most this long, then rests: it runs
# beside the program's own loop (sharing the GIL and, on small machines, the cores), so it may
# take a small share of the run's time and never a burst of it.
BACKGROUND_BUSY = 0.005
_I63 = (1 << 63) - 1  # inode numbers are unsigned 64-bit; the signature packs signed ones


# -- describing one input ------------------------------------------------------------------------


def relative_path(path: str, root: str | None, memo: dict[str, str] | None = None) -> str:
    """``path`` relative to ``root`` (POSIX separators) when below it, else absolute.

    ``memo`` caches real paths of folders (the files of one folder cost one lookup)."""
    memo = {} if memo is None else memo
    absolute = os.path.abspath(path)
    if root:

        def real(folder: str) -> str:
            if folder not in memo:
                memo[folder] = os.path.realpath(folder)
            return memo[folder]

        root_abs = os.path.abspath(root)
        head, tail = os.path.split(absolute)
        for a, r in ((absolute, root_abs), (os.path.join(real(head), tail), real(root_abs))):
            if a == r:
                return "."
            prefix = r.rstrip(os.sep) + os.sep
            if a.startswith(prefix):
                return a[len(prefix) :].replace(os.sep, "/")
    return absolute.replace(os.sep, "/")


def file_digest(
    path: str, cache: StatCache, full: bool = False, resolve: bool = True
) -> tuple[str, int, bool]:
    """(sha256, size, came from the cache) of the file at ``path``; ``resolve=False`` keys the
    cache by ``path`` as given (an absolute path) instead of its real path."""
    real = os.path.realpath(path) if resolve else path
    st = os.stat(real)
    if not full:
        cached = cache.file(real, st)
        if cached is not None:
            return cached, st.st_size, True
    digest, size = sha256_file(real)
    after = os.stat(real)
    if stat_key(after) == stat_key(st):  # not written to while we read it
        cache.remember_file(real, after, digest)
    return digest, size, False


def _walk(
    top: str,
    rel: str,
    found: list[tuple[str, os.stat_result]],
    nums: Any,
    seen: set[tuple[int, int]] | None = None,
    watch: FolderWatch | None = None,
) -> None:
    """Every file below ``top`` with its stat, in the order the folders list them (linked
    folders followed, each folder once: a link loop ends there). ``watch`` is given each folder
    before it is listed (a change from then on is seen)."""
    if seen is None:
        st = os.stat(top)
        seen = {(st.st_dev, st.st_ino)}
    if watch is not None:
        watch.add(top, rel)
    with os.scandir(top) as it:
        for entry in it:
            name = rel + entry.name
            try:
                if entry.is_dir():
                    if entry.is_symlink():
                        st = entry.stat()
                        if (st.st_dev, st.st_ino) in seen:
                            continue
                        seen.add((st.st_dev, st.st_ino))
                    _walk(entry.path, name + "/", found, nums, seen, watch)
                else:
                    if watch is not None and entry.is_symlink():
                        watch.complete = False  # the target's folder is not watched
                    st = entry.stat()
                    found.append((name, st))
                    nums.extend((st.st_ino & _I63, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
            except OSError:
                continue  # a broken link or a file gone meanwhile: not part of the data


def folder_listing(
    path: str,
    cache: StatCache,
    full: bool = False,
    *,
    watch: FolderWatch | None = None,
    changed_since: tuple[int, list[str]] | None = None,
) -> tuple[dict[str, Any], bytes | None]:
    """(description, listing bytes) of the folder at ``path``; listing None when cached.

    ``watch``: set on each folder as it is walked. ``changed_since``: (a wall-clock time in ns,
    a list) -- the files hashed again whose status changed at or after that time are appended
    to the list (a file changed after its run declared it)."""
    from array import array

    real = os.path.realpath(path)
    found: list[tuple[str, os.stat_result]] = []
    nums = array("q")
    _walk(real, "", found, nums, None, watch)
    # The cache key: every file's name and stat, in listing order (a different order is only a
    # cache miss). Packed numbers, not text: this is all an unchanged folder costs.
    sig = hashlib.sha256("\0".join(rel for rel, _ in found).encode("utf-8", "surrogateescape"))
    sig.update(nums.tobytes())
    signature = sig.hexdigest()
    if not full:
        cached = cache.folder_result(real, signature)
        if cached is not None:
            return cached, None
    found.sort(key=lambda item: item[0])
    old = {} if full else cache.folder_files(real)
    lines = []
    entries: dict[str, list[Any]] = {}
    total = 0
    hashed = 0
    racy = False
    for rel, st in found:
        key = stat_key(st)
        entry = old.get(rel)
        if is_secret_file("/" + rel):
            lines.append(f"secret {st.st_size} {rel}\n")
            total += st.st_size
            continue
        if isinstance(entry, list) and entry[:4] == key:
            digest = entry[4]
        else:
            digest, size = sha256_file(os.path.join(real, *rel.split("/")))
            hashed += size
            if size != st.st_size:
                racy = True
            if changed_since is not None and st.st_ctime_ns >= changed_since[0]:
                changed_since[1].append(rel)
        if cacheable(st, cache.racy_ns):
            entries[rel] = [*key, digest]
        else:
            racy = True
        lines.append(f"{digest} {st.st_size} {rel}\n")
        total += st.st_size
    listing = "".join(lines).encode("utf-8", "surrogateescape")
    result = {
        "kind": "folder",
        "size": total,
        "files": len(found),
        "sha256": hashlib.sha256(listing).hexdigest(),
    }
    cache.remember_folder(real, None if racy else signature, result, entries)
    return result, listing


def parse_listing(data: bytes) -> dict[str, tuple[str, int]]:
    """A folder listing as {path: (sha256 or "secret", size)}."""
    out = {}
    for line in data.decode("utf-8", "surrogateescape").splitlines():
        digest, _, rest = line.partition(" ")
        size, _, rel = rest.partition(" ")
        if rel:
            out[rel] = (digest, int(size) if size.isdigit() else -1)
    return out


def describe_input(
    path: str | os.PathLike[str],
    root: str | None,
    cache: StatCache,
    *,
    full: bool = False,
) -> tuple[dict[str, Any], bytes | None]:
    """(record, folder listing or None) for the file or folder at ``path``."""
    text = os.fspath(path)
    rel = relative_path(text, root)
    if not os.path.exists(text):
        raise ReprokitError(f"input {text!r} does not exist")
    record: dict[str, Any] = {"path": rel}
    if os.path.isdir(text):
        result, listing = folder_listing(text, cache, full)
        record.update(result)
        return record, listing
    if is_secret_file(os.path.abspath(text)):
        record.update({"kind": "file", "secret": True})
        return record, None
    digest, size, _cached = file_digest(text, cache, full)
    record.update({"kind": "file", "size": size, "files": 1, "sha256": digest})
    return record, None


# -- what one run read ---------------------------------------------------------------------------


_PREFIXES: dict[str, tuple[str, ...]] = {}


def _excluded_prefixes(extra: Iterable[str]) -> tuple[str, ...]:
    """Folders whose files are environment, not data: the interpreter, installed packages, the
    standard library, system folders, reprokit itself and the store."""
    key = "\0".join(extra)
    if key not in _PREFIXES:
        _PREFIXES.clear()
        _PREFIXES[key] = _prefixes(extra)
    return _PREFIXES[key]


def _prefixes(extra: Iterable[str]) -> tuple[str, ...]:
    # sysconfig would say the same, at a few milliseconds' import: os.py lives in the standard
    # library, site knows the site-packages folders.
    found = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    found.add(os.path.dirname(os.__file__))
    site = sys.modules.get("site")
    if site is not None:
        try:
            found.update(site.getsitepackages())
            found.add(site.getusersitepackages())
        except (AttributeError, TypeError):
            pass
    found.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.name == "posix":
        found.update(("/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/sys", "/dev",
                      "/run", "/var/lib", "/var/cache", "/snap"))  # fmt: skip
    found.update(extra)
    out = set()
    for p in found:
        if p:
            out.add(os.path.abspath(p).rstrip(os.sep) + os.sep)
            out.add(os.path.realpath(p).rstrip(os.sep) + os.sep)
    return tuple(sorted(out))


_TREES: dict[tuple[str, str], set[str]] = {}  # the last tree listed: runs of a sweep share it


def tree_paths(
    code: dict[str, Any], root: str | None, elsewhere: str | None = None
) -> set[str] | None:
    """The files of the recorded source tree, relative to its root (None: unknown).

    ``elsewhere``: a repository to ask when ``root`` is none (a replay's rebuilt tree)."""
    files = code.get("files")
    if code.get("kind") == "snapshot" and isinstance(files, dict):
        return set(files)
    tree = code.get("tree")
    if code.get("kind") == "git" and tree and root:
        if (root, tree) not in _TREES:
            out = None
            for repo in (root, elsewhere):
                try:
                    out = git(["ls-tree", "-r", "-z", "--name-only", tree], repo) if repo else None
                except GitError:
                    continue
                if out is not None:
                    break
            if out is None:
                return None
            _TREES.clear()
            _TREES[(root, tree)] = {
                p for p in out.decode("utf-8", "surrogateescape").split("\0") if p
            }
        return _TREES[(root, tree)]
    return None


# Files whose status changed this long before their folder was declared count as changed
# after it: file times come from the kernel's coarse clock, which lags the wall clock by a tick.
CLOCK_SLACK_NS = 20_000_000


class _Check:
    """A folder declared from the stat cache, checked off the caller's path.

    A daemon thread walks the folder (watching each of its folders first, where the system
    can), compares every file's stat with the cache and hashes what changed. ``finish`` (at
    seal) joins it; files that changed after the declaration -- status changed at or after it,
    or reported by the watch since -- are named in ``changed_during_run``, and the folder is
    walked again when the watch cannot vouch for it (its digest then, when another, is
    ``sha256_at_seal``; ``sha256`` stays the folder as the check found it). A process killed
    before ``finish`` seals nothing: no digest is recorded that was not checked.
    """

    def __init__(self, real: str, record: dict[str, Any], cache: StatCache) -> None:
        self.real = real
        self.record = record
        self.cache = cache
        self.since = time.time_ns() - CLOCK_SLACK_NS
        self.listing: bytes | None = None
        self.result: dict[str, Any] | None = None
        self.late: list[str] = []
        self.at_seal: str | None = None
        self.error: str | None = None
        self.watch: FolderWatch | None = None
        self._thread = threading.Thread(target=self._run, name="reprokit-input-check", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        # Let the caller have the interpreter back first: a thread that starts working at once
        # keeps it for a switch interval (5 ms) before log_input can return.
        time.sleep(0.002)
        try:
            with observe.paused():  # reprokit's own reads, not the run's
                self.watch = FolderWatch()
                self.result, self.listing = folder_listing(
                    self.real, self.cache, watch=self.watch, changed_since=(self.since, self.late)
                )
        except Exception as exc:  # never into the run: the record says it is unchecked
            self.error = f"{type(exc).__name__}: {exc}"

    def finish(self) -> dict[str, Any]:
        self._thread.join()
        record = {k: v for k, v in self.record.items() if k not in ("size", "files", "sha256")}
        watch = self.watch
        try:
            if self.error is None:
                changed = watch.changed() if watch is not None else None
                if changed is None or changed:
                    # The watch missed something or saw a change: walk again, hash what changed.
                    before = self.listing
                    with observe.paused():
                        again, listing = folder_listing(
                            self.real, self.cache, changed_since=(self.since, self.late)
                        )
                    assert self.result is not None
                    if again["sha256"] != self.result["sha256"]:
                        if before is not None and listing is not None:
                            then, now = parse_listing(before), parse_listing(listing)
                            self.late += [n for n in set(then) ^ set(now)]
                            self.late += [n for n in set(then) & set(now) if then[n] != now[n]]
                        elif not self.late:
                            self.late.append(".")  # files removed: named by the listing only
                        self.at_seal = again["sha256"]
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            if watch is not None:
                watch.close()
        if self.error is not None or self.result is None:
            record["unchecked"] = self.error or "not checked"
            return record
        record.update(self.result)
        if self.late:
            record["changed_during_run"] = sorted(set(self.late))[:20]
        if self.at_seal is not None:
            record["sha256_at_seal"] = self.at_seal
        return record


def _threads() -> int:
    """Threads in this process, native ones included where the system says (Linux)."""
    try:
        with open("/proc/self/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[17])
    except (OSError, ValueError, IndexError):
        return threading.active_count()


class _Hasher:
    """Hashes the files a run opens while it runs, off the caller's path (a daemon thread
    reading the observation log every ``BACKGROUND_EVERY`` s, within ``BACKGROUND_HASH_*``).

    A digest is kept with the stat the file had while it was read (the same before and after);
    the seal uses it only when the file's stat is still that one, and hashes or lists the file
    itself otherwise. ``finish`` stops the thread (a file being hashed is abandoned within a
    chunk) and joins it: what it did not reach is left to the seal's own budget, so a seal never
    waits for more than one chunk here. A process killed before the seal seals nothing.
    """

    CHUNK = 1 << 20
    SLICE = 256  # log entries read at a time (~0.5 ms)

    def __init__(self, token: int, cache: StatCache, skip: tuple[str, ...]) -> None:
        self.token = token
        self.cache = cache
        self.skip = skip
        self.digests: dict[str, tuple[list[int], str, int]] = {}
        self.files = 0
        self.bytes = 0
        self._index = 0
        self._reader = observe.LogReader()
        self._stop = threading.Event()
        self._burst = 0.0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start hashing, called at the run's first file read, in a process that already runs
        other threads (PyTorch, a BLAS pool, a DataLoader's). A single-threaded process is left
        alone, its files hashed or listed at the seal: there a second thread's mere existence
        slows file I/O by 4-6 % (Linux's file table loses its single-owner fast path)."""
        if self._thread is not None or self._stop.is_set():
            return
        with observe.paused():  # reprokit's own read, not the run's
            alone = _threads() <= 1
        if not alone:
            self._thread = threading.Thread(
                target=self._run, name="reprokit-input-hash", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        import stat as stat_mod
        from collections import deque

        pending: deque[str] = deque()
        try:  # the lowest CPU priority (Linux: per thread): the program's own threads go first
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (AttributeError, OSError):
            pass
        try:
            while not self._stop.wait(BACKGROUND_EVERY):
                self._burst = time.monotonic()
                while not self._stop.is_set():
                    if not pending:
                        # The log in slices: reading it holds the GIL, so it keeps to the
                        # burst like hashing does (an open-heavy loop logs faster than this
                        # reads: what is left is the seal's, within its own budget).
                        entries, self._index = observe.entries_since(
                            self.token, self._index, self.SLICE
                        )
                        if not entries:
                            break
                        pending.extend(self._reader.feed(entries))
                        if self._rest():
                            return
                        continue
                    if self.files >= BACKGROUND_HASH_FILES:
                        return
                    # Paused only while it reads (reprokit's own reads, not the run's): while
                    # any thread is paused, the audit hook asks every open which thread it is.
                    with observe.paused():
                        self._one(pending.popleft(), stat_mod.S_ISREG)
                    if self._rest():
                        return
        except Exception:
            return  # what is not hashed here is hashed or listed at seal

    def _one(self, path: str, is_file: Any) -> None:
        if path.startswith(self.skip) or path.endswith((".pyc", ".pyo")) or is_secret_file(path):
            return
        try:
            st = os.stat(path)
            if not is_file(st.st_mode) or self.bytes + st.st_size > BACKGROUND_HASH_BYTES:
                return
            digest = self.cache.file(path, st)
            if digest is None:
                digest = self._hash(path)
                if digest is None:
                    return  # stopped half-way: the seal decides
                self.bytes += st.st_size
            after = os.stat(path)
        except OSError:
            return
        if stat_key(after) == stat_key(st):  # not written to while it was read
            self.digests[path] = (stat_key(after), digest, st.st_size)
            self.cache.remember_file(path, after, digest)
            self.files += 1

    def _hash(self, path: str) -> str | None:
        h = hashlib.sha256()
        buf = bytearray(self.CHUNK)
        view = memoryview(buf)
        with open(path, "rb", buffering=0) as fh:
            while True:
                if self._stop.is_set():
                    return None
                n = fh.readinto(buf)
                if not n:
                    return h.hexdigest()
                h.update(view[:n])
                if self._rest():
                    return None

    def _rest(self) -> bool:
        """After a burst of ``BACKGROUND_BUSY`` s of work, wait ``BACKGROUND_EVERY`` s; True
        when the run is being sealed meanwhile (stop)."""
        if time.monotonic() - self._burst < BACKGROUND_BUSY:
            return False
        if self._stop.wait(BACKGROUND_EVERY):
            return True
        self._burst = time.monotonic()
        return False

    def finish(self) -> dict[str, tuple[list[int], str, int]]:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            try:
                thread.join()
            except RuntimeError:
                # Not started yet: another thread's first read is starting it at this moment
                # (start runs in whichever thread opens a file first). Once started it sees
                # the stop and ends at once, having hashed nothing.
                pass
        return self.digests


class InputLog:
    """The inputs of one run: declared as they come, observed between ``start`` and ``stop``."""

    def __init__(self, pending: Iterable[Any] = ()) -> None:
        self.pending = list(pending)
        self.declared: list[dict[str, Any]] = []
        self.listings: dict[str, bytes] = {}
        self._token: int | None = None
        self.observed_paths: list[str] = []
        self.dropped = 0
        self.cache = StatCache(None)
        self._folders: dict[str, str] = {}  # folder digests taken from the cache: sha -> path
        self._checks: list[_Check] = []
        self._file_stats: dict[str, tuple[str, list[int]]] = {}  # declared files: stat then
        self._hasher: _Hasher | None = None
        self._background: dict[str, tuple[list[int], str, int]] = {}
        self._since = 0  # wall-clock ns when observing began (less the clock slack)
        self._lock = threading.Lock()

    def declare(
        self,
        path: str | os.PathLike[str],
        root: str | None,
        *,
        name: str | None = None,
        source: str | None = None,
        full: bool = False,
    ) -> dict[str, Any]:
        """The input's record. A folder the stat cache knows comes back at once with its cached
        description, checked by a background thread (see ``_Check``); the manifest holds what
        that check found."""
        text = os.fspath(path)
        rel = relative_path(text, root)
        extra = {k: str(v) for k, v in (("name", name), ("source", source)) if v is not None}
        summary = None
        if not full and self.cache.folder is not None and os.path.isdir(text):
            real = os.path.realpath(text)
            summary = self.cache.folder_summary(real)
        if summary is not None:
            record = {"path": rel, **summary, **extra}
            check = _Check(real, record, self.cache)
            with self._lock:
                self._checks = [c for c in self._checks if c.record["path"] != rel] + [check]
                self._put(record)
            check.start()
            return dict(record)
        try:
            before = os.stat(text)
        except OSError:
            before = None
        record, listing = describe_input(path, root, self.cache, full=full)
        record.update(extra)
        if record.get("kind") == "file" and before is not None and "sha256" in record:
            self._file_stats[rel] = (os.path.abspath(text), stat_key(before))
        with self._lock:  # hashing above ran unlocked: metrics from other threads go on
            if listing is not None:
                self.listings[record["sha256"]] = listing
            elif record.get("kind") == "folder":
                self._folders[record["sha256"]] = os.path.abspath(text)
            self._checks = [c for c in self._checks if c.record["path"] != rel]
            self._put(record)
        return record

    def _put(self, record: dict[str, Any]) -> None:
        self.declared = [r for r in self.declared if r["path"] != record["path"]] + [record]

    def settle(self) -> None:
        """Wait for the background checks and put what they found in the records (a folder's
        digest, the files changed after it was declared); a declared file whose stat is no
        longer the one it had when declared is marked ``changed_during_run`` with its
        ``sha256_at_seal``."""
        with self._lock:
            checks, self._checks = self._checks, []
            files, self._file_stats = self._file_stats, {}
        for rec in self.declared:
            then = files.get(rec["path"])
            if then is None:
                continue
            try:
                if stat_key(os.stat(then[0])) == then[1]:
                    continue
                now, _size, _cached = file_digest(then[0], self.cache)
            except OSError:
                now = None
            rec["changed_during_run"] = True
            if now != rec.get("sha256"):
                rec["sha256_at_seal"] = now
        for check in checks:
            record = check.finish()
            with self._lock:
                if check.listing is not None and "sha256" in record:
                    self.listings[record["sha256"]] = check.listing
                elif "sha256" in record:
                    self._folders[record["sha256"]] = check.real
                if any(r is check.record for r in self.declared):
                    self._put(record)

    def start(self, store_root: str | None = None, background: bool = True) -> None:
        """Observe the files the run opens; ``background``: hash them as it runs."""
        if self._token is None:
            self._since = time.time_ns() - CLOCK_SLACK_NS
            self._token = observe.start()
            if background and BACKGROUND_HASH_FILES > 0:
                skip = _excluded_prefixes([store_root] if store_root else [])
                self._hasher = _Hasher(self._token, self.cache, skip)
                observe.when_read(self._token, self._hasher.start)

    def add_observed(self, paths: Iterable[str], lost: int, since_ns: int) -> None:
        """Files another process of the run read (a ``reprokit run`` program and its workers,
        as they reported them), observing from ``since_ns`` (wall clock)."""
        self.observed_paths = list(dict.fromkeys([*self.observed_paths, *paths]))
        self.dropped += lost
        if not self._since:
            self._since = since_ns - CLOCK_SLACK_NS

    def stop(self) -> None:
        if self._token is not None:
            if self._hasher is not None:
                self._background = self._hasher.finish()
                self._hasher = None
            self.observed_paths, self.dropped = observe.stop(self._token)
            self._token = None

    def section(
        self,
        root: str | None,
        code: dict[str, Any],
        store: Store,
        outputs: Iterable[str] = (),
    ) -> dict[str, Any] | None:
        """The manifest's ``inputs`` section (None when the run read nothing worth naming);
        folder listings are written to ``store`` as objects. Files below ``outputs`` (the run's
        artifacts: reprokit read them to hash them) are not inputs."""
        self.stop()
        self.settle()
        store_root = store.folder
        self._keep_listings(store)
        declared_paths = {r["path"] for r in self.declared} | set(outputs)
        candidates = self._observed_candidates(root, store_root, declared_paths)
        in_tree = None
        below_root = [r["path"] for r in self.declared] + [rel for rel, _ in candidates]
        if any(not rel.startswith("/") for rel in below_root):
            in_tree = tree_paths(code, root, os.path.dirname(store_root))
        declared = []
        for rec in self.declared:
            rec = dict(rec)
            if in_tree is not None and self._covered(rec, in_tree):
                rec["in_tree"] = True
            declared.append(rec)
        observed = self._observe(candidates, in_tree)
        out: dict[str, Any] = {}
        if declared:
            out["declared"] = declared
        if observed[0]:
            out["observed"] = observed[0]
        if observed[1]:
            out["observed_limits"] = observed[1]
        self.cache.save()
        return out or None

    def _keep_listings(self, store: Store) -> None:
        for rec in self.declared:
            digest = rec.get("sha256")
            if rec.get("kind") != "folder" or not digest:
                continue
            if digest not in self.listings and not store.has_object(digest):
                # Described from the cache, but its listing never reached this store.
                path = self._folders.get(digest)
                if path is None:
                    continue
                again, listing = folder_listing(path, self.cache, full=True)
                if listing is None or again["sha256"] != digest:
                    continue
                self.listings[digest] = listing
            if digest in self.listings:
                store.put_object(digest, self.listings[digest])

    def _covered(self, rec: dict[str, Any], in_tree: set[str]) -> bool:
        path = rec["path"]
        if rec.get("kind") != "folder":
            return path in in_tree
        listing = self.listings.get(rec.get("sha256", ""))
        if listing is None:
            return False
        names = parse_listing(listing)
        return bool(names) and all(f"{path}/{n}" in in_tree for n in names)

    def _observed_candidates(
        self, root: str | None, store_root: str | None, declared: set[str]
    ) -> list[tuple[str, str]]:
        if not self.observed_paths:
            return []
        skip = _excluded_prefixes([store_root] if store_root else [])
        memo: dict[str, str] = {}
        out = []
        for path in self.observed_paths:
            if path.endswith((".pyc", ".pyo")) or f"{os.sep}__pycache__{os.sep}" in path:
                continue
            if path.startswith(skip):
                continue
            head = os.path.dirname(path)
            if head not in memo:
                memo[head] = os.path.realpath(head)
            if (memo[head] + os.sep).startswith(skip):
                continue
            rel = relative_path(path, root, memo)
            if rel in declared or any(rel.startswith(d + "/") for d in declared):
                continue
            out.append((rel, path))
        return out

    def _observe(
        self, candidates: list[tuple[str, str]], in_tree: set[str] | None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        import stat as stat_mod

        records: list[dict[str, Any]] = []
        hashed_files = hashed_bytes = listed = background = 0
        unlisted: dict[str, list[int]] = {}  # folder -> [files, bytes] beyond the budget
        for rel, path in candidates:
            if in_tree is not None and rel in in_tree:
                continue  # covered by the code digest
            rec: dict[str, Any] = {"path": rel, "kind": "file"}
            try:
                st = os.stat(path)
            except OSError:
                continue  # gone, or never opened (the open itself failed)
            if not stat_mod.S_ISREG(st.st_mode):
                continue  # a folder, a device, a pipe: not data
            if is_secret_file(path):
                rec["secret"] = True
                records.append(rec)
                continue
            early = self._background.get(path)
            if st.st_ctime_ns >= self._since:
                # Changed after the run began (it may have read another state than this one).
                rec["changed_during_run"] = True
            try:
                if early is not None and early[0] == stat_key(st):
                    background += 1
                    rec.update({"size": early[2], "files": 1, "sha256": early[1]})
                elif hashed_files < OBSERVED_HASH_FILES and (
                    hashed_bytes + st.st_size <= OBSERVED_HASH_BYTES
                    or self.cache.file(path, st) is not None
                ):
                    digest, size, cached = file_digest(path, self.cache, resolve=False)
                    hashed_files += 1
                    hashed_bytes += 0 if cached else size
                    rec.update({"size": size, "files": 1, "sha256": digest})
                elif listed < OBSERVED_LIST_FILES:
                    listed += 1
                    rec.update({"size": st.st_size, "files": 1, "mtime_ns": st.st_mtime_ns})
                else:
                    folder = rel.rsplit("/", 1)[0] if "/" in rel else "."
                    count = unlisted.setdefault(folder, [0, 0])
                    count[0] += 1
                    count[1] += st.st_size
                    continue
            except OSError as exc:
                rec["unreadable"] = exc.strerror or str(exc)
            records.append(rec)
        limits: dict[str, Any] = {}
        if listed or unlisted or self.dropped:
            limits = {
                "hashed": hashed_files,
                "hashed_in_background": background,
                "listed_by_stat": listed,
                "budget": {
                    "hashed_files": OBSERVED_HASH_FILES,
                    "hashed_bytes": OBSERVED_HASH_BYTES,
                    "listed_files": OBSERVED_LIST_FILES,
                },
            }
            if unlisted:
                limits["unlisted"] = [
                    {"folder": f, "files": n, "size": b} for f, (n, b) in sorted(unlisted.items())
                ]
            if self.dropped:
                limits["opens_not_logged"] = self.dropped
        return records, limits
