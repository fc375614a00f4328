"""Turn a call's arguments and user-given configs into plain, faithful YAML values."""

from __future__ import annotations

import enum
import inspect
import math
import os
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reprokit._redact import REDACTED, is_secret_name, is_secret_value

_MAX_ARRAY = 1000  # elements of a numpy array recorded inline as a hyperparameter
_MAX_REPR = 200


@dataclass
class Params:
    """Plain params plus what could not be recorded faithfully and what was redacted."""

    values: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # "lr: <reason>", one per unfaithful value
    redacted: list[str] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)  # top-level configs converted from objects

    def update(self, other: Params) -> None:
        self.values.update(other.values)
        self.problems.extend(other.problems)
        self.redacted.extend(other.redacted)
        self.types.update(other.types)


_signatures: weakref.WeakKeyDictionary[Any, inspect.Signature | None] = weakref.WeakKeyDictionary()


def signature_of(func: Callable[..., Any]) -> inspect.Signature | None:
    """``inspect.signature(func)``, cached per function object (not per code object: closures
    and ``functools.wraps`` wrappers share code but not signatures)."""
    try:
        return _signatures[func]
    except (KeyError, TypeError):
        pass
    try:
        sig: inspect.Signature | None = inspect.signature(func)
    except (TypeError, ValueError):
        sig = None
    try:
        _signatures[func] = sig
    except TypeError:  # not weak-referenceable: fine, just not cached
        pass
    return sig


def bind_call(func: Callable[..., Any], args: tuple, kwargs: dict) -> dict[str, Any]:
    """The call's arguments by parameter name, defaults applied, ``self``/``cls`` left out."""
    sig = signature_of(func)
    if sig is None:
        return {**{f"arg{i}": a for i, a in enumerate(args)}, **kwargs}
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError:
        # The call itself is wrong; the function will raise it. Record what was passed.
        return {**{f"arg{i}": a for i, a in enumerate(args)}, **kwargs}
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
    """Plain params from a mapping or a config object (Namespace, dataclass, pydantic, ...)."""
    out = Params()
    mapping, _ = config_to_mapping(values)
    if mapping is None:
        out.problems.append(f"params: {_typename(values)} is not a mapping or known config")
        out.values["params"] = _unrecorded(values)
        return out
    for key, value in mapping.items():
        name = str(key)
        _, subtype = config_to_mapping(value)
        if subtype is not None:
            out.types[name] = subtype
        out.values[name] = _plain(value, name, out)
    return out


def _leaf_name(path: str) -> str:
    """The setting name a value sits under: ``creds.api_key[0]`` -> ``api_key``."""
    return path.split("[", 1)[0].rsplit(".", 1)[-1]


def _plain(value: Any, path: str, out: Params) -> Any:
    if value is None or isinstance(value, bool):
        return value
    secret_name = is_secret_name(_leaf_name(path))
    is_scalar = (
        isinstance(value, (str, bytes, bytearray, int, float))
        or type(value).__module__ == "numpy"
        and not hasattr(value, "shape")
    )
    if (secret_name and is_scalar) or is_secret_value(value):
        out.redacted.append(path)
        return REDACTED
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and type(value).__module__ == "builtins":
        return value
    if isinstance(value, enum.Enum):
        return _plain(value.value, path, out)
    if type(value).__module__ == "numpy":
        return _numpy(value, path, out)
    if isinstance(value, (int, float)):  # int/float subclasses: record the number itself
        return float(value) if isinstance(value, float) else int(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{path}[{i}]", out) for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        try:
            items = sorted(value)
        except TypeError:
            items = sorted(value, key=repr)
        return [_plain(v, f"{path}[]", out) for v in items]
    mapping, _ = config_to_mapping(value)
    if mapping is not None:
        return {
            (k if isinstance(k, (str, int)) else str(k)): _plain(v, f"{path}.{k}", out)
            for k, v in mapping.items()
        }
    out.problems.append(f"{path}: {_typename(value)} cannot be recorded faithfully")
    return _unrecorded(value)


def _numpy(value: Any, path: str, out: Params) -> Any:
    if hasattr(value, "ndim") and getattr(value, "ndim", 0) > 0:
        if value.size <= _MAX_ARRAY and value.dtype.kind in "biuf":
            return value.tolist()
        out.problems.append(f"{path}: numpy array {value.dtype}{list(value.shape)} not recorded")
        return _unrecorded(value)
    try:
        item = value.item()
    except Exception:
        out.problems.append(f"{path}: {_typename(value)} cannot be recorded faithfully")
        return _unrecorded(value)
    if isinstance(item, float) and math.isnan(item):
        return item
    return _plain(item, path, out)


def _unrecorded(value: Any) -> dict[str, str]:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not break the run
        text = f"<repr failed: {type(exc).__name__}>"
    if len(text) > _MAX_REPR:
        text = text[: _MAX_REPR - 3] + "..."
    return {"unrecorded": _typename(value), "repr": text}
