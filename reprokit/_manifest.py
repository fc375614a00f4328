"""The manifest: one YAML document per run, schema 1, read back only through safe, checked paths."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from reprokit._errors import ManifestError

SCHEMA = 1
SECTIONS = (
    "schema",
    "run",
    "code",
    "params",
    "seeds",
    "outputs",
    "environment",
    "hardware",
    "digests",
)
MAX_MANIFEST_BYTES = 256 * 1024 * 1024

_dumper: Any = None


def _get_dumper() -> Any:
    global _dumper
    if _dumper is None:
        import yaml

        base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

        class _Dumper(base):  # type: ignore[valid-type,misc]
            # Shared objects are written out in full: a manifest never holds anchors or aliases,
            # so a reader can refuse every alias it meets.
            def ignore_aliases(self, data: Any) -> bool:
                return True

        _dumper = _Dumper
    return _dumper


def dump_yaml(data: Any) -> str:
    """Return ``data`` as block-style YAML (C dumper when available, no anchors, key order kept)."""
    import yaml

    return yaml.dump(
        data,
        Dumper=_get_dumper(),
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=120,
    )


def dump_section(key: str, value: Any) -> str:
    """Return one top-level ``key: value`` block; sections are joined as plain text."""
    return dump_yaml({key: value})


def render(sections: Mapping[str, Any], cached: Mapping[str, str] | None = None) -> str:
    """Return the manifest text: ``schema: 1`` first, sections in their fixed order.

    ``cached`` holds already-rendered blocks (code, environment, hardware are the same for every
    run of a process, so rendering them once keeps a sweep cheap).
    """
    parts = [f"schema: {SCHEMA}\n"]
    cached = cached or {}
    for key in SECTIONS[1:]:
        if key in cached:
            parts.append(cached[key])
        elif key in sections:
            parts.append(dump_section(key, sections[key]))
    return "".join(parts)


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
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ManifestError(f"manifest is not valid YAML: {first}", path) from None
    except RecursionError:
        raise ManifestError("manifest nests too deeply", path) from None


@dataclass(frozen=True)
class Manifest:
    """A sealed run's manifest, read-only. ``data`` holds every section as plain values."""

    data: Mapping[str, Any]
    path: Path | None = None

    @classmethod
    def from_bytes(cls, raw: bytes, path: Path | None = None) -> Manifest:
        """Parse and check a manifest; raise ManifestError naming what is wrong."""
        data = _safe_load(raw, path)
        if not isinstance(data, dict):
            raise ManifestError("manifest is not a mapping", path)
        schema = data.get("schema")
        if schema != SCHEMA:
            raise ManifestError(
                f"unsupported schema {schema!r} (this reprokit reads schema {SCHEMA})", path
            )
        run = data.get("run")
        if not isinstance(run, dict) or not isinstance(run.get("id"), str):
            raise ManifestError("manifest has no run.id", path)
        for key in ("status", "started"):
            if key not in run:
                raise ManifestError(f"manifest has no run.{key}", path)
        return cls(MappingProxyType(data), path)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ManifestError(f"cannot read manifest: {exc.strerror}", path) from None
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
        return json.loads(json.dumps(dict(self.data), default=str))
