"""Capture the exact source state of a run: commit, branch, remotes and every uncommitted byte.

Inside git the working tree (staged, unstaged and untracked-but-not-ignored files) is written as
a tree object through a temporary index, so the user's index is never touched, and kept alive by
a ref under ``refs/reprokit/``. A binary ``git diff`` from the commit to that tree is the
portable copy kept in the store. Outside git the entry file and the local modules it imported are
snapshotted instead. Plain ``git`` is run directly: GitPython's import alone would cost more than
the whole capture budget.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from reprokit._capture import unavailable, which
from reprokit._redact import strip_url_credentials

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from typing import Any

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_TOTAL_BYTES = 100 * 1024 * 1024
MAX_LISTED = 1000  # paths listed per category in a manifest; the counts are always exact
SNAPSHOT_REF = "refs/reprokit/snapshots/"
_IDENTITY = {
    "GIT_AUTHOR_NAME": "reprokit",
    "GIT_AUTHOR_EMAIL": "reprokit@localhost",
    "GIT_COMMITTER_NAME": "reprokit",
    "GIT_COMMITTER_EMAIL": "reprokit@localhost",
    # Fixed dates make the snapshot commit a pure function of tree and parent.
    "GIT_AUTHOR_DATE": "1970-01-01T00:00:00+0000",
    "GIT_COMMITTER_DATE": "1970-01-01T00:00:00+0000",
}


class GitError(Exception):
    """A git command failed; carries git's own first line of complaint."""


class CodeCapture:
    """What the code collector found: the manifest section and the blobs the store must keep."""

    __slots__ = ("section", "blobs", "root")

    def __init__(
        self,
        section: dict[str, Any],
        blobs: dict[str, bytes | Path] | None = None,
        root: Path | None = None,
    ) -> None:
        self.section = section
        self.blobs = blobs if blobs is not None else {}  # sha256 -> bytes, or a file to store
        self.root = root


def _git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["GIT_OPTIONAL_LOCKS"] = "0"  # never take index.lock while the user's git may be running
    env["LC_ALL"] = "C"
    env.pop("GIT_INDEX_FILE", None)
    if extra:
        env.update(extra)
    return env


def git(
    args: list[str],
    cwd: Path | str,
    *,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
) -> bytes:
    """Run ``git args`` in ``cwd`` and return its stdout; raise GitError with git's message."""
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env or _git_env(),
            input=input,
            capture_output=True,
        )
    except FileNotFoundError as exc:
        raise GitError("git is not installed (not found on PATH)") from exc
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(message[-1] if message else f"git {args[0]} exited {proc.returncode}")
    return proc.stdout


def _spawn(args: list[str], cwd: Path | str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["git", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _collect(proc: subprocess.Popen[bytes]) -> bytes:
    out, err = proc.communicate()
    if proc.returncode != 0:
        message = err.decode("utf-8", "replace").strip().splitlines()
        raise GitError(message[-1] if message else f"git exited {proc.returncode}")
    return out


def find_repo(start: Path | str) -> tuple[Path, Path] | None:
    """Return ``(work tree root, index path)`` of the repository holding ``start``, or None."""
    try:
        out = git(["rev-parse", "--show-toplevel", "--git-path", "index"], start)
    except GitError:
        return None
    lines = out.decode("utf-8", "surrogateescape").splitlines()
    if len(lines) < 2 or not lines[0]:
        return None  # a bare repository or inside .git: no work tree to capture
    return Path(lines[0]), Path(start, lines[1])


class _Status:
    def __init__(self) -> None:
        self.commit: str | None = None
        self.branch: str | None = None
        self.staged: list[str] = []
        self.unstaged: list[str] = []
        self.untracked: list[str] = []
        self.removed: list[str] = []  # paths gone from the work tree
        self.submodules: list[dict[str, Any]] = []


def _parse_status(raw: bytes) -> _Status:
    """Parse ``git status --porcelain=v2 --branch -z -uall`` output."""
    st = _Status()
    fields = raw.split(b"\0")
    i = 0
    while i < len(fields):
        rec = fields[i].decode("utf-8", "surrogateescape")
        i += 1
        if not rec:
            continue
        if rec.startswith("# branch.oid "):
            oid = rec.split(" ", 2)[2]
            st.commit = None if oid == "(initial)" else oid
        elif rec.startswith("# branch.head "):
            head = rec.split(" ", 2)[2]
            st.branch = None if head == "(detached)" else head
        elif rec.startswith("? "):
            st.untracked.append(rec[2:])
        elif rec[:2] in ("1 ", "2 ", "u "):
            kind = rec[0]
            nparts = {"1": 9, "2": 10, "u": 11}[kind]
            parts = rec.split(" ", nparts - 1)
            xy, sub, path = parts[1], parts[2], parts[-1]
            if kind == "2":
                orig = fields[i].decode("utf-8", "surrogateescape")
                i += 1
                st.removed.append(orig)
            if xy[0] != "." or kind == "u":
                st.staged.append(path)
            if xy[1] != "." or kind == "u":
                st.unstaged.append(path)
            if xy[1] == "D":
                st.removed.append(path)
            if sub.startswith("S"):
                st.submodules.append(
                    {
                        "path": path,
                        "new_commits": sub[1] == "C",
                        "modified_content": sub[2] == "M" or sub[3] == "U",
                    }
                )
    return st


def _listed(paths: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"count": len(paths)}
    out["paths"] = sorted(paths)[:MAX_LISTED]
    return out


def capture_git(
    start: Path,
    *,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> CodeCapture | None:
    """Capture the repository holding ``start``; None when ``start`` is not in one.

    The four read-only queries run side by side (each git process costs milliseconds).
    Raises GitError for a repository git itself cannot read.
    """
    env = _git_env()
    rev = _spawn(
        ["rev-parse", "--show-toplevel", "--git-path", "index", "--git-common-dir"], start, env
    )
    status = _spawn(
        ["status", "--porcelain=v2", "--branch", "-z", "-uall", "--ignore-submodules=none"],
        start,
        env,
    )
    remotes = _spawn(["config", "-z", "--get-regexp", r"^remote\..*\.url$"], start, env)
    head_tree = _spawn(["rev-parse", "-q", "--verify", "HEAD^{tree}"], start, env)
    try:
        lines = _collect(rev).decode("utf-8", "surrogateescape").splitlines()
    except GitError:
        for proc in (status, remotes, head_tree):
            proc.communicate()
        return None
    if len(lines) < 3 or not lines[0]:
        for proc in (status, remotes, head_tree):
            proc.communicate()
        return None  # a bare repository or inside .git: no work tree to capture
    root, index, common = Path(lines[0]), Path(start, lines[1]), Path(start, lines[2])
    st = _parse_status(_collect(status))
    remote_urls = _parse_remotes(remotes.communicate()[0])  # no remotes: git exits 1, fine
    tree_out, _ = head_tree.communicate()

    section: dict[str, Any] = {
        "kind": "git",
        "commit": st.commit,
        "branch": st.branch,
        "detached": st.branch is None and st.commit is not None,
        "remotes": remote_urls,
    }
    cap = CodeCapture(section=section, root=root)

    # Untracked files join the snapshot unless they break the size caps.
    included: list[str] = []
    skipped: list[dict[str, Any]] = []
    total = 0
    for rel in sorted(st.untracked):
        try:
            size = os.lstat(root / rel).st_size
        except OSError as exc:
            skipped.append({"path": rel, "size": None, "reason": f"unreadable: {exc.strerror}"})
            continue
        if size > max_file_bytes:
            reason = f"larger than {max_file_bytes} bytes per file"
            skipped.append({"path": rel, "size": size, "reason": reason})
        elif total + size > max_total_bytes:
            reason = f"over {max_total_bytes} bytes per run"
            skipped.append({"path": rel, "size": size, "reason": reason})
        else:
            included.append(rel)
            total += size

    section["dirty"] = bool(st.staged or st.unstaged or st.untracked)
    section["changes"] = {
        "staged": _listed(st.staged),
        "unstaged": _listed(st.unstaged),
        "untracked": _listed(included),
    }
    if skipped:
        section["skipped"] = skipped[:MAX_LISTED]
        section["skipped_count"] = len(skipped)
    if st.submodules:
        section["submodules"] = st.submodules
        lost = [s["path"] for s in st.submodules if s["modified_content"]]
        if lost:
            section["incomplete"] = [
                f"uncommitted changes inside submodule {p} are not captured" for p in lost
            ]

    if st.commit is not None and not st.staged and not st.unstaged and not included:
        tree = tree_out.decode().strip()
        snapshot = st.commit
    else:
        tree = _write_tree(root, index, common, st, included, env)
        base = st.commit or EMPTY_TREE
        args = ["commit-tree", tree, "-m", "reprokit snapshot of an uncommitted working tree"]
        if st.commit:
            args += ["-p", st.commit]
        commit_proc = _spawn(args, root, dict(env, **_IDENTITY))
        diff_proc = _spawn(
            ["diff", "--binary", "--full-index", "--no-renames", base, tree], root, env
        )
        snapshot = _collect(commit_proc).decode().strip()
        patch = _collect(diff_proc)
        digest = hashlib.sha256(patch).hexdigest()
        cap.blobs[digest] = patch
        section["patch"] = {"sha256": digest, "size": len(patch), "base": base}
    _keep_alive(root, common, snapshot, env)
    section["tree"] = tree
    section["snapshot"] = snapshot
    section["digest"] = f"git-tree:{tree}"
    return cap


def _parse_remotes(raw: bytes) -> dict[str, str]:
    remotes: dict[str, str] = {}
    for rec in raw.split(b"\0"):
        if not rec:
            continue
        key, _, value = rec.decode("utf-8", "replace").partition("\n")
        name = key[len("remote.") : -len(".url")]
        remotes[name] = strip_url_credentials(value)
    return dict(sorted(remotes.items()))


def _write_tree(
    root: Path, index: Path, common: Path, st: _Status, included: list[str], env: dict
) -> str:
    """Write the work tree's state as a tree object without touching the user's index."""
    tmp_index = common / f"reprokit-index-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        try:
            data = index.read_bytes()
        except FileNotFoundError:
            data = b""
        if data:
            tmp_index.write_bytes(data)
        ienv = dict(env, GIT_INDEX_FILE=str(tmp_index))
        paths = set(st.unstaged) | set(st.removed) | set(included)
        if st.commit is None:
            paths |= set(st.staged)
        if paths:
            payload = b"\0".join(p.encode("utf-8", "surrogateescape") for p in sorted(paths))
            git(
                ["update-index", "--add", "--remove", "-z", "--stdin"],
                root,
                env=ienv,
                input=payload,
            )
        return git(["write-tree"], root, env=ienv).decode().strip()
    finally:
        for leftover in (tmp_index, tmp_index.with_name(tmp_index.name + ".lock")):
            try:
                leftover.unlink()
            except OSError:
                pass


def _keep_alive(root: Path, common: Path, commit: str, env: dict) -> None:
    """Point a ref at ``commit`` so gc keeps it after branches move or are deleted."""
    ref = SNAPSHOT_REF + commit
    if (common / ref).exists():
        return
    git(["update-ref", ref, commit], root, env=env)


def capture_snapshot(entry: Path | None, modules: list[Path], base: Path) -> CodeCapture:
    """Snapshot the entry file and the local modules it imported, for runs outside git."""
    files: dict[str, str] = {}
    blobs: dict[str, bytes | Path] = {}
    for path in sorted({p.resolve() for p in ([entry] if entry else []) + modules}):
        try:
            rel = path.relative_to(base).as_posix()
            data = path.read_bytes()
        except (ValueError, OSError):
            continue
        digest = hashlib.sha256(data).hexdigest()
        files[rel] = digest
        blobs[digest] = data
    listing = "".join(f"{d}  {p}\n" for p, d in sorted(files.items())).encode()
    section = {
        "kind": "snapshot",
        "commit": None,
        "dirty": None,
        "files": files,
        "digest": "sha256:" + hashlib.sha256(listing).hexdigest(),
    }
    return CodeCapture(section=section, blobs=blobs, root=base)


def local_modules(base: Path) -> list[Path]:
    """Files of imported modules that live under ``base`` and outside any installed prefix."""
    prefixes = tuple(
        str(Path(p).resolve()) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix} if p
    )
    base_s = str(base)
    found: list[Path] = []
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if not f or not f.endswith(".py"):
            continue
        f = os.path.abspath(f)
        if (
            f.startswith(base_s + os.sep)
            and not f.startswith(prefixes)
            and ("site-packages" not in f)
        ):
            found.append(Path(f))
    return found


def capture_code(
    start: Path,
    entry: Path | None = None,
    *,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> CodeCapture:
    """Capture the code of a run started in ``start``; never raises.

    In git: the full source state. Outside git (or without git): a snapshot of ``entry`` and the
    local modules imported from its folder.
    """
    try:
        has_git = which("git") is not None
        if has_git:
            try:
                cap = capture_git(
                    start, max_file_bytes=max_file_bytes, max_total_bytes=max_total_bytes
                )
            except GitError as exc:
                return CodeCapture(section={"kind": "git", "error": unavailable(exc)})
            if cap is not None:
                return cap
        base = (entry.parent if entry else start).resolve()
        cap = capture_snapshot(entry, local_modules(base), base)
        if not has_git:
            cap.section["note"] = "git not found on PATH: snapshot of the entry file and modules"
        return cap
    except Exception as exc:  # a collector never breaks the user's run
        return CodeCapture(section={"kind": unavailable(exc)})
