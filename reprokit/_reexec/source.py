"""The source a re-execution runs: the recorded tree rebuilt and verified against its digest.

The tree comes from the repository's objects, else from the store's portable patch on top of
the recorded commit, else (outside git) from the snapshot's files kept in the store. A folder
someone hands over (an archive's source) is only checked; ``in_place_source`` uses the current
working tree and says how it differs.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from reprokit._capture.git import EMPTY_TREE, capture_code, changed_paths, find_repo, git
from reprokit._model.digest import sha256_file, snapshot_digest
from reprokit._model.errors import GitError, NotReplayable
from reprokit._model.manifest import Manifest
from reprokit._store.store import Store


def _repo_with(objects: list[str], candidates: list[str]) -> str | None:
    """The first repository among ``candidates`` that has every object in ``objects``."""
    seen = set()
    for start in candidates:
        found = find_repo(start) if os.path.isdir(start) else None
        if found is None or found[0] in seen:
            continue
        seen.add(found[0])
        try:
            git(["cat-file", "-e", *[f"{o}^{{object}}" for o in objects[:1]]], found[0])
            for obj in objects[1:]:
                git(["cat-file", "-e", obj], found[0])
        except GitError:
            continue
        return found[0]
    return None


def _checkout(repo: str, treeish: str, dest: str, scratch: str) -> None:
    """Write the files of ``treeish`` into ``dest`` without touching the repository's index."""
    env = dict(os.environ, GIT_INDEX_FILE=os.path.join(scratch, "index"), LC_ALL="C")
    env.pop("GIT_DIR", None)
    git(["read-tree", treeish], repo, env=env)
    # Parallel checkout (git >= 2.32; older versions ignore the setting): file creation
    # dominates rebuilding a large tree.
    git(
        [
            "-c",
            "checkout.workers=0",
            "checkout-index",
            "-a",
            "-f",
            f"--prefix={dest.rstrip(os.sep)}{os.sep}",
        ],
        repo,
        env=env,
    )
    os.unlink(os.path.join(scratch, "index"))


def tree_of(folder: str, repo: str | None, scratch: str) -> str:
    """The git tree id of ``folder``'s files (every file, ignore rules not applied)."""
    env = dict(os.environ, GIT_INDEX_FILE=os.path.join(scratch, "verify-index"), LC_ALL="C")
    if repo is None:
        odb = os.path.join(scratch, "odb")
        if not os.path.isdir(odb):
            git(["init", "-q", "--bare", odb], scratch)
        env["GIT_DIR"] = odb
        repo = scratch
    git(["--work-tree", folder, "add", "-A", "-f", "."], repo, env=env)
    tree = git(["write-tree"], repo, env=env).decode().strip()
    os.unlink(os.path.join(scratch, "verify-index"))
    return tree


def folder_snapshot_digest(folder: str) -> str:
    """The digest a snapshot (non-git) run records, computed over every file in ``folder``."""
    files = {}
    for dirpath, _dirs, names in os.walk(folder):
        for n in names:
            p = os.path.join(dirpath, n)
            files[os.path.relpath(p, folder).replace(os.sep, "/")] = sha256_file(p)[0]
    return snapshot_digest(files)


def check_source_dir(m: Manifest, folder: str, scratch: str) -> dict[str, Any]:
    """Check that ``folder`` holds exactly the run's recorded source (e.g. from an archive)."""
    code = m.code
    if code.get("kind") == "snapshot":
        digest = folder_snapshot_digest(folder)
        if digest != code.get("digest"):
            raise NotReplayable(m.id, f"the source in {folder} does not match the recorded digest")
        return {"mode": "archive", "digest": digest, "verified": True}
    tree = code.get("tree")
    if not tree:
        raise NotReplayable(m.id, "the run's code was not captured")
    found = tree_of(folder, None, scratch)
    if found != tree:
        raise NotReplayable(
            m.id, f"the source in {folder} is tree {found[:12]}, not the recorded {tree[:12]}"
        )
    return {"mode": "archive", "tree": tree, "verified": True}


def rebuild_source(m: Manifest, store: Store, dest: str, scratch: str) -> dict[str, Any]:
    """Rebuild the run's exact source tree in ``dest``; raise NotReplayable when it cannot.

    The result says which secret files were never captured (``excluded``): they are absent
    from the rebuilt tree, as they were from the recording.
    """
    out = _rebuild(m, store, dest, scratch)
    excluded = [e.get("path") for e in m.code.get("excluded") or [] if isinstance(e, dict)]
    if excluded:
        out["excluded"] = [str(p) for p in excluded]
    return out


def _rebuild(m: Manifest, store: Store, dest: str, scratch: str) -> dict[str, Any]:
    code = m.code
    kind = code.get("kind")
    os.makedirs(dest, exist_ok=True)
    if kind == "snapshot":
        for rel, digest in sorted((code.get("files") or {}).items()):
            target = os.path.join(dest, *rel.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(store.object_path(digest), target)
        digest = folder_snapshot_digest(dest)
        if digest != code.get("digest"):
            raise NotReplayable(m.id, f"the rebuilt snapshot's digest {digest} does not match")
        return {"mode": "snapshot", "digest": digest, "verified": True}
    if kind != "git" or not code.get("tree"):
        raise NotReplayable(m.id, "the run's code was not captured")
    tree = code["tree"]
    candidates = [os.getcwd(), str(store.root.parent)]
    repo = _repo_with([tree], candidates)
    how = "tree"
    if repo is not None:
        _checkout(repo, tree, dest, scratch)
    else:
        patch = code.get("patch")
        base = (patch or {}).get("base") or code.get("commit")
        if base is None:
            raise NotReplayable(m.id, "the recorded tree is in no repository here")
        if base != EMPTY_TREE:
            repo = _repo_with([base], candidates)
            if repo is None:
                raise NotReplayable(
                    m.id,
                    f"commit {base[:12]} is in no repository here: fetch it, or replay from "
                    "the repository the run was recorded in",
                )
            _checkout(repo, base, dest, scratch)
        if patch:
            data = store.object_path(patch["sha256"]).read_bytes()
            patch_file = os.path.join(scratch, "source.patch")
            with open(patch_file, "wb") as fh:
                fh.write(data)
            env = dict(os.environ, LC_ALL="C", GIT_DIR=os.path.join(scratch, "no-repo"))
            git(["apply", "--binary", "--whitespace=nowarn", patch_file], dest, env=env)
        how = "patch"
    rebuilt = tree_of(dest, repo, scratch)
    if rebuilt != tree:
        raise NotReplayable(
            m.id, f"the rebuilt source tree {rebuilt[:12]} does not match the recorded {tree[:12]}"
        )
    return {"mode": how, "tree": tree, "verified": True}


def in_place_source(m: Manifest) -> dict[str, Any]:
    """Use the current working tree; say how it differs from the recorded one."""
    cap = capture_code(os.getcwd())
    root = cap.root or os.getcwd()
    out: dict[str, Any] = {"mode": "in-place", "path": root, "verified": False}
    now = cap.section.get("tree")
    then = m.code.get("tree")
    if now and then and now == then:
        out["verified"] = True
        out["differs"] = []
        return out
    if now and then:
        try:
            out["differs"] = changed_paths(then, now, root)
        except GitError as exc:
            out["differs"] = f"unavailable: {exc}"
    else:
        out["differs"] = "unavailable: the current tree or the recorded one is not a git tree"
    return out
