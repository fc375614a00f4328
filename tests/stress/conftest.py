"""The reliability suite's figures: each test reports what it tried and what held, and the
figures are printed at the end of the run (README's "Reliability" table is copied from them)."""

from __future__ import annotations

import pytest

_FIGURES: list[tuple[str, str]] = []


@pytest.fixture
def figure():
    """``figure("secrets tried", "24 forms, 0 leaked")`` records one line of the summary."""

    def record(name: str, value: object) -> None:
        _FIGURES.append((name, str(value)))

    return record


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001
    if not _FIGURES:
        return
    terminalreporter.section("reliability figures")
    width = max(len(n) for n, _ in _FIGURES)
    for name, value in _FIGURES:
        terminalreporter.write_line(f"{name.ljust(width)}  {value}")
