"""A re-execution's inputs: found, checked against their recorded digests, made available.

Inputs inside the recorded source tree come back with it. The others — typically a ``data/``
folder that git ignores — are looked up at their recorded relative paths below a *data root*
(where they are now: the repository the replay runs in, or a folder the caller names), their
digests are checked before the program starts, and each is linked into the rebuilt tree at its
recorded path, file by file (the folders are real: what the program writes stays in the rebuilt
tree). A missing input stops the replay (NotReplayable: "could not", never "different");
a changed one is reported, and named first among the likely causes of a difference.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from reprokit._capture.git import find_repo
from reprokit._model.errors import NotReplayable
from reprokit._model.manifest import Manifest
from reprokit._record.inputs import file_digest, folder_listing, parse_listing
from reprokit._store.statcache import StatCache
from reprokit._store.store import Store


def short(digest: Any) -> str:
    return f"{str(digest)[:12]}…" if digest else "-"


def _size(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else "?"


def _locate(rec: Any, data_roots: list[str]) -> tuple[str, str | None]:
    """(the first place the input exists, else where it was looked for first; its data root)."""
    path = str(rec["path"])
    if path.startswith("/") or os.path.isabs(path):
        return path, None
    places = [(os.path.join(root, *path.split("/")), root) for root in data_roots]
    return next((p for p in places if os.path.exists(p[0])), places[0])


def _link(link_into: str, path: str, found: str) -> int:
    """Link the input at ``found`` into the rebuilt tree at ``path``, file by file, in real
    folders: what the re-executed program writes lands in the rebuilt tree, never in the data
    folder the inputs come from. Returns how many files were linked."""
    parts = path.split("/")
    for i in range(1, len(parts)):
        if os.path.islink(os.path.join(link_into, *parts[:i])):
            return 0  # below a link made for another input: nothing to add
    dest = os.path.join(link_into, *parts)
    if not os.path.isdir(found):
        if os.path.lexists(dest):
            return 0
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.symlink(found, dest)
        return 1
    count = 0
    for dirpath, dirs, names in os.walk(found):
        dirs.sort()
        rel = os.path.relpath(dirpath, found)
        target = dest if rel == "." else os.path.join(dest, rel)
        if os.path.islink(target):
            continue
        os.makedirs(target, exist_ok=True)
        # os.walk does not enter linked folders: link them as they are.
        for n in sorted(d for d in dirs if os.path.islink(os.path.join(dirpath, d))) + sorted(
            names
        ):
            if not os.path.lexists(os.path.join(target, n)):
                os.symlink(os.path.join(dirpath, n), os.path.join(target, n))
                count += 1
    return count


def _safe_rel(path: str) -> bool:
    parts = path.split("/")
    return not path.startswith("/") and ".." not in parts and "" not in parts


def check_inputs(
    run_id: str,
    inputs: list[Any],
    store: Store,
    data_roots: list[str],
    *,
    link_into: str | None = None,
    full_hash: bool = False,
) -> dict[str, Any]:
    """Find and check every input record (``Manifest.inputs``) of run ``run_id`` that lies
    outside its recorded source tree.

    ``data_roots``: the folders the recorded relative paths are looked up in, in order.
    ``link_into``: the rebuilt tree, where each input is linked at its recorded path (None: the
    inputs are used where they are). Returns ``{data_root, checked, changed, unchecked,
    linked, located}`` (``located``: path -> {"at": where it was found, "sha256": its digest
    now, when hashed}); raises NotReplayable naming every missing input with its digest.
    """
    cache = StatCache(store.cache_dir)
    out: dict[str, Any] = {
        "data_root": os.pathsep.join(data_roots),
        "checked": [],
        "changed": [],
        "unchecked": [],
        "linked": [],
        "located": {},
    }
    missing = []
    for rec in inputs:
        if rec.get("in_tree") or rec.get("unreadable"):
            continue
        path = str(rec["path"])
        found, root = _locate(rec, data_roots)
        if not os.path.exists(found):
            missing.append((rec, found))
            continue
        recorded = rec.get("sha256")
        out["located"][path] = {"at": os.path.abspath(found), "sha256": None}
        if rec.get("unlisted"):
            why = f"{rec.get('files')} files read beyond the observation budget: not listed"
            out["unchecked"].append({"path": path, "why": why})
        elif rec.get("secret") or not recorded:
            why = "a secret file: not hashed" if rec.get("secret") else "listed by stat only"
            size_now = os.path.getsize(found) if os.path.isfile(found) else None
            if not rec.get("secret") and rec.get("size") not in (None, size_now):
                out["changed"].append(_changed(rec, None, size_now))
            else:
                out["unchecked"].append({"path": path, "why": why})
        else:
            now = _describe(found, rec, cache, full_hash)
            out["located"][path]["sha256"] = now["sha256"]
            if now["sha256"] != recorded:
                change = _changed(rec, now["sha256"], now.get("size"))
                if rec.get("kind") == "folder":
                    change["files"] = _folder_changes(store, recorded, now.get("listing"))
                out["changed"].append(change)
            else:
                out["checked"].append(path)
        linkable = root is not None and _safe_rel(path)
        if link_into is not None and linkable and _link(link_into, path, os.path.abspath(found)):
            out["linked"].append(path)
    cache.save()
    if missing:
        shown = "; ".join(
            f"{rec['path']} (sha256 {short(rec.get('sha256'))}, {_size(rec.get('size'))} bytes; "
            f"looked for {found})"
            for rec, found in missing[:5]
        )
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise NotReplayable(
            run_id,
            f"{len(missing)} input(s) missing: {shown}{more}; restore them, or point data_root "
            "at a folder that holds them at their recorded paths",
        )
    return out


def read_only_paths(checked: Mapping[str, Any]) -> list[str]:
    """Where the inputs of a ``check_inputs`` answer lie: what a sandbox mounts read-only."""
    located = checked.get("located") or {}
    return sorted({str(v["at"]) for v in located.values() if isinstance(v, Mapping)})


def modified_inputs(
    checked: Mapping[str, Any], store: Store, *, full_hash: bool = False
) -> list[dict[str, Any]]:
    """The inputs of a ``check_inputs`` answer whose digest is no longer what it was then (a
    re-executed program wrote into its input): ``[{path, before_sha256, after_sha256,
    before_size, after_size, files}]``."""
    cache = StatCache(store.cache_dir)
    out = []
    for path, seen in sorted((checked.get("located") or {}).items()):
        before = seen.get("sha256") if isinstance(seen, Mapping) else None
        if not before:
            continue
        at = str(seen["at"])
        if not os.path.exists(at):
            out.append({"path": path, "before_sha256": before, "after_sha256": None,
                        "files": ["(removed)"]})  # fmt: skip
            continue
        now = _describe(at, {"sha256": before}, cache, full_hash)
        if now["sha256"] != before:
            change = {
                "path": path,
                "before_sha256": before,
                "after_sha256": now["sha256"],
                "after_size": now.get("size"),
            }
            if now.get("kind") == "folder":
                change["files"] = _folder_changes(store, before, now.get("listing"))
            out.append(change)
    cache.save()
    return out


def _naming_files(text: str, change: dict[str, Any]) -> str:
    """A cause line with the first files of a folder input that changed, when known."""
    files = change.get("files")
    return f"{text} ({', '.join(files[:5])})" if files else text


def modified_causes(modified: list[dict[str, Any]]) -> list[str]:
    """Likely-cause lines for inputs the re-executed program wrote into."""
    lines = []
    for c in modified:
        text = _naming_files(
            f"the replayed program modified its input {c['path']}: sha256 "
            f"{short(c['before_sha256'])} → {short(c['after_sha256'])}",
            c,
        )
        lines.append(f"{text}; it is no longer the recorded data: restore it before replaying")
    return lines


def _describe(found: str, rec: Any, cache: StatCache, full: bool) -> dict[str, Any]:
    if os.path.isdir(found):
        result, listing = folder_listing(found, cache, full)
        if listing is None and result["sha256"] != rec.get("sha256"):
            # Changed, and described from the cache: list it again to name the files.
            result, listing = folder_listing(found, cache, True)
        return {**result, "listing": listing}
    digest, size, _ = file_digest(found, cache, full)
    return {"kind": "file", "sha256": digest, "size": size}


def _changed(rec: Any, now: str | None, size_now: int | None) -> dict[str, Any]:
    return {
        "path": rec["path"],
        "recorded_sha256": rec.get("sha256"),
        "now_sha256": now,
        "recorded_size": rec.get("size"),
        "now_size": size_now,
    }


def _folder_changes(store: Store, recorded: str, listing_now: bytes | None) -> list[str]:
    """The files of a folder input that were added, removed or modified (first 20)."""
    if listing_now is None or not store.has_object(recorded):
        return []
    then = parse_listing(store.object_path(recorded).read_bytes())
    now = parse_listing(listing_now)
    out = []
    for rel in sorted(set(then) | set(now)):
        if rel not in now:
            out.append(f"{rel} (removed)")
        elif rel not in then:
            out.append(f"{rel} (added)")
        elif then[rel] != now[rel]:
            out.append(f"{rel} (modified)")
    return out[:20]


def inputs_needed(store: Store, runs: list[Manifest]) -> list[Any]:
    """The inputs the re-execution needs: those of the runs it re-executes and of the runs
    nested in them (a command's tracked functions), each path once."""
    found: dict[str, Any] = {}
    ids = {r.id for r in runs}
    nested: list[Manifest] = []
    if any((r.run.get("entry") or {}).get("kind") == "command" for r in runs):
        nested = [
            e.manifest
            for e in store.entries()
            if e.manifest is not None and e.manifest.run.get("parent") in ids
        ]
    for r in [*runs, *nested]:
        for rec in r.inputs:
            found.setdefault(str(rec["path"]), rec)
        # Files read beyond the observation budget are known by folder only: it must exist.
        section = r.get("inputs")
        limits = section.get("observed_limits") if isinstance(section, Mapping) else None
        for item in (limits or {}).get("unlisted") or []:
            if isinstance(item, Mapping) and isinstance(item.get("folder"), str):
                rec = {"path": item["folder"], "kind": "folder", "unlisted": True}
                found.setdefault(item["folder"], {**rec, "files": item.get("files")})
    return list(found.values())


def resolve_data_roots(given: Any, store: Store, in_place_root: str | None = None) -> list[str]:
    """Where a replay looks for inputs recorded at relative paths, in order."""
    if isinstance(given, (list, tuple)):
        return [os.path.abspath(os.fspath(g)) for g in given]
    if given is not None:
        return [os.path.abspath(os.fspath(given))]
    if in_place_root is not None:
        return [in_place_root]
    found = find_repo(os.getcwd())
    if found is not None:
        return [found[0]]
    if store.root.name == ".reprokit":
        return [str(store.root.parent)]
    return [os.getcwd()]


def make_inputs_available(m: Manifest, store: Store, source: str) -> dict[str, Any]:
    """For a re-execution of ``m`` in the rebuilt tree ``source``: check its inputs below the
    default data root and link them in (NotReplayable when one is missing)."""
    needed = inputs_needed(store, [m])
    if not needed:
        return {}
    return check_inputs(m.id, needed, store, resolve_data_roots(None, store), link_into=source)


def input_causes(changed: list[dict[str, Any]]) -> list[str]:
    """Likely-cause lines for inputs that changed since the recording."""
    causes = []
    for c in changed:
        causes.append(
            _naming_files(
                f"input {c['path']} changed: sha256 {short(c['recorded_sha256'])} → "
                f"{short(c['now_sha256'])}, size {_size(c['recorded_size'])} → "
                f"{_size(c['now_size'])}",
                c,
            )
        )
    return causes
