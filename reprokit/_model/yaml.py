"""A small block-style YAML writer: plain data in, text any YAML 1.1 reader loads back.

Writing a manifest must not import PyYAML (its import alone costs more than a whole recorded run
may), so manifests are emitted here; reading goes through PyYAML's safe loader. Only plain data is
accepted: dict (str/int keys), list/tuple, str, bytes, int, float, bool, None.
"""

from __future__ import annotations

import math
import re

from reprokit._model.memo import BoundedMemo

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from typing import Any

_PLAIN = None  # compiled on first use: keeps import cheap
_RESERVED = {
    "",
    "~",
    "null",
    "true",
    "false",
    "yes",
    "no",
    "on",
    "off",
    "y",
    "n",
    "=",
    "<<",
}


def _plain_ok(text: str) -> bool:
    global _PLAIN
    if _PLAIN is None:
        _PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./@+\-]*\Z")
    # (".inf" and ".nan" cannot match: a plain scalar starts with a letter, "_" or "/"; the
    # reserved words are five letters at most.)
    return _PLAIN.match(text) is not None and (len(text) > 5 or text.lower() not in _RESERVED)


def _printable(ch: str) -> bool:
    o = ord(ch)
    return (
        o in (0x09, 0x0A, 0x0D)
        or 0x20 <= o <= 0x7E
        or o == 0x85
        or 0xA0 <= o <= 0xD7FF
        or 0xE000 <= o <= 0xFFFD
        or 0x10000 <= o <= 0x10FFFF
    ) and o != 0xFEFF


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"}


def _quoted(text: str) -> str:
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return '"' + text + '"'  # the common case (ids, times, digests): nothing to escape
    out = []
    for ch in text:
        esc = _ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif _printable(ch) and ch not in "\x85\u2028\u2029":
            out.append(ch)
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            out.append("\ufffd")  # a lone surrogate (undecodable bytes) has no YAML form
        else:
            o = ord(ch)
            width = "x02" if o < 0x100 else "u04" if o < 0x10000 else "U08"
            out.append(f"\\{width[0]}{o:{width[1:]}x}")
    return '"' + "".join(out) + '"'


def scalar(value: Any) -> str:
    """One scalar as YAML text."""
    kind = type(value)
    if kind is str:
        return value if _plain_ok(value) else _quoted(value)
    if kind is float:
        text = repr(value)
        if "." in text and text[-1] != "n":  # not inf, nan: written below
            return text
    elif kind is int:
        return str(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(float(value))
        if "." not in text:  # YAML 1.1 readers need a dot: 1e-05 -> 1.0e-05
            mant, _, exp = text.partition("e")
            text = f"{mant}.0e{exp}" if exp else f"{mant}.0"
        return text
    if isinstance(value, str):
        return value if _plain_ok(value) else _quoted(value)
    if isinstance(value, (bytes, bytearray)):
        import base64

        return "!!binary " + _quoted(base64.b64encode(bytes(value)).decode("ascii"))
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _literal_ok(text: str) -> bool:
    if "\n" not in text or text[0] in " \t\n" or "\r" in text or text.endswith("\n\n"):
        return False
    return all(_printable(ch) and ch not in "\x85\u2028\u2029" for ch in text) and not any(
        line != line.rstrip(" \t") for line in text.split("\n")
    )


_KEYS = BoundedMemo(scalar)  # str key -> its YAML text: the same keys recur in every manifest


def _key(key: Any) -> str:
    if type(key) is str:
        return _KEYS[key]
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise TypeError(f"cannot write a {type(key).__name__} key as YAML")
    return scalar(key)


def _emit(value: Any, indent: int, out: list[str]) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            k = _KEYS.get(key) if type(key) is str else None
            if k is None:
                k = _key(key)
            kind = type(item)
            if kind is int or kind is float or (kind is str and "\n" not in item):
                out.append(f"{pad}{k}: {scalar(item)}\n")  # most values: no block to write
            elif isinstance(item, dict) and item:
                out.append(f"{pad}{k}:\n")
                _emit(item, indent + 2, out)
            elif isinstance(item, (list, tuple)) and item:
                out.append(f"{pad}{k}:\n")
                _emit(item, indent, out)
            else:
                out.append(f"{pad}{k}: {_inline(item, indent + 2)}\n")
    else:  # a non-empty list, written at its key's indentation
        for item in value:
            if isinstance(item, (dict, list, tuple)) and item:
                first = len(out)
                _emit(item, indent + 2, out)
                out[first] = f"{pad}- " + out[first][indent + 2 :]
            else:
                out.append(f"{pad}- {_inline(item, indent + 2)}\n")


def _inline(value: Any, indent: int) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, (list, tuple)):
        return "[]"
    if isinstance(value, str) and _literal_ok(value):
        chomp = "" if value.endswith("\n") else "-"
        body = value[:-1] if value.endswith("\n") else value
        pad = " " * indent
        return f"|{chomp}\n" + "\n".join(pad + line if line else "" for line in body.split("\n"))
    return scalar(value)


def dump(data: dict[str, Any]) -> str:
    """A mapping as block-style YAML text."""
    if not isinstance(data, dict):
        raise TypeError("a YAML document written by reprokit is a mapping")
    out: list[str] = []
    _emit(data, 0, out)
    return "".join(out)


SCHEMA = 1
SECTIONS = (
    "schema",
    "run",
    "code",
    "params",
    "seeds",
    "inputs",
    "outputs",
    "environment",
    "hardware",
    "digests",
)


def dump_section(key: str, value: Any) -> str:
    """One top-level ``key: value`` block; a manifest's blocks are joined as plain text."""
    return dump({key: value})


def render(sections: dict[str, Any], cached: dict[str, str] | None = None) -> str:
    """The manifest text: ``schema: 1`` first, then the sections in their fixed order.

    ``cached`` holds already-rendered blocks (code, environment and hardware are the same for
    every run of a process; rendering them once keeps a sweep cheap).
    """
    parts = [f"schema: {SCHEMA}\n"]
    cached = cached or {}
    for key in SECTIONS[1:]:
        if key in cached:
            parts.append(cached[key])
        elif key in sections:
            parts.append(dump_section(key, sections[key]))
    return "".join(parts)
