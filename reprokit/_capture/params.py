"""Turn a call's arguments and user-given configs into plain, faithful YAML values."""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Mapping

from reprokit._model.bounded import TimedOut, bounded, timed_out_text
from reprokit._model.redact import REDACTED, is_secret_name, is_secret_value, redact_text

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_MAX_ARRAY = 1000  # elements of a numpy array recorded inline as a hyperparameter
_MAX_REPR = 200
_MAX_DEPTH = 64  # nesting kept; deeper values are recorded by type
_MAX_INT_BITS = 256  # larger ints are recorded by type: YAML and JSON readers choke on them
_MAX_ITEMS = 10_000  # items of one list, dict or set kept
_I63 = 1 << 63  # ints recorded as they are without the general path
_CO_VARARGS, _CO_VARKEYWORDS = 0x04, 0x08


class Params:
    """Plain params plus what could not be recorded faithfully and what was redacted."""

    __slots__ = ("values", "problems", "redacted", "types")

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.problems: list[str] = []  # "lr: <reason>", one per value not recorded faithfully
        self.redacted: list[str] = []
        self.types: dict[str, str] = {}  # top-level configs converted from objects

    def update(self, other: Params) -> None:
        self.values.update(other.values)
        self.problems.extend(other.problems)
        self.redacted.extend(other.redacted)
        self.types.update(other.types)


class _WrongCall(Exception):
    pass


def _as_passed(args: tuple, kwargs: dict) -> dict[str, Any]:
    return {**{f"arg{i}": a for i, a in enumerate(args)}, **kwargs}


def bind_call(func: Callable[..., Any], args: tuple, kwargs: dict) -> dict[str, Any]:
    """The call's arguments by parameter name, defaults applied, ``self``/``cls`` left out.

    Plain functions are bound from their code object (``inspect`` costs more to import than a
    whole recorded run may take); other callables go through ``inspect.signature``. A call that
    does not fit the signature is recorded as passed: the function itself will raise.
    """
    if hasattr(func, "__func__") and hasattr(func, "__self__"):  # a bound method
        args, func = (func.__self__, *args), func.__func__
    while hasattr(func, "__wrapped__") and not hasattr(func, "__signature__"):
        func = func.__wrapped__  # as inspect.signature does: the innermost signature counts
    code = getattr(func, "__code__", None)
    try:
        if code is None or type(func).__name__ != "function":
            return _bind_with_inspect(func, args, kwargs)
        out = _bind_code(code, func.__defaults__ or (), func.__kwdefaults__ or {}, args, kwargs)
    except _WrongCall:
        return _as_passed(args, kwargs)
    first = code.co_varnames[0] if code.co_argcount else None
    if first in ("self", "cls"):
        out.pop(first, None)
    return out


def _bind_code(code: Any, defaults: tuple, kwdefaults: dict, args: tuple, kwargs: dict) -> dict:
    names = code.co_varnames
    npos, nkw = code.co_argcount, code.co_kwonlyargcount
    positional, kwonly = names[:npos], names[npos : npos + nkw]
    extra_i = npos + nkw
    varargs = names[extra_i] if code.co_flags & _CO_VARARGS else None
    varkw = names[extra_i + (1 if varargs else 0)] if code.co_flags & _CO_VARKEYWORDS else None
    bound: dict[str, Any] = {}
    if len(args) > npos and varargs is None:
        raise _WrongCall
    for name, value in zip(positional, args, strict=False):
        bound[name] = value
    rest: dict[str, Any] = {}
    settable = set(positional[code.co_posonlyargcount :]) | set(kwonly)
    for key, value in kwargs.items():
        if key in settable:
            if key in bound:
                raise _WrongCall
            bound[key] = value
        elif varkw is not None:
            rest[key] = value
        else:
            raise _WrongCall
    first_default = npos - len(defaults)
    out: dict[str, Any] = {}
    for i, name in enumerate(positional):
        if name in bound:
            out[name] = bound[name]
        elif i >= first_default:
            out[name] = defaults[i - first_default]
        else:
            raise _WrongCall
    if varargs is not None:
        out[varargs] = list(args[npos:])
    for name in kwonly:
        if name in bound:
            out[name] = bound[name]
        elif name in kwdefaults:
            out[name] = kwdefaults[name]
        else:
            raise _WrongCall
    out.update(rest)
    return out


def _bind_with_inspect(func: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    import inspect

    try:
        sig = inspect.signature(func)
        bound = sig.bind(*args, **kwargs)
    except (TypeError, ValueError):
        raise _WrongCall from None
    bound.apply_defaults()
    out: dict[str, Any] = {}
    for i, (name, value) in enumerate(bound.arguments.items()):
        if i == 0 and name in ("self", "cls"):
            continue
        kind = sig.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            out[name] = list(value)
        else:
            out[name] = value
    return out


def config_to_mapping(obj: Any) -> tuple[Mapping[str, Any] | None, str | None]:
    """A mapping view of a config object and its type name, or (None, None) if not a config."""
    if isinstance(obj, Mapping):
        if type(obj).__module__.startswith("omegaconf"):
            return _omegaconf(obj), _typename(obj)
        return obj, None
    cls = type(obj)
    module = cls.__module__
    if module.startswith("omegaconf"):
        return _omegaconf(obj), _typename(obj)
    if module == "argparse" and cls.__name__ == "Namespace":
        return vars(obj), _typename(obj)
    if hasattr(obj, "__dataclass_fields__") and not isinstance(obj, type):
        return {f: getattr(obj, f) for f in obj.__dataclass_fields__}, _typename(obj)
    if hasattr(obj, "model_dump") and hasattr(cls, "model_fields"):  # pydantic v2
        return obj.model_dump(), _typename(obj)
    if hasattr(obj, "dict") and hasattr(cls, "__fields__"):  # pydantic v1
        return obj.dict(), _typename(obj)
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict) and not isinstance(obj, type):
        try:
            mapped = to_dict()
        except Exception:
            return None, None
        if isinstance(mapped, Mapping):
            return mapped, _typename(obj)
    return None, None


def _omegaconf(obj: Any) -> Any:
    import sys

    omegaconf = sys.modules.get("omegaconf")
    if omegaconf is None:  # pragma: no cover - the object exists, so its module is imported
        return dict(obj)
    return omegaconf.OmegaConf.to_container(obj, resolve=True)


def _typename(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def record_params(values: Mapping[str, Any] | Any) -> Params:
    """Plain params from a mapping or a config object (Namespace, dataclass, pydantic, ...).

    Never raises: a value that cannot be turned into plain data (a cycle, too deep, a huge
    int, a broken ``__repr__``, a config whose conversion raises) is recorded by type and a
    bounded, redacted repr, and named in ``problems``.
    """
    out = Params()
    try:
        mapping, _ = config_to_mapping(values)
    except Exception:
        mapping = None
    if mapping is None:
        out.problems.append(f"params: {_typename(values)} is not a mapping or known config")
        out.values["params"] = _unrecorded(values, out, "params")
        return out
    try:
        items = list(mapping.items())
    except Exception as exc:
        out.problems.append(f"params: reading {_typename(values)} failed ({type(exc).__name__})")
        out.values["params"] = _unrecorded(values, out, "params")
        return out
    for key, value in items:
        name = str(_key(key, "", out))
        kind = type(value)
        if kind is float or kind is bool or value is None or (kind is int and -_I63 < value < _I63):
            # Most params: a plain number, as _plain records it (redacted under a secret name).
            if kind is not bool and value is not None and is_secret_name(_leaf_name(name)):
                out.redacted.append(name)
                value = REDACTED
            out.values[name] = value
            continue
        try:
            _, subtype = config_to_mapping(value)
        except Exception:
            subtype = None
        if subtype is not None:
            out.types[name] = subtype
        out.values[name] = _plain_safe(value, name, out, set(), 0)
    return out


def _key(key: Any, path: str, out: Params) -> str | int:
    """A mapping key as YAML can hold it; a key that looks like a credential is redacted."""
    if isinstance(key, int) and not isinstance(key, bool) and key.bit_length() <= 63:
        return key
    if isinstance(key, str):
        text = key
    else:
        try:
            text = bounded(str, key)
        except TimedOut:
            out.problems.append(f"{path or 'params'}: str() of a {_typename(key)} key timed out")
            text = f"<{type(key).__name__} key>"
        except Exception:
            text = f"<{type(key).__name__} key>"
    if is_secret_value(text):
        where = f"{path}.<key>" if path else "<key>"
        out.redacted.append(where)
        return f"{REDACTED}-{len(out.redacted)}"
    return text[:_MAX_REPR]


def _leaf_name(path: str) -> str:
    """The setting name a value sits under: ``creds.api_key[0]`` -> ``api_key``."""
    return path.split("[", 1)[0].rsplit(".", 1)[-1]


def _short(path: str) -> str:
    return path if len(path) <= 80 else path[:38] + "..." + path[-38:]


def _plain_safe(value: Any, path: str, out: Params, seen: set[int], depth: int) -> Any:
    try:
        return _plain(value, path, out, seen, depth)
    except RecursionError:
        out.problems.append(f"{path}: nested too deeply to record")
    except Exception as exc:
        out.problems.append(f"{path}: {_typename(value)} could not be read ({type(exc).__name__})")
    return _unrecorded(value, out, path)


def _plain(value: Any, path: str, out: Params, seen: set[int], depth: int) -> Any:
    if value is None or isinstance(value, bool):
        return value
    secret_name = is_secret_name(_leaf_name(path))
    if isinstance(value, os.PathLike) and not isinstance(value, (str, bytes)):
        value = os.fspath(value)  # checked as the text it is: /cache/hf_... holds a token
    is_scalar = (
        isinstance(value, (str, bytes, bytearray, int, float))
        or type(value).__module__ == "numpy"
        and not hasattr(value, "shape")
    )
    if (secret_name and is_scalar) or is_secret_value(value):
        out.redacted.append(path)
        return REDACTED
    if isinstance(value, str):
        return value if type(value) is str else str.__str__(value)
    if isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
        out.problems.append(f"{path}: an int of {value.bit_length()} bits is recorded by type")
        return {"unrecorded": _typename(value), "repr": f"<int of {value.bit_length()} bits>"}
    if isinstance(value, (int, float)) and type(value).__module__ == "builtins":
        return value
    if isinstance(value, enum.Enum):
        return _plain(value.value, path, out, seen, depth)
    if type(value).__module__ == "numpy":
        return _numpy(value, path, out)
    if isinstance(value, (int, float)):  # int/float subclasses: record the number itself
        return float(value) if isinstance(value, float) else int(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if depth >= _MAX_DEPTH:
        out.problems.append(f"{_short(path)}: nested deeper than {_MAX_DEPTH} levels")
        return _unrecorded(value, out, path)
    if id(value) in seen:
        out.problems.append(f"{_short(path)}: refers to itself (a cycle)")
        return {"unrecorded": _typename(value), "repr": "<cycle>"}
    seen = seen | {id(value)}
    if isinstance(value, (list, tuple)):
        if len(value) > _MAX_ITEMS:
            out.problems.append(f"{path}: {len(value)} items, more than {_MAX_ITEMS}")
            return _unrecorded(value, out, path)
        items = []
        hide_next = False
        for i, v in enumerate(value):
            # an argv-like list: ["--password", X] hides X
            if hide_next and isinstance(v, str):
                out.redacted.append(f"{path}[{i}]")
                items.append(REDACTED)
                hide_next = False
                continue
            hide_next = isinstance(v, str) and v.startswith("-") and is_secret_name(v.lstrip("-"))
            items.append(_plain_safe(v, f"{path}[{i}]", out, seen, depth + 1))
        return items
    if isinstance(value, (set, frozenset)):
        if len(value) > _MAX_ITEMS:
            out.problems.append(f"{path}: {len(value)} items, more than {_MAX_ITEMS}")
            return _unrecorded(value, out, path)
        try:
            ordered = sorted(value)
        except Exception:
            try:
                ordered = bounded(_sorted_by_repr, value)
            except TimedOut:
                out.problems.append(f"{path}: a set whose items' repr timed out")
                return {"unrecorded": _typename(value), "repr": timed_out_text(value)}
            except Exception:
                out.problems.append(f"{path}: a set whose items cannot be ordered")
                return _unrecorded(value, out, path)
        return [_plain_safe(v, f"{path}[]", out, seen, depth + 1) for v in ordered]
    mapping, _ = config_to_mapping(value)
    if mapping is not None:
        result: dict[Any, Any] = {}
        for n, (k, v) in enumerate(mapping.items()):
            if n >= _MAX_ITEMS:
                out.problems.append(f"{path}: more than {_MAX_ITEMS} keys")
                break
            key = _key(k, path, out)
            result[key] = _plain_safe(v, f"{path}.{key}", out, seen, depth + 1)
        return result
    out.problems.append(f"{path}: {_typename(value)} cannot be recorded faithfully")
    return _unrecorded(value, out, path)


def _numpy(value: Any, path: str, out: Params) -> Any:
    if hasattr(value, "ndim") and getattr(value, "ndim", 0) > 0:
        if value.size <= _MAX_ARRAY and value.dtype.kind in "biuf":
            return value.tolist()
        out.problems.append(f"{path}: numpy array {value.dtype}{list(value.shape)} not recorded")
        return _unrecorded(value, out, path)
    try:
        item = value.item()
    except Exception:
        out.problems.append(f"{path}: {_typename(value)} cannot be recorded faithfully")
        return _unrecorded(value, out, path)
    if isinstance(item, float) and math.isnan(item):
        return item
    return _plain(item, path, out, set(), 0)


def _sorted_by_repr(items: Any) -> list[Any]:
    return sorted(items, key=repr)


def _unrecorded(value: Any, out: Params | None = None, path: str = "") -> dict[str, str]:
    """Type and a bounded, redacted repr: what is kept of a value that is not plain data. A
    repr that does not return within ``REPR_TIMEOUT`` is given up (the type is kept)."""
    try:
        text = bounded(repr, value)
    except TimedOut:
        text = timed_out_text(value)
        if out is not None:
            out.problems.append(f"{_short(path)}: repr() of a {_typename(value)} timed out")
    except Exception as exc:  # a broken __repr__ (or an int too long to print) must not break
        text = f"<repr failed: {type(exc).__name__}>"
    if not isinstance(text, str):
        text = f"<repr returned {type(text).__name__}>"
    if len(text) > _MAX_REPR:
        text = text[: _MAX_REPR - 3] + "..."
    return {"unrecorded": _typename(value), "repr": redact_text(text)}
