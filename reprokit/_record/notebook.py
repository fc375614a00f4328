"""Runs recorded in a Jupyter kernel: ``%load_ext reprokit``, ``%%track [NAME] [--seed S]``.

A notebook run's entry holds the source of every cell the kernel executed so far, in order, with
its execution count (and the notebook file when the kernel can tell which it is): replay runs
those cells again in a fresh kernel. IPython is never imported here; only a process that is
already a kernel gets this far.
"""

from __future__ import annotations

import os
import sys

from reprokit._model.errors import ReprokitError, warn
from reprokit._model.redact import redact_text
from reprokit._record.run import Run, error_of, status_of

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from typing import Any


def current_shell() -> Any:
    """The IPython shell this process runs, or None (IPython is not imported for this)."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    if get is None:
        return None
    try:
        return get()
    except Exception:
        return None


def notebook_file(shell: Any) -> str | None:
    """The notebook the kernel serves, when its front end said (Jupyter server, VS Code)."""
    ns = getattr(shell, "user_ns", {}) or {}
    for candidate in (
        ns.get("__session__"),  # ipykernel >= 6.? under jupyter_server >= 2
        os.environ.get("JPY_SESSION_NAME"),  # jupyter_server >= 2
        ns.get("__vsc_ipynb_file__"),  # VS Code
    ):
        if isinstance(candidate, str) and candidate.endswith(".ipynb"):
            path = os.path.abspath(candidate)
            if os.path.isfile(path):
                return path
    return None


def notebook_entry(shell: Any) -> tuple[dict[str, Any], str | None, list[str]]:
    """(entry, notebook file or None, reasons it cannot be replayed) for a run in a kernel."""
    problems: list[str] = []
    cells: list[dict[str, Any]] = []
    try:
        history = list(shell.history_manager.input_hist_raw)
    except Exception as exc:
        history = []
        problems.append(f"the kernel's cell history could not be read ({exc})")
    redacted = False
    # In[n] is the cell executed with count n; cells run without storing history have no count.
    for count, source in enumerate(history):
        if count == 0 or not isinstance(source, str) or not source.strip():
            continue
        shown = redact_text(source)
        redacted = redacted or shown != source
        cells.append({"execution_count": count, "source": shown})
    if redacted:
        problems.append("a cell held a secret, which was not recorded")
    if not cells and not problems:
        problems.append("the kernel recorded no executed cells")
    path = notebook_file(shell)
    entry: dict[str, Any] = {
        "kind": "notebook",
        "notebook": path,
        "kernel": {"language": "python", "implementation": type(shell).__name__},
        "cells": cells,
    }
    return entry, path, problems


def _parse_line(line: str) -> tuple[str | None, int | None, bool]:
    import shlex

    words = shlex.split(line)
    name: str | None = None
    seed: int | None = None
    deterministic = False
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--seed" and i + 1 < len(words):
            seed = _int(words[i + 1])
            i += 2
            continue
        if word.startswith("--seed="):
            seed = _int(word.split("=", 1)[1])
        elif word == "--deterministic":
            deterministic = True
        elif word.startswith("-") or name is not None:
            raise ReprokitError(f"%%track: unexpected {word!r}; usage: %%track [NAME] [--seed S]")
        else:
            name = word
        i += 1
    return name, seed, deterministic


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ReprokitError(f"%%track: --seed takes an integer, got {text!r}") from None


def track_cell(line: str, cell: str) -> None:
    """The ``%%track`` cell magic: the cell's code runs as one recorded run."""
    shell = current_shell()
    if shell is None:
        raise ReprokitError("%%track works inside an IPython kernel")
    name, seed, deterministic = _parse_line(line)
    entry, path, problems = notebook_entry(shell)
    r = Run(
        name or "notebook",
        seed=seed,
        deterministic=deterministic,
        entry=entry,
        entry_file=path,
        start_dir=os.getcwd(),
    )
    for problem in problems:
        r.not_replayable(problem)
        warn(f"{problem}; the run is marked not replayable")
    code = compile(shell.transform_cell(cell), f"<%%track {name or 'notebook'}>", "exec")
    r.start()
    try:
        exec(code, shell.user_ns)  # the cell's code, in the notebook's namespace
    except BaseException as exc:
        r.finish(*status_of(exc), error=error_of(exc))
        raise
    r.finish("completed")


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext reprokit``: registers the ``%%track`` cell magic."""
    shell.register_magic_function(track_cell, magic_kind="cell", magic_name="track")
