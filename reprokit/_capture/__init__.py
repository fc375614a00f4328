"""Collectors that describe a run's world: code, params, seeds, environment, hardware.

Each collector returns plain YAML-ready data (dict/list/str/int/float/bool/None) and never
raises into the user's program: what it cannot answer it reports as ``unavailable(reason)``.
"""

from __future__ import annotations


def unavailable(reason: object) -> str:
    """The marker a collector records instead of a value it could not get."""
    text = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
    return f"unavailable: {text}"


def which(name: str) -> str | None:
    """The first executable called ``name`` on PATH (``shutil.which`` without shutil's imports)."""
    import os

    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(folder or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None
