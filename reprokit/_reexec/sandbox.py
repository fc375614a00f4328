"""Running code someone else recorded inside a sandbox: bubblewrap (``bwrap``) with no network,
the whole host read-only (``/tmp`` too: ``TMPDIR`` points into the replay's folder), and writes
allowed only inside the replay's own folders. Where bubblewrap is missing or cannot create
namespaces, ``available`` says why and the caller asks for ``trust`` instead."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

_status: tuple[str | None, str] | None = None


def available() -> tuple[str | None, str]:
    """(path of a working bwrap, "") or (None, why not); tried once per process."""
    global _status
    if _status is None:
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            _status = (None, "bubblewrap (bwrap) is not installed")
        else:
            try:
                proc = subprocess.run(
                    [*_base(bwrap), "--", "true"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    stdin=subprocess.DEVNULL,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                _status = (None, f"bwrap cannot start: {exc}")
            else:
                if proc.returncode == 0:
                    _status = (bwrap, "")
                else:
                    last = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
                    _status = (None, f"bwrap cannot create its namespaces here: {last}")
    return _status


def _base(bwrap: str, network: bool = False) -> list[str]:
    return [
        bwrap,
        "--die-with-parent",
        *([] if network else ["--unshare-net"]),
        "--unshare-ipc",
        "--unshare-uts",
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--tmpfs", "/dev/shm",
    ]  # fmt: skip


# Folders of the system that a recorded tree is never put over (a forged ``run.root``).
_SYSTEM = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
           "/run", "/sbin", "/sys", "/usr", "/var")  # fmt: skip


_MAX_REMOUNTED = 2000


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def can_place(dest: str, scratch: str) -> bool:
    """Whether a rebuilt tree can be shown at ``dest`` inside the sandbox: an absolute folder
    that is not the root, a system folder, the Python installation or the replay's scratch
    folder (nor above any of them), and that exists or has an existing parent other than /
    with at most 2,000 entries."""
    dest = os.path.normpath(dest)
    if not os.path.isabs(dest) or dest == "/" or "\0" in dest:
        return False
    if any(_under(dest, s) or _under(s, dest) for s in _SYSTEM):
        return False
    for kept in (sys.base_prefix, os.path.realpath(sys.base_prefix), scratch):
        if _under(kept, dest):
            return False
    if os.path.isdir(dest):
        return True
    parent = _deepest_existing(dest)
    if parent in (None, "/"):
        return False
    try:  # its entries are mounted again one by one: a bounded number of them
        return len(os.listdir(parent)) <= _MAX_REMOUNTED
    except OSError:
        return False


def _deepest_existing(path: str) -> str | None:
    parent = os.path.dirname(path)
    while parent != "/" and not os.path.isdir(parent):
        parent = os.path.dirname(parent)
    return parent if os.path.isdir(parent) and not os.path.islink(parent) else None


def _mount_point(dest: str) -> list[str]:
    """bwrap options that let ``dest`` be mounted on although the host is read-only: when it
    does not exist, its deepest existing parent becomes a tmpfs holding that parent's entries
    again (read-only), where the missing folders can be made."""
    if os.path.isdir(dest):
        return []
    parent = _deepest_existing(dest)
    if parent in (None, "/"):
        raise OSError(f"no folder can be made at {dest} in the sandbox")
    opts = ["--tmpfs", parent]
    for name in sorted(os.listdir(parent)):
        entry = os.path.join(parent, name)
        if os.path.islink(entry):
            opts += ["--symlink", os.readlink(entry), entry]
        else:
            opts += ["--ro-bind", entry, entry]
    return opts


def wrap(
    argv: list[str],
    cwd: str,
    writable: list[str],
    read_only: list[str] | tuple[str, ...] = (),
    place: tuple[str, str] | None = None,
    network: bool = False,
) -> list[str]:
    """``argv`` run inside the sandbox, in ``cwd``, able to write only under ``writable`` and
    never under ``read_only`` (a run's inputs: read-only even inside a writable folder).

    ``place`` = (folder, path): ``folder`` (the rebuilt tree) appears at ``path`` (where the
    tree lay when recorded), writable; the Python environment stays visible when it lay there.
    ``network``: keep the host's network (installing packages from an index needs it).
    """
    bwrap, why = available()
    if bwrap is None:
        raise OSError(why)
    cmd = _base(bwrap, network)
    if place is not None:
        folder, dest = place
        cmd += _mount_point(dest) + ["--bind", folder, dest]
        for kept in (sys.prefix, os.path.dirname(sys.executable)):
            if _under(kept, dest) and os.path.isdir(kept):  # a virtualenv inside the project
                cmd += ["--ro-bind", kept, kept]
    for path in writable:
        cmd += ["--bind", path, path]
    for path in read_only:  # after the writable binds: a later mount covers an earlier one
        inner = [w for w in writable if (w.rstrip("/") + "/").startswith(path.rstrip("/") + "/")]
        if not inner:  # (an input that holds the replay's own folders stays writable)
            cmd += ["--ro-bind", path, path]
    if writable:  # /tmp stays read-only (interpreters and venvs may live there): temp files
        cmd += ["--setenv", "TMPDIR", writable[0]]  # go to the replay's own folder
    return [*cmd, "--chdir", cwd, "--", *argv]
