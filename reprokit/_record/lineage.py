"""Where this process came from: the process that started it as a worker, and that process's run.

A tracked call in a worker process (a ``multiprocessing`` pool or ``Process``, a
``ProcessPoolExecutor``, a DataLoader worker, a plain ``os.fork()``), under any start method,
becomes a child run of the run that started the worker. The worker learns which process started
it (the fork's parent, or multiprocessing's ``parent_process()``), and which of that process's
runs was active from the journal the process keeps in the store (``Store.unfinished_runs_of``).
A fork also says which run its forking thread was in; that run wins when it is still going.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from typing import Any

# In a forked child: {"pid": the parent's pid, "run": the forking thread's run id or None,
# "store": that run's store root or None}. Empty in a process that was not forked.
FORKED: dict[str, Any] = {}


def note_fork(parent_pid: int, run: str | None, store: str | None) -> None:
    """Remember, in a forked child, which process and run forked it."""
    FORKED.clear()
    FORKED.update({"pid": parent_pid, "run": run, "store": store})


def starter_pid() -> int | None:
    """The pid of the process that started this one as a worker (a fork's parent, or the process
    that started this multiprocessing worker); None in a process started any other way."""
    if FORKED:
        return FORKED["pid"]
    mp = sys.modules.get("multiprocessing.process")
    if mp is None:
        return None
    try:
        parent = mp.parent_process()
    except Exception:
        return None
    pid = getattr(parent, "pid", None) if parent is not None else None
    return pid if isinstance(pid, int) else None


def forked_store(pid: int) -> str | None:
    """The store of the run that was active in ``pid`` when it forked this process."""
    return FORKED.get("store") if FORKED.get("pid") == pid else None


def parent_run(unfinished: list[tuple[str, str | None]], pid: int) -> str | None:
    """Which of ``pid``'s unfinished runs (id, parent) a worker's run is nested in.

    The run the fork happened in, when it is still going; else the innermost run when the
    unfinished runs form one chain of nesting; None when they do not (unrelated runs in several
    threads at once: a guess could name the wrong parent).
    """
    ids = [rid for rid, _ in unfinished]
    inherited = FORKED.get("run") if FORKED.get("pid") == pid else None
    if inherited in ids:
        return inherited
    parents = {p for _, p in unfinished}
    leaves = [rid for rid in ids if rid not in parents]
    return leaves[0] if len(leaves) == 1 else None
