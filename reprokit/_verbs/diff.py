"""``diff``: what differs between two runs, section by section."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reprokit._capture.git import changed_paths
from reprokit._model.compare import diff_mappings
from reprokit._model.errors import GitError
from reprokit._model.manifest import Manifest, as_mapping
from reprokit._model.report import Report
from reprokit._store.store import Store


@dataclass(frozen=True)
class DiffReport(Report):
    """Differences between two runs, by section; each entry is ``{key, a, b}``."""

    a: str
    b: str
    sections: dict[str, Any] = field(default_factory=dict)


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
    fields = diff_mappings(
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
        try:
            return changed_paths(ca["tree"], cb["tree"], store.root.parent)
        except GitError as exc:
            return f"unavailable: {exc}"
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


def _inputs(ma: Manifest, mb: Manifest) -> list[dict[str, Any]]:
    """Inputs whose digest (or size, for those listed by stat) differs, by path."""

    def keyed(m: Manifest) -> dict[str, Any]:
        return {
            str(r["path"]): r.get("sha256") or ("secret" if r.get("secret") else r.get("size"))
            for r in m.inputs
        }

    return diff_mappings(keyed(ma), keyed(mb))


def diff(a: str, b: str, store: Store | Path | str | None = None) -> DiffReport:
    """What differs between runs ``a`` and ``b``: code, params, seeds, inputs, packages,
    hardware, outputs, environment."""
    st = Store.at(store)
    ma, mb = st.load(a), st.load(b)
    ea, eb = ma.environment, mb.environment
    sections: dict[str, Any] = {
        "code": _code(ma, mb, st),
        "params": diff_mappings(ma.params, mb.params),
        "seeds": diff_mappings(ma.seeds, mb.seeds),
        "inputs": _inputs(ma, mb),
        "packages": _packages(ea, eb),
        "environment": diff_mappings(
            {"python": ea.get("python"), "variables": ea.get("variables")},
            {"python": eb.get("python"), "variables": eb.get("variables")},
        ),
        "hardware": diff_mappings(ma.hardware, mb.hardware),
        "outputs": diff_mappings(
            _by_path(ma.outputs), _by_path(mb.outputs), skip=("checkpoints.file",)
        ),
    }
    return DiffReport(ma.id, mb.id, sections)
