"""Collectors that describe a run's world: code, params, seeds, environment, hardware.

Each collector returns plain YAML-ready data (dict/list/str/int/float/bool/None) and never
raises into the user's program: what it cannot answer it reports as ``unavailable(reason)``.
"""

from __future__ import annotations


def unavailable(reason: object) -> str:
    """The marker a collector records instead of a value it could not get."""
    text = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
    return f"unavailable: {text}"
