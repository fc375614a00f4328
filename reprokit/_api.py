"""The verbs as functions: load, verify, diff. Each returns data; none prints or exits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reprokit._model.manifest import Manifest, as_mapping
from reprokit._store.store import Store

_MISSING = "<absent>"


def load(ref: str, store: Store | Path | str | None = None) -> Manifest:
    """The sealed manifest of a run: ``ref`` is a run id, a unique prefix/suffix, or "latest"."""
    return Store.at(store).load(ref)


@dataclass(frozen=True)
class VerifyReport:
    """What ``verify`` checked: the run, its manifest digest, file and object counts."""

    run_id: str
    intact: bool
    manifest_sha256: str
    files: int
    objects: int
    ledger_head: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "run": self.run_id,
            "intact": self.intact,
            "manifest_sha256": self.manifest_sha256,
            "files": self.files,
            "objects": self.objects,
            "ledger_head": self.ledger_head,
        }


def verify(
    ref: str,
    store: Store | Path | str | None = None,
    *,
    replay: bool = False,
    venv: bool = False,
    rtol: float = 0.0,
    atol: float = 0.0,
) -> Any:
    """Check a sealed run (or an archive file) against its digests.

    For a run: returns a ``VerifyReport`` when intact. For an archive (``.tar.gz``/``.zip``):
    checks every checksum and run, replays every run with ``replay=True`` (inside a fresh
    virtualenv with ``venv=True``) and returns an ``ArchiveVerifyReport``. Raises
    ``TamperedError`` naming the first file that does not match.
    """
    from reprokit._verbs.archive import is_archive, verify_archive

    if is_archive(str(ref)):
        return verify_archive(ref, replay=replay, venv=venv, rtol=rtol, atol=atol)
    info = Store.at(store).verify(ref)
    return VerifyReport(
        run_id=str(info["run"]),
        intact=True,
        manifest_sha256=str(info["manifest_sha256"]),
        files=int(info["files"]),  # type: ignore[call-overload]
        objects=int(info["objects"]),  # type: ignore[call-overload]
        ledger_head=str(info["ledger_head"]),
    )


@dataclass(frozen=True)
class DiffReport:
    """Differences between two runs, by section; each entry is ``{key, a, b}``."""

    a: str
    b: str
    sections: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": 1, "a": self.a, "b": self.b, "sections": self.sections}


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``{"a.b.c": leaf}``; lists are leaves."""
    out: dict[str, Any] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, Mapping) and value:
                out.update(flatten(value, name))
            else:
                out[name] = value
    else:
        out[prefix or "value"] = data
    return out


def compare(a: Any, b: Any, skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Leaf-by-leaf differences of two nested mappings, sorted by key."""
    fa, fb = flatten(a or {}), flatten(b or {})
    out = []
    for key in sorted(set(fa) | set(fb)):
        if key.startswith(skip):
            continue
        va, vb = fa.get(key, _MISSING), fb.get(key, _MISSING)
        if va != vb:
            out.append({"key": key, "a": va, "b": vb})
    return out


def _packages(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    pa = as_mapping(a.get("packages"))
    pb = as_mapping(b.get("packages"))
    out: dict[str, Any] = {}
    added = sorted(set(pb) - set(pa))
    removed = sorted(set(pa) - set(pb))
    changed = [
        {"name": n, "a": pa[n], "b": pb[n]} for n in sorted(set(pa) & set(pb)) if pa[n] != pb[n]
    ]
    if added:
        out["added"] = [{"name": n, "version": pb[n]} for n in added]
    if removed:
        out["removed"] = [{"name": n, "version": pa[n]} for n in removed]
    if changed:
        out["changed"] = changed
    return out


def _code(ma: Manifest, mb: Manifest, store: Store) -> dict[str, Any]:
    ca, cb = ma.code, mb.code
    out: dict[str, Any] = {}
    fields = compare(
        {k: ca.get(k) for k in ("kind", "commit", "branch", "dirty", "digest", "remotes")},
        {k: cb.get(k) for k in ("kind", "commit", "branch", "dirty", "digest", "remotes")},
    )
    if fields:
        out["fields"] = fields
    if ca.get("digest") == cb.get("digest"):
        return out
    files = _tree_diff(ca, cb, store)
    if files is not None:
        out["files"] = files
    return out


def _tree_diff(ca: Mapping[str, Any], cb: Mapping[str, Any], store: Store) -> Any:
    """File-level differences between two recorded trees (git trees or snapshots)."""
    if ca.get("kind") == "git" and cb.get("kind") == "git" and ca.get("tree") and cb.get("tree"):
        from reprokit._capture.git import GitError, git

        repo = store.root.parent
        try:
            raw = git(["diff", "--name-status", "-z", "--no-renames", ca["tree"], cb["tree"]], repo)
        except GitError as exc:
            return f"unavailable: {exc}"
        parts = raw.decode("utf-8", "surrogateescape").split("\0")
        names = {"A": "added", "D": "removed", "M": "modified", "T": "type changed"}
        return [
            {"path": parts[i + 1], "change": names.get(parts[i][:1], parts[i])}
            for i in range(0, len(parts) - 1, 2)
            if parts[i]
        ]
    fa = ca.get("files") if isinstance(ca.get("files"), Mapping) else None
    fb = cb.get("files") if isinstance(cb.get("files"), Mapping) else None
    if fa is None or fb is None:
        return None
    out = []
    for path in sorted(set(fa) | set(fb)):
        if path not in fa:
            out.append({"path": path, "change": "added"})
        elif path not in fb:
            out.append({"path": path, "change": "removed"})
        elif fa[path] != fb[path]:
            out.append({"path": path, "change": "modified"})
    return out


def _by_path(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Outputs with artifact lists keyed by path, so a diff names the file that changed."""
    out = dict(outputs)
    for key in ("artifacts", "declared"):
        items = out.get(key)
        if isinstance(items, list):
            keyed: dict[str, Any] = {}
            for rec in items:
                if isinstance(rec, Mapping) and "path" in rec:
                    files = rec.get("files")
                    if isinstance(files, list):
                        for f in files:
                            if isinstance(f, Mapping):
                                keyed[f"{rec['path']}/{f.get('path')}"] = f.get("sha256")
                    else:
                        keyed[str(rec["path"])] = rec.get("sha256")
            out[key] = keyed
    return out


def diff(a: str, b: str, store: Store | Path | str | None = None) -> DiffReport:
    """What differs between runs ``a`` and ``b``: code, params, seeds, packages, hardware,
    outputs, environment."""
    st = Store.at(store)
    ma, mb = st.load(a), st.load(b)
    ea, eb = ma.environment, mb.environment
    sections: dict[str, Any] = {
        "code": _code(ma, mb, st),
        "params": compare(ma.params, mb.params),
        "seeds": compare(ma.seeds, mb.seeds),
        "packages": _packages(ea, eb),
        "environment": compare(
            {"python": ea.get("python"), "variables": ea.get("variables")},
            {"python": eb.get("python"), "variables": eb.get("variables")},
        ),
        "hardware": compare(ma.hardware, mb.hardware),
        "outputs": compare(_by_path(ma.outputs), _by_path(mb.outputs), skip=("checkpoints.file",)),
    }
    return DiffReport(ma.id, mb.id, sections)
