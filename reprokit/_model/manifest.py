"""The manifest: one YAML document per run, schema 1, read back only through safe, checked paths."""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType

from reprokit._model.errors import ManifestError
from reprokit._model.yaml import SCHEMA, SECTIONS, dump, dump_section, render

TYPE_CHECKING = False  # typing and pathlib cost ~4 ms at import: recording a run needs neither
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

__all__ = [
    "SCHEMA",
    "SECTIONS",
    "Manifest",
    "dump",
    "dump_section",
    "made_by_reprokit",
    "render",
    "top_level",
]

MAX_MANIFEST_BYTES = 256 * 1024 * 1024


def _safe_load(data: bytes, path: Path | str | None) -> Any:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"manifest is larger than {MAX_MANIFEST_BYTES} bytes", path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"manifest is not UTF-8 (byte {exc.start})", path) from None
    try:
        if "*" in text or "&" in text:
            # Aliases are how "billion laughs" documents blow up; reprokit never writes them.
            for event in yaml.parse(text, Loader=loader):
                if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                    raise ManifestError("manifest uses YAML anchors/aliases (refused)", path)
        return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a 5000-digit int, 2001-13-45
        raise ManifestError(f"manifest holds an unreadable value: {exc}", path) from None
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ManifestError(f"manifest is not valid YAML: {first}", path) from None
    except RecursionError:
        raise ManifestError("manifest nests too deeply", path) from None


def made_by_reprokit(run: Mapping[str, Any]) -> bool:
    """Whether a manifest's ``run`` section is a record reprokit made on its own: a replay's
    verdict, a re-execution by ``replay`` or ``check`` (``replay_of``), or one execution of an
    audit or a seed sweep (``group``). The one definition ``latest``, ``ls`` and ``replay --all``
    share."""
    entry = run.get("entry")
    if isinstance(entry, Mapping) and entry.get("kind") == "replay":
        return True
    return bool(run.get("replay_of") or run.get("group"))


def top_level(run: Mapping[str, Any]) -> bool:
    """Whether a ``run`` section is a run the user started themselves: made by neither reprokit
    nor another run (a nested call, a pool worker's call, a tracked call inside ``reprokit
    run``)."""
    return not (made_by_reprokit(run) or run.get("parent") or run.get("worker_of"))


def as_mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a mapping, else an empty one: manifest sections read defensively."""
    return value if isinstance(value, Mapping) else {}


class Manifest:
    """A sealed run's manifest, read-only. ``data`` holds every section as plain values."""

    __slots__ = ("data", "path")
    data: Mapping[str, Any]
    path: Path | None

    def __init__(self, data: Mapping[str, Any], path: Path | None = None) -> None:
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "path", path)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a Manifest is read-only")

    def __repr__(self) -> str:
        return f"<Manifest {self.id} {self.status}>"

    @classmethod
    def from_bytes(cls, raw: bytes, path: Path | None = None) -> Manifest:
        """Parse and check a manifest; raise ManifestError naming what is wrong."""
        data = _safe_load(raw, path)
        if not isinstance(data, dict):
            raise ManifestError("manifest is not a mapping", path)
        schema = data.get("schema")
        if type(schema) is not int or schema != SCHEMA:
            raise ManifestError(
                f"unsupported schema {schema!r} (this reprokit reads schema {SCHEMA})", path
            )
        run = data.get("run")
        if not isinstance(run, dict) or not isinstance(run.get("id"), str):
            raise ManifestError("manifest has no run.id", path)
        for key in ("status", "started"):
            if not isinstance(run.get(key), str):
                raise ManifestError(f"manifest has no run.{key} (a string)", path)
        for key in ("code", "params", "seeds", "inputs", "outputs", "environment", "digests"):
            if data.get(key) is not None and not isinstance(data[key], dict):
                raise ManifestError(f"manifest section {key!r} is not a mapping", path)
        if run.get("entry") is not None and not isinstance(run["entry"], dict):
            raise ManifestError("manifest has a run.entry that is not a mapping", path)
        return cls(MappingProxyType(data), path)

    @classmethod
    def load(cls, path: Path, head: bool = False) -> Manifest:
        """Read a manifest file. ``head=True`` parses only ``run`` and ``code`` (what a listing
        shows): the environment section makes up most of a manifest's parsing time."""
        from pathlib import Path

        try:
            if os.path.getsize(path) > MAX_MANIFEST_BYTES:
                raise ManifestError(f"manifest is larger than {MAX_MANIFEST_BYTES} bytes", path)
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ManifestError(f"cannot read manifest: {exc.strerror}", path) from None
        if head:
            # Top-level keys are the only lines starting with "params:" at column 0: nested
            # values and multi-line blocks are indented.
            cut = raw.find(b"\nparams:")
            if cut > 0:
                raw = raw[: cut + 1]
        return cls.from_bytes(raw, Path(path))

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    @property
    def id(self) -> str:
        return self.data["run"]["id"]

    @property
    def name(self) -> str | None:
        return self.data["run"].get("name")

    @property
    def status(self) -> str:
        return self.data["run"]["status"]

    @property
    def run(self) -> Mapping[str, Any]:
        return self.data["run"]

    @property
    def code(self) -> Mapping[str, Any]:
        return self.data.get("code") or {}

    @property
    def params(self) -> Mapping[str, Any]:
        return self.data.get("params") or {}

    @property
    def seeds(self) -> Mapping[str, Any]:
        return self.data.get("seeds") or {}

    @property
    def inputs(self) -> list[Mapping[str, Any]]:
        """Every input the run read: declared ones first, then observed ones."""
        section = self.data.get("inputs") or {}
        out: list[Mapping[str, Any]] = []
        for key in ("declared", "observed"):
            items = section.get(key) if isinstance(section, Mapping) else None
            if isinstance(items, list):
                out.extend(r for r in items if isinstance(r, Mapping) and "path" in r)
        return out

    @property
    def outputs(self) -> Mapping[str, Any]:
        return self.data.get("outputs") or {}

    @property
    def environment(self) -> Mapping[str, Any]:
        return self.data.get("environment") or {}

    @property
    def hardware(self) -> Mapping[str, Any]:
        return self.data.get("hardware") or {}

    @property
    def digests(self) -> Mapping[str, str]:
        return self.data.get("digests") or {}

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready copy of the manifest."""
        import json

        return json.loads(json.dumps(dict(self.data), default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        import base64

        return {"base64": base64.b64encode(value).decode("ascii")}
    return str(value)
