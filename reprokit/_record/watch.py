"""Folder watches: which files of a declared input folder changed while a run was going on.

On Linux an inotify descriptor watches each folder of the input (a watch per folder, not per
file); reading its queue when the run seals says which files were written, truncated,
re-timed, created, removed or renamed since the watch began, at no cost on the way. Where no
watch can be set (another system, a folder reached through a link, the kernel's watch limit) the
answer is "unknown" and the caller walks the folder again.

The watch sees changes made through the watched folders only: a file written through a hard link
in another folder, or through a shared mapping, is not reported (the stat walk at seal would
see the first, not always the second).
"""

from __future__ import annotations

import os
import struct
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# inotify(7) masks
_MODIFY = 0x002
_ATTRIB = 0x004
_CLOSE_WRITE = 0x008
_MOVED_FROM = 0x040
_MOVED_TO = 0x080
_CREATE = 0x100
_DELETE = 0x200
_DELETE_SELF = 0x400
_MOVE_SELF = 0x800
_Q_OVERFLOW = 0x4000
_MASK = (
    _MODIFY | _ATTRIB | _CLOSE_WRITE | _MOVED_FROM | _MOVED_TO | _CREATE | _DELETE
    | _DELETE_SELF | _MOVE_SELF
)  # fmt: skip
_NONBLOCK = os.O_NONBLOCK if hasattr(os, "O_NONBLOCK") else 0
_CLOEXEC = 0o2000000
MAX_WATCHES = 4096  # folders watched per input; beyond, the seal walks the folder again
_EVENT = struct.Struct("iIII")

_libc: Any = None


def _inotify() -> Any:
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                libc = ctypes.CDLL(None, use_errno=True)
                libc.inotify_init1.argtypes = [ctypes.c_int]
                libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
                _libc = libc
            except (OSError, AttributeError, ImportError):
                _libc = False
    return _libc


class FolderWatch:
    """Changes below one folder from now on: ``add`` each of its folders, ``changed`` at the
    end (a set of paths relative to the folder, or None: unknown, walk again)."""

    def __init__(self) -> None:
        libc = _inotify()
        self._fd = -1
        if libc:
            fd = libc.inotify_init1(_NONBLOCK | _CLOEXEC)
            self._fd = fd if fd >= 0 else -1
        self._folders: dict[int, str] = {}
        self.complete = self._fd >= 0

    def add(self, path: str, rel: str) -> None:
        """Watch the folder at ``path`` (``rel``: its path in the input, "" or ending in "/")."""
        if not self.complete:
            return
        if len(self._folders) >= MAX_WATCHES:
            self.complete = False
            return
        wd = _libc.inotify_add_watch(self._fd, os.fsencode(path), _MASK)
        if wd < 0:
            self.complete = False
            return
        self._folders[wd] = rel

    def changed(self) -> set[str] | None:
        """Files changed since the watch began (None: the watch could not see everything)."""
        if not self.complete:
            return None
        out: set[str] = set()
        while True:
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                break
            except OSError:
                return None
            if not data:
                break
            at = 0
            while at + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, at)
                name = data[at + _EVENT.size : at + _EVENT.size + length].rstrip(b"\0")
                at += _EVENT.size + length
                if mask & _Q_OVERFLOW:
                    return None
                rel = self._folders.get(wd, "")
                out.add(rel + os.fsdecode(name) if name else rel.rstrip("/") or ".")
        return out

    def close(self) -> None:
        """Stop watching. Closing an inotify descriptor waits for the kernel's grace period
        (15-25 ms measured): a daemon thread does it, off the caller's path."""
        if self._fd >= 0:
            import threading

            threading.Thread(target=os.close, args=(self._fd,), daemon=True).start()
            self._fd = -1
        self.complete = False
