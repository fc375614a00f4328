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
import threading

from reprokit._capture import unavailable, which
from reprokit._capture.modules import own_module_files
from reprokit._model.digest import snapshot_digest
from reprokit._model.errors import GitError
from reprokit._model.redact import strip_url_credentials
from reprokit._model.secrets import SecretFiles

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_TOTAL_BYTES = 100 * 1024 * 1024
MAX_LISTED = 1000  # paths listed per category in a manifest; the counts are always exact
SNAPSHOT_REF = "refs/reprokit/snapshots/"


class CodeCapture:
    """What the code collector found: the manifest section and the blobs the store must keep."""

    __slots__ = ("section", "blobs", "root", "_pending", "_lock")

    def __init__(
        self,
        section: dict[str, Any],
        blobs: dict[str, bytes] | None = None,
        root: str | None = None,
    ) -> None:
        self.section = section
        self.blobs = blobs if blobs is not None else {}  # sha256 -> content to store
        self.root = root  # the repository's (or snapshot's) root folder
        self._pending: tuple[subprocess.Popen[bytes], str] | None = None  # (diff, its base)
        # Runs of several threads share one capture: the second to ask must wait for the patch
        # the first is collecting, not take the section without it.
        self._lock = threading.Lock()

    def patch_pending(self, diff: subprocess.Popen[bytes], base: str) -> None:
        """The portable patch is being written by ``diff`` (against ``base``): collected by
        ``complete``."""
        self._pending = (diff, base)

    def complete(self) -> CodeCapture:
        """Collect the portable patch if it is still being written; never raises.

        The patch is needed only when the run is sealed, so the user's function starts while
        git writes it.
        """
        if self._pending is None:
            return self
        with self._lock:
            if self._pending is None:  # collected by another thread while this one waited
                return self
            proc, base = self._pending
            try:
                patch = _collect(proc)
            except GitError as exc:
                self.section["patch"] = unavailable(exc)
                self._pending = None
                return self
            digest = hashlib.sha256(patch).hexdigest()
            self.blobs[digest] = patch
            self.section["patch"] = {"sha256": digest, "size": len(patch), "base": base}
            self._pending = None  # last: a thread that sees None finds the patch in place
        return self


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
    cwd: str | os.PathLike[str],
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


def _spawn(
    args: list[str], cwd: str | os.PathLike[str], env: dict[str, str]
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["git", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _collect(proc: subprocess.Popen[bytes]) -> bytes:
    out, err = proc.communicate()
    if proc.returncode != 0:
        message = err.decode("utf-8", "replace").strip().splitlines()
        raise GitError(message[-1] if message else f"git exited {proc.returncode}")
    return out


_CHANGES = {"A": "added", "D": "removed", "M": "modified", "T": "type changed"}


def changed_paths(tree_a: str, tree_b: str, repo: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Files that differ between two trees of ``repo``: ``{"path", "change"}`` (added,
    removed, modified, type changed), in git's order. Raises GitError."""
    raw = git(["diff", "--name-status", "-z", "--no-renames", tree_a, tree_b], repo)
    parts = raw.decode("utf-8", "surrogateescape").split("\0")
    return [
        {"path": parts[i + 1], "change": _CHANGES.get(parts[i][:1], parts[i])}
        for i in range(0, len(parts) - 1, 2)
        if parts[i]
    ]


def find_repo(start: str | os.PathLike[str]) -> tuple[str, str] | None:
    """Return ``(work tree root, index path)`` of the repository holding ``start``, or None."""
    try:
        out = git(["rev-parse", "--show-toplevel", "--git-path", "index"], start)
    except GitError:
        return None
    lines = out.decode("utf-8", "surrogateescape").splitlines()
    if len(lines) < 2 or not lines[0]:
        return None  # a bare repository or inside .git: no work tree to capture
    return lines[0], os.path.join(start, lines[1])


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
    start: str | os.PathLike[str],
    *,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> CodeCapture | None:
    """Capture the repository holding ``start``; None when ``start`` is not in one.

    The four read-only queries run side by side (each git process costs milliseconds).
    Raises GitError for a repository git itself cannot read.
    """
    env = _git_env()
    # One rev-parse answers four questions. In a repository without commits it prints the first
    # three and fails on HEAD^{tree}; outside a repository it prints nothing.
    rev = _spawn(
        ["rev-parse", "--show-toplevel", "--git-path", "index", "--git-common-dir", "HEAD^{tree}"],
        start,
        env,
    )
    status = _spawn(
        ["status", "--porcelain=v2", "--branch", "-z", "-uall", "--ignore-submodules=none"],
        start,
        env,
    )
    rev_out, rev_err = rev.communicate()
    lines = rev_out.decode("utf-8", "surrogateescape").splitlines()
    if len(lines) < 3 or not lines[0]:
        status.communicate()
        if b"not a git repository" in rev_err or not rev_err.strip():
            return None  # outside a repository (or a bare one): no work tree to capture
        raise GitError(rev_err.decode("utf-8", "replace").strip().splitlines()[-1])
    root = lines[0]
    index, common = os.path.join(start, lines[1]), os.path.join(start, lines[2])
    head_tree = lines[3] if rev.returncode == 0 and len(lines) > 3 else None
    st = _parse_status(_collect(status))
    remote_urls = read_remotes(common)

    section: dict[str, Any] = {
        "kind": "git",
        "commit": st.commit,
        "branch": st.branch,
        "detached": st.branch is None and st.commit is not None,
        "remotes": remote_urls,
    }
    cap = CodeCapture(section=section, root=root)

    # Secret files (.env, keys, credential stores...) never enter the tree, the patch or the
    # store: untracked ones are left out, and a tracked one keeps its committed content.
    changed = sorted(set(st.staged) | set(st.unstaged) | set(st.removed))
    untracked = sorted(st.untracked)
    excluded: list[dict[str, str]] = []
    secret_changed: list[dict[str, str]] = []
    if untracked or changed:  # a clean tree has nothing to check (and pays nothing)
        policy = SecretFiles.for_tree(root)
        untracked, excluded = policy.split(untracked)
        secret_changed = [e for e in policy.split(changed)[1] if e["path"] not in st.untracked]
    for e in secret_changed:
        e["reason"] += " (uncommitted changes not captured)"
    excluded.extend(secret_changed)

    # Untracked files join the snapshot unless they break the size caps.
    included: list[str] = []
    skipped: list[dict[str, Any]] = []
    total = 0
    for rel in untracked:
        try:
            size = os.lstat(os.path.join(root, rel)).st_size
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
    if excluded:
        section["excluded"] = sorted(excluded, key=lambda e: e["path"])[:MAX_LISTED]
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

    secret_paths = {e["path"] for e in secret_changed}
    clean = not (set(st.staged) | set(st.unstaged)) - secret_paths and not included
    if st.commit is not None and head_tree and clean:
        tree = head_tree
        _keep_alive(root, common, SNAPSHOT_REF + st.commit, st.commit, env)
    else:
        tree = _write_tree(root, index, common, st, included, env, secret_paths)
        base = st.commit or EMPTY_TREE
        diff = _spawn(["diff", "--binary", "--full-index", "--no-renames", base, tree], root, env)
        cap.patch_pending(diff, base)
        # The ref names the tree itself: replay needs the tree, and a commit object would cost
        # another git process on the caller's path.
        _keep_alive(root, common, SNAPSHOT_REF + tree, tree, env)
    section["tree"] = tree
    section["ref"] = SNAPSHOT_REF + (tree if section["dirty"] else st.commit or tree)
    section["digest"] = f"git-tree:{tree}"
    return cap


def read_remotes(common: str) -> dict[str, str]:
    """{remote name: URL without credentials} from the repository's config file.

    Read directly (a git process costs more than the whole parse); ``include`` directives and
    ``insteadOf`` rewrites are not followed.
    """
    remotes: dict[str, str] = {}
    try:
        with open(os.path.join(common, "config"), encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return remotes
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            head = line[1:].split("]", 1)[0].strip()
            name, _, sub = head.partition(" ")
            section = sub.strip().strip('"') if name.lower() == "remote" and sub else None
            continue
        if section is not None:
            key, _, value = line.partition("=")
            if key.strip().lower() == "url":
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                remotes.setdefault(section, strip_url_credentials(value))
    return dict(sorted(remotes.items()))


def _write_tree(
    root: str,
    index: str,
    common: str,
    st: _Status,
    included: list[str],
    env: dict,
    secret_paths: set[str] | frozenset[str] = frozenset(),
) -> str:
    """Write the work tree's state as a tree object without touching the user's index; tracked
    ``secret_paths`` keep their committed content (or are left out when never committed)."""
    tmp_index = os.path.join(common, f"reprokit-index-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        try:
            with open(index, "rb") as fh:
                data = fh.read()
            index_stat = os.stat(index)
        except FileNotFoundError:
            data = b""
        if data:
            with open(tmp_index, "wb") as fh:
                fh.write(data)
            # Keep the index's own timestamp: git trusts a file's stat data only when the file
            # is older than the index ("racy git"). A copy stamped "now" would make a file
            # rewritten in the same second as the last commit look unchanged, and its old
            # content would be snapshotted.
            os.utime(tmp_index, ns=(index_stat.st_atime_ns, index_stat.st_mtime_ns))
        ienv = dict(env, GIT_INDEX_FILE=tmp_index)
        paths = set(st.unstaged) | set(st.removed) | set(included)
        if st.commit is None:
            paths |= set(st.staged)
        paths -= secret_paths
        staged_secrets = sorted(secret_paths & set(st.staged))
        if staged_secrets:
            payload = b"\0".join(p.encode("utf-8", "surrogateescape") for p in staged_secrets)
            if st.commit is not None:
                # back to the committed content (dropped when the commit lacks the file)
                git(["reset", "-q", "--pathspec-from-file=-", "--pathspec-file-nul", "HEAD"],
                    root, env=ienv, input=payload)  # fmt: skip
            else:
                git(["rm", "-q", "--cached", "--ignore-unmatch", "--pathspec-from-file=-",
                     "--pathspec-file-nul"], root, env=ienv, input=payload)  # fmt: skip
        if paths:
            payload = b"\0".join(p.encode("utf-8", "surrogateescape") for p in sorted(paths))
            args = ["update-index", "--add", "--remove", "-z", "--stdin"]
            if len(paths) > _MANY_PATHS and _git_version() >= (2, 39):
                # Thousands of new files: stream their blobs into one pack instead of one
                # loose object file each (measured: 10,000 files from 6.1 s to 1.2 s). Only for
                # update-index: in a diff the setting would make every file "binary".
                args = ["-c", "core.bigFileThreshold=1", *args]
            git(
                args,
                root,
                env=ienv,
                input=payload,
            )
        return git(["write-tree"], root, env=ienv).decode().strip()
    finally:
        for leftover in (tmp_index, tmp_index + ".lock"):
            try:
                os.unlink(leftover)
            except OSError:
                pass


_MANY_PATHS = 500
_version: tuple[int, ...] | None = None


def _git_version() -> tuple[int, ...]:
    """git's version as numbers, asked once per process (only when it matters)."""
    global _version
    if _version is None:
        try:
            text = git(["version"], ".").decode().split()[2]
            _version = tuple(int(p) for p in text.split(".")[:2] if p.isdigit())
        except (GitError, IndexError, ValueError):
            _version = (0,)
    return _version


def _keep_alive(root: str, common: str, ref: str, oid: str, env: dict) -> None:
    """Point ``ref`` at ``oid`` so gc keeps it after branches move or are deleted.

    A loose ref is a file holding the object id: writing it directly saves a git process.
    Repositories with the reftable backend ignore loose files, so there ``update-ref`` runs.
    """
    path = os.path.join(common, *ref.split("/"))
    if os.path.exists(path):
        return
    if not os.path.isdir(os.path.join(common, "reftable")):
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w") as fh:
                fh.write(oid + "\n")
            os.replace(tmp, path)
            return
        except OSError:
            pass
    git(["update-ref", ref, oid], root, env=env)


def capture_snapshot(entry: Path | None, modules: list[Path], base: Path) -> CodeCapture:
    """Snapshot the entry file and the local modules it imported, for runs outside git."""
    files: dict[str, str] = {}
    blobs: dict[str, bytes] = {}
    for path in sorted({p.resolve() for p in ([entry] if entry else []) + modules}):
        try:
            rel = path.relative_to(base).as_posix()
            data = path.read_bytes()
        except (ValueError, OSError):
            continue
        digest = hashlib.sha256(data).hexdigest()
        files[rel] = digest
        blobs[digest] = data
    section = {
        "kind": "snapshot",
        "commit": None,
        "dirty": None,
        "files": files,
        "digest": snapshot_digest(files),
    }
    return CodeCapture(section=section, blobs=blobs, root=str(base))


def local_modules(base: Path) -> list[Path]:
    """Files of imported modules that live under ``base`` and outside any installed prefix."""
    from pathlib import Path

    return [Path(f) for f in own_module_files(str(base))]


def capture_code(
    start: str | os.PathLike[str],
    entry: str | os.PathLike[str] | None = None,
    *,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    wait: bool = True,
) -> CodeCapture:
    """Capture the code of a run started in ``start``; never raises.

    In git: the full source state. Outside git (or without git): a snapshot of ``entry`` and the
    local modules imported from its folder. ``wait=False`` returns before the portable patch is
    written: call ``complete()`` on the result before using its ``section`` or ``blobs``.
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
                return cap.complete() if wait else cap
        from pathlib import Path

        entry_path = Path(entry) if entry else None
        base = (entry_path.parent if entry_path else Path(start)).resolve()
        cap = capture_snapshot(entry_path, local_modules(base), base)
        if not has_git:
            cap.section["note"] = "git not found on PATH: snapshot of the entry file and modules"
        return cap
    except Exception as exc:  # a collector never breaks the user's run
        return CodeCapture(section={"kind": unavailable(exc)})
