"""Where the shipped templates (REPRODUCE.md, the demo) and the package's own source are."""

from __future__ import annotations

from pathlib import Path

from reprokit._model.errors import ReprokitError

PACKAGE_DIR = Path(__file__).resolve().parent.parent


def templates_dir() -> Path:
    """Where the shipped templates are: inside the package when installed, else the source tree."""
    for candidate in (PACKAGE_DIR / "templates", PACKAGE_DIR.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise ReprokitError("reprokit's templates are missing from this installation")
