"""Running code someone else recorded inside a sandbox: bubblewrap (``bwrap``) with no network,
the whole host read-only (``/tmp`` too: ``TMPDIR`` points into the replay's folder), and writes
allowed only inside the replay's own folders. Where bubblewrap is missing or cannot create
namespaces, ``available`` says why and the caller asks for ``trust`` instead."""

from __future__ import annotations

import shutil
import subprocess

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


def _base(bwrap: str) -> list[str]:
    return [
        bwrap,
        "--die-with-parent",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--tmpfs", "/dev/shm",
    ]  # fmt: skip


def wrap(
    argv: list[str], cwd: str, writable: list[str], read_only: list[str] | tuple[str, ...] = ()
) -> list[str]:
    """``argv`` run inside the sandbox, in ``cwd``, able to write only under ``writable`` and
    never under ``read_only`` (a run's inputs: read-only even inside a writable folder)."""
    bwrap, why = available()
    if bwrap is None:
        raise OSError(why)
    cmd = _base(bwrap)
    for path in writable:
        cmd += ["--bind", path, path]
    for path in read_only:  # after the writable binds: a later mount covers an earlier one
        inner = [w for w in writable if (w.rstrip("/") + "/").startswith(path.rstrip("/") + "/")]
        if not inner:  # (an input that holds the replay's own folders stays writable)
            cmd += ["--ro-bind", path, path]
    if writable:  # /tmp stays read-only (interpreters and venvs may live there): temp files
        cmd += ["--setenv", "TMPDIR", writable[0]]  # go to the replay's own folder
    return [*cmd, "--chdir", cwd, "--", *argv]
