"""Where a store's bytes live: a small interface with three operations, and its backends.

A backend holds immutable blobs under ``/``-separated keys and knows three operations:

``put_if_absent(key, data) -> bool``
    Create ``key`` holding ``data`` unless it exists; True if this call created it. This is the
    only write, and it never overwrites: it is the commit point of everything the store does
    (on S3, a PUT with ``If-None-Match: *``).
``get(key) -> bytes | None``
    The bytes under ``key``, or None when there is none.
``list(prefix) -> list[str]``
    Every key that starts with ``prefix``, sorted.

Backends: :class:`FolderBackend` (a local or shared folder) and ``S3Backend`` (S3-compatible
object storage through s3fs, in ``reprokit._store.s3``; ``pip install
'reprokit-verdict[s3]'``). A new backend is a class with these three methods, returned by
:func:`open_backend` for its URL scheme.
"""

from __future__ import annotations

import errno
import hashlib
import os

from reprokit._model.errors import StoreError
from reprokit._model.protocol import ChildProtocol
from reprokit._store.s3 import S3Backend

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from typing import Protocol

    class Backend(Protocol):
        """Blobs under keys; put-if-absent, get, list (see the module docstring)."""

        url: str

        def put_if_absent(self, key: str, data: bytes) -> bool: ...

        def get(self, key: str) -> bytes | None: ...

        def list(self, prefix: str) -> list[str]: ...


def write_once(path: str, data: bytes, tmp_dir: str | None = None, mode: int = 0o644) -> bool:
    """Write ``data`` to ``path`` atomically unless it exists; True if this call wrote it.

    An unnamed file (Linux's O_TMPFILE) or else a temp file in ``tmp_dir`` (same filesystem;
    default: beside ``path``), created with ``mode``, fsync, then a hard link as the
    create-if-absent commit (O_EXCL where links are not supported).
    """
    folder = tmp_dir or os.path.dirname(path)
    if folder not in _NO_UNNAMED:
        done = _write_unnamed(path, data, folder, mode)
        if done is not None:
            return done
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            return _write_excl(path, data, mode)
        return True
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


_NO_UNNAMED: set[str] = set()  # folders where an unnamed file cannot be made or linked
# "/" opened once: given a dir fd, os.link calls linkat(AT_SYMLINK_FOLLOW), which follows the
# /proc link (the kernel ignores the dir fd for an absolute path: one closed later does no harm)
_ROOT: list[int] = []


def _write_unnamed(path: str, data: bytes, folder: str, mode: int) -> bool | None:
    """``write_once`` through an unnamed file in ``folder``, linked in as ``path`` once it is
    written and fsync'd: no temp name to make and remove, nothing left behind by a crash.
    None where this OS, file system or process cannot (the caller uses a named temp file)."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or os.link not in os.supports_dir_fd:
        _NO_UNNAMED.add(folder)
        return None
    try:
        fd = os.open(folder, flag | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError:
        _NO_UNNAMED.add(folder)  # (a file system without O_TMPFILE: NFS, some FUSE mounts)
        return None
    try:
        write_all(fd, data)
        os.fsync(fd)
        try:
            if not _ROOT:
                _ROOT.append(os.open("/", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)))
            # The descriptor's /proc link, followed: the file itself gets the name.
            os.link(f"/proc/self/fd/{fd}", path, src_dir_fd=_ROOT[0])
        except FileExistsError:
            return False
        except OSError:  # no /proc, or a file system or policy that refuses the link
            _NO_UNNAMED.add(folder)
            return None
        return True
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_excl(path: str, data: bytes, mode: int = 0o644) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return False
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


class FolderBackend:
    """A folder (local, or shared over NFS) as a backend: keys are relative paths."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.url = self.root

    def __repr__(self) -> str:
        return f"FolderBackend({self.root!r})"

    def _path(self, key: str) -> str:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") for p in parts):
            raise StoreError(f"bad key {key!r}", self.root)
        return os.path.join(self.root, *parts)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            return write_once(path, data)
        except OSError as exc:
            raise StoreError(f"cannot write {key}: {exc.strerror or exc}", path) from None

    def get(self, key: str) -> bytes | None:
        try:
            with open(self._path(key), "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {key}: {exc.strerror or exc}", self.root) from None

    def list(self, prefix: str) -> list[str]:
        out: list[str] = []
        # Walk only below the prefix's folder part ("runs/" -> runs/), not the whole store.
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self._path(base) if base else self.root
        for dirpath, _dirs, files in os.walk(start):
            rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            base = "" if rel == "." else rel + "/"
            out.extend(base + n for n in files if not n.startswith("."))
        return sorted(k for k in out if k.startswith(prefix))


def is_url(address: str | os.PathLike[str] | None) -> bool:
    """Whether a store address names a remote store (``s3://...``, ``file://...``)."""
    return isinstance(address, str) and "://" in address


def check_url(url: str) -> str:
    """``url`` with its trailing slashes removed, or StoreError when it cannot be a store."""
    scheme, _, rest = url.partition("://")
    if scheme not in ("s3", "file"):
        raise StoreError(f"unknown store scheme {scheme + '://'!r} (s3:// or file://)", url)
    host = rest.split("/", 1)[0]
    if "@" in host:
        # Credentials come from the environment or profiles, never from a recorded address.
        raise StoreError("a store URL must not carry credentials (use the environment)", url)
    if not rest.strip("/"):
        raise StoreError(f"store URL {url!r} names no bucket or folder", url)
    return url.rstrip("/")


def open_backend(url: str) -> Backend:
    """The backend for ``url``: ``s3://bucket/prefix`` or ``file:///folder``."""
    url = check_url(url)
    if url.startswith("file://"):
        return FolderBackend(url[len("file://") :])
    return S3Backend(url)


def local_root(url: str) -> str:
    """The local folder that stages and caches the remote store ``url`` on this machine:
    $REPROKIT_CACHE/remotes/..., else the user's cache folder (~/.cache/reprokit)."""
    url = check_url(url)
    base = ChildProtocol.from_env().cache
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "reprokit")
    readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in url.split("://", 1)[1])
    tag = hashlib.sha256(url.encode()).hexdigest()[:10]
    return os.path.join(os.path.abspath(base), "remotes", f"{readable[-60:]}-{tag}")
