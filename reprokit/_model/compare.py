"""Compare what two runs produced: values, metric series, checkpoints, files, exit codes.

Exact by default: two values are the same when their fingerprints are. With a tolerance,
numbers (and the numbers kept for arrays and tensors) pass when ``|a - b| <= atol + rtol*|b|``,
as numpy's ``isclose`` reads it. Every comparison says how far apart the two were.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

from reprokit._model import numbers as kept_numbers

IDENTICAL = "identical"
WITHIN = "within_tolerance"
DIFFERENT = "different"
MISSING = "missing"
# Neither proven close nor proven different: only a summary was kept, and it agrees within the
# tolerance. A replay with such an output cannot give a verdict (exit 2), never a false one.
UNDETERMINED = "undetermined"


def _flatten_numbers(value: Any) -> list[float] | None:
    """The numbers of a plain value in a fixed order (dict keys sorted), or None if not numeric."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, (list, tuple)):
        out: list[float] = []
        for item in value:
            sub = _flatten_numbers(item)
            if sub is None:
                return None
            out.extend(sub)
        return out
    if isinstance(value, dict):
        out = []
        for key in sorted(value, key=str):
            sub = _flatten_numbers(value[key])
            if sub is None:
                return None
            out.extend(sub)
        return out
    return None


def numbers_of(record: dict[str, Any]) -> tuple[list[float] | None, str]:
    """The numbers a value record keeps, and how: ``"values"`` (all of them) or ``"summary"``
    (mean, std, min, max and L2 norm of a large array)."""
    if "value" in record:
        nums = _flatten_numbers(record["value"])
        if nums is not None:
            return nums, "values"
    if isinstance(record.get("values"), list):
        return _flatten_numbers(record["values"]), "values"
    if isinstance(record.get("packed"), str):
        try:
            dtype = str(record.get("packed_dtype") or "<f8")
            return kept_numbers.unpack(record["packed"], dtype), "values"
        except Exception:  # a damaged copy (bad base64 or zlib data): use the summary
            pass
    stats = record.get("stats")
    if isinstance(stats, dict):
        keys = ("mean", "std", "min", "max", "l2")
        return [float(stats[k]) for k in keys if k in stats], "summary"
    return None, "none"


def _shape_of(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape_of(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_shape_of(v) for v in value]
    return None


def deviation(a: list[float], b: list[float]) -> dict[str, Any]:
    """Largest absolute and relative (to ``b``) differences, and the first index that differs.

    -0.0 and 0.0 differ (their bits do) by zero; NaN against a number differs infinitely.
    """
    max_abs = max_rel = 0.0
    first = None
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if math.isnan(x) or math.isnan(y):
            if math.isnan(x) and math.isnan(y):
                continue
            diff = math.inf
        elif x == y:
            if math.copysign(1.0, x) == math.copysign(1.0, y):
                continue
            diff = 0.0  # -0.0 against 0.0
        else:
            diff = abs(x - y)
        if first is None:
            first = i
        rel = diff / abs(y) if y and not math.isinf(y) else (math.inf if diff else 0.0)
        max_abs, max_rel = max(max_abs, diff), max(max_rel, rel)
    return {"max_abs": max_abs, "max_rel": max_rel, "first_index": first}


def within(a: list[float], b: list[float], rtol: float, atol: float) -> bool:
    for x, y in zip(a, b, strict=True):
        if math.isnan(x) or math.isnan(y):
            if not (math.isnan(x) and math.isnan(y)):
                return False
            continue
        if math.isinf(x) or math.isinf(y):
            if x != y:
                return False
            continue
        if abs(x - y) > atol + rtol * abs(y):
            return False
    return True


def compare_values(
    recorded: dict[str, Any] | None, replayed: dict[str, Any] | None, rtol: float, atol: float
) -> dict[str, Any]:
    """Verdict for one value record (a return value or a checkpoint)."""
    if recorded is None or replayed is None:
        return {
            "verdict": MISSING,
            "recorded": recorded is not None,
            "replayed": replayed is not None,
        }
    if recorded.get("fingerprint") == replayed.get("fingerprint"):
        return {"verdict": IDENTICAL}
    out: dict[str, Any] = {"verdict": DIFFERENT}
    a, mode_a = numbers_of(recorded)
    b, mode_b = numbers_of(replayed)
    if (
        a is not None
        and b is not None
        and mode_a == mode_b == "values"
        and len(a) == len(b)
        and recorded.get("shape") == replayed.get("shape")
        and _shape_of(recorded.get("value")) == _shape_of(replayed.get("value"))
    ):
        out["mode"] = mode_a
        out.update(deviation(b, a))
        if (rtol or atol) and within(b, a, rtol, atol):
            out["verdict"] = WITHIN
    elif mode_a == "summary" or mode_b == "summary":
        _compare_summaries(recorded, replayed, rtol, atol, out)
    elif "value" in recorded and "value" in replayed and _mixed(recorded, replayed, out):
        if (rtol or atol) and out.get("max_abs") is not None:
            xa = _numbers_in(recorded["value"], [])[1]
            xb = _numbers_in(replayed["value"], [])[1]
            if within(xb, xa, rtol, atol):
                out["verdict"] = WITHIN
    else:
        if recorded.get("type") != replayed.get("type"):
            out["detail"] = f"type {recorded.get('type')} -> {replayed.get('type')}"
        if "value" in recorded and "value" in replayed:
            out["recorded_value"] = recorded["value"]
            out["replayed_value"] = replayed["value"]
    return out


def _numbers_in(value: Any, found: list[float]) -> tuple[Any, list[float]]:
    """(``value`` with its numbers replaced by a marker, the numbers in order)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value, found
    if isinstance(value, (int, float)):
        found.append(float(value))
        return "\0#", found
    if isinstance(value, (list, tuple)):
        return [_numbers_in(v, found)[0] for v in value], found
    if isinstance(value, dict):
        return {str(k): _numbers_in(value[k], found)[0] for k in sorted(value, key=str)}, found
    return repr(value), found


def _mixed(recorded: dict[str, Any], replayed: dict[str, Any], out: dict[str, Any]) -> bool:
    """For plain values that mix numbers with text: when all but the numbers agree, put how
    far the numbers are apart in ``out`` and say True."""
    sa, xa = _numbers_in(recorded["value"], [])
    sb, xb = _numbers_in(replayed["value"], [])
    if sa != sb or not xa or len(xa) != len(xb):
        return False
    out["mode"] = "values"
    out.update(deviation(xb, xa))
    return True


def _count(record: dict[str, Any]) -> int:
    stats = record.get("stats") or {}
    if isinstance(stats.get("count"), int):
        return int(stats["count"])
    shape = record.get("shape")
    if isinstance(shape, list) and all(isinstance(d, int) for d in shape):
        return math.prod(shape)
    return 0


def _compare_summaries(
    recorded: dict[str, Any], replayed: dict[str, Any], rtol: float, atol: float, out: dict
) -> None:
    """Two large arrays of which only summaries are comparable: prove a difference, or say
    that a tolerance cannot be judged."""
    sa, sb = recorded.get("stats"), replayed.get("stats")
    if not isinstance(sa, dict) or not isinstance(sb, dict):
        out["detail"] = "only one side kept its numbers"
        return
    if recorded.get("shape") != replayed.get("shape"):
        out["detail"] = f"shape {recorded.get('shape')} -> {replayed.get('shape')}"
        return
    sa, sb = dict(sa, count=_count(recorded)), dict(sb, count=_count(replayed))
    proven, lower = kept_numbers.summary_bounds(sa, sb, rtol, atol)
    out["mode"] = "summary"
    out["max_abs_at_least"] = lower
    if not proven and (rtol or atol):
        out["verdict"] = UNDETERMINED
        out["detail"] = (
            f"{sa['count']} numbers, more than the {kept_numbers.KEPT} kept: their summary "
            "(min, max, mean, L2) agrees within the tolerance, which cannot prove that every "
            "value does"
        )


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError:
        return []


def compare_metrics(
    recorded: list[dict[str, Any]], replayed: list[dict[str, Any]], rtol: float, atol: float
) -> dict[str, dict[str, Any]]:
    """Per metric series: verdict, length of each, first differing step, largest deviation."""
    series_a: dict[str, list[dict[str, Any]]] = {}
    series_b: dict[str, list[dict[str, Any]]] = {}
    for rec in recorded:
        series_a.setdefault(rec["name"], []).append(rec)
    for rec in replayed:
        series_b.setdefault(rec["name"], []).append(rec)
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(set(series_a) | set(series_b)):
        a, b = series_a.get(name, []), series_b.get(name, [])
        if [p["step"] for p in a] != [p["step"] for p in b]:
            out[name] = {
                "verdict": DIFFERENT if a and b else MISSING,
                "detail": f"{len(a)} recorded points, {len(b)} replayed",
            }
            continue
        va = [float(p["value"]) for p in a]
        vb = [float(p["value"]) for p in b]
        dev = deviation(vb, va)
        if dev["first_index"] is None:
            out[name] = {"verdict": IDENTICAL, "points": len(a)}
            continue
        verdict = WITHIN if (rtol or atol) and within(vb, va, rtol, atol) else DIFFERENT
        out[name] = {
            "verdict": verdict,
            "points": len(a),
            "first_step": a[dev["first_index"]]["step"],
            "max_abs": dev["max_abs"],
            "max_rel": dev["max_rel"],
        }
    return out


def first_divergence(
    recorded: list[dict[str, Any]], replayed: list[dict[str, Any]], rtol: float, atol: float
) -> dict[str, Any] | None:
    """Where two checkpoint streams first part: index, name and, for numbers, by how much.

    With a tolerance, numeric checkpoints within it count as agreeing.
    """
    for i in range(max(len(recorded), len(replayed))):
        a = recorded[i] if i < len(recorded) else None
        b = replayed[i] if i < len(replayed) else None
        if a is None or b is None:
            present = a or b or {}
            return {
                "index": i,
                "name": present.get("name"),
                "detail": "stream ended early in the " + ("replay" if b is None else "record"),
            }
        if a.get("name") != b.get("name"):
            return {"index": i, "name": a.get("name"), "detail": f"name {a['name']} -> {b['name']}"}
        result = compare_values(a, b, rtol, atol)
        if result["verdict"] in (IDENTICAL, WITHIN, UNDETERMINED):
            continue
        out = {"index": i, "name": a.get("name")}
        for key in ("max_abs", "max_rel", "mode", "max_abs_at_least"):
            if key in result:
                out[key] = result[key]
        return out
    return None


def compare_checkpoints(
    recorded: list[dict[str, Any]], replayed: list[dict[str, Any]], rtol: float, atol: float
) -> dict[str, Any]:
    """The verdict on two checkpoint streams: the first divergence, or which checkpoints only a
    summary could compare (undetermined under a tolerance), and how far apart they are."""
    out: dict[str, Any] = {"verdict": IDENTICAL, "count": len(recorded)}
    div = first_divergence(recorded, replayed, rtol, atol)
    if div is not None:
        out.update(verdict=DIFFERENT, first_divergence=div)
        return out
    verdicts = []
    undetermined = []
    for i, (a, b) in enumerate(zip(recorded, replayed, strict=False)):
        result = compare_values(a, b, rtol, atol)
        verdicts.append(result["verdict"])
        if result["verdict"] == UNDETERMINED:
            undetermined.append(i)
            out.setdefault("detail", f"#{i} ({a.get('name')}): {result.get('detail')}")
        for key in ("max_abs", "max_rel", "max_abs_at_least"):
            if key in result:
                out[key] = max(out.get(key, 0.0), result[key])
    if undetermined:
        out["verdict"] = UNDETERMINED
        out["undetermined"] = undetermined
    elif WITHIN in verdicts:
        out["verdict"] = WITHIN
    return out


def compare_files(
    recorded: list[dict[str, Any]],
    replayed: list[dict[str, Any]],
    rtol: float = 0.0,
    atol: float = 0.0,
) -> dict[str, dict[str, Any]]:
    """Per output path (files, and each file of a folder): identical or which digests differ.

    With a tolerance, JSON/CSV/NPY files whose non-numeric content agrees are judged by their
    numbers (kept when recorded, see ``reprokit._record.file_numbers``).
    """

    def flat(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for rec in records:
            if rec.get("kind") == "folder":
                for f in rec.get("files", []):
                    out[f"{rec['path']}/{f['path']}"] = f
            else:
                out[rec["path"]] = rec
        return out

    a, b = flat(recorded), flat(replayed)
    result: dict[str, dict[str, Any]] = {}
    for path in sorted(set(a) | set(b)):
        ra, rb = a.get(path), b.get(path)
        if ra is None or rb is None or ra.get("missing") or rb.get("missing"):
            result[path] = {
                "verdict": MISSING,
                "detail": "not in the record" if ra is None else "not produced by the replay",
            }
        elif ra.get("sha256") == rb.get("sha256"):
            result[path] = {"verdict": IDENTICAL}
        else:
            result[path] = {
                "verdict": DIFFERENT,
                "recorded_sha256": ra.get("sha256"),
                "replayed_sha256": rb.get("sha256"),
                "recorded_size": ra.get("size"),
                "replayed_size": rb.get("size"),
            }
            if rtol or atol:
                _compare_file_numbers(
                    ra.get("numbers"), rb.get("numbers"), rtol, atol, result[path]
                )
    return result


def _compare_file_numbers(a: Any, b: Any, rtol: float, atol: float, out: dict[str, Any]) -> None:
    """Judge two differing numeric files by their numbers, when all else in them agrees."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return
    if a.get("skipped") or b.get("skipped"):
        out["verdict"] = UNDETERMINED
        out["detail"] = f"too large to keep its numbers ({a.get('skipped') or b.get('skipped')})"
        return
    if a.get("skeleton") != b.get("skeleton"):
        out["detail"] = "differs in more than its numbers (keys, text or layout)"
        return
    judged = compare_values(dict(a, fingerprint=None), dict(b, fingerprint=""), rtol, atol)
    for key in ("verdict", "max_abs", "max_rel", "max_abs_at_least", "mode", "detail"):
        if key in judged:
            out[key] = judged[key]
    out["compared"] = "numbers"


def compare_exit_codes(recorded: Any, replayed: Any) -> dict[str, Any]:
    """The verdict on two exit codes: identical or different, with both."""
    verdict = IDENTICAL if recorded == replayed else DIFFERENT
    return {"verdict": verdict, "recorded": recorded, "replayed": replayed}


def worst(verdicts: list[str]) -> str:
    """The verdict of a whole: different beats missing beats undetermined beats within
    tolerance beats identical."""
    for v in (DIFFERENT, MISSING, UNDETERMINED, WITHIN):
        if v in verdicts:
            return DIFFERENT if v == MISSING else v
    return IDENTICAL


MISSING_VALUE = "<absent>"


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


def diff_mappings(a: Any, b: Any, skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Leaf-by-leaf differences of two nested mappings, sorted by key."""
    fa, fb = flatten(a or {}), flatten(b or {})
    out = []
    for key in sorted(set(fa) | set(fb)):
        if key.startswith(skip):
            continue
        va, vb = fa.get(key, MISSING_VALUE), fb.get(key, MISSING_VALUE)
        if va != vb:
            out.append({"key": key, "a": va, "b": vb})
    return out
