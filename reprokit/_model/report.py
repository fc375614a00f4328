"""Reports: the frozen records the verbs return, with one shared way to become JSON.

A report is a frozen dataclass. ``to_dict()`` gives its JSON document: a ``schema`` key, then
each field under its JSON name (``field(metadata={"json": name})`` renames one; ``None``
leaves it out; ``"omit_empty": True`` leaves it out when empty), then the properties named in
``JSON_PROPERTIES``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, ClassVar

SCHEMA = 1


def json_name(name: str | None, **kwargs: Any) -> Any:
    """A dataclass field shown as ``name`` in the JSON form (``None``: not shown)."""
    return field(metadata={"json": name}, **kwargs)


def plain(value: Any) -> Any:
    """``value`` with reports, mappings and sequences turned into JSON's dicts and lists."""
    if isinstance(value, Report):
        data = value.to_dict()
        data.pop("schema", None)
        return data
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


@dataclass(frozen=True)
class Report:
    """Base of every report; ``to_dict()`` is its JSON form."""

    JSON_PROPERTIES: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema": SCHEMA}
        for f in fields(self):
            key = f.metadata.get("json", f.name)
            value = getattr(self, f.name)
            if key is not None and not (f.metadata.get("omit_empty") and not value):
                out[key] = plain(value)
        for name in self.JSON_PROPERTIES:
            out[name] = plain(getattr(self, name))
        return out
