"""Recording a command (``reprokit run -- CMD``): the run around a child process.

The run is started (captured, seeded) before the child, the child is told through the
parent/child protocol where to seal its own runs and which run is their parent, signals meant
for the child reach it once, and the run is sealed with the child's exit code and the files it
declared as outputs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reprokit._model.errors import ReprokitError
from reprokit._model.protocol import ChildProtocol
from reprokit._model.redact import redact_argv
from reprokit._record.outputs import describe_output
from reprokit._record.run import Run
from reprokit._seeding import check_seed, draw_seed

FORWARD_GRACE_S = 1.0


@dataclass(frozen=True)
class CommandResult:
    """A recorded command: its run id (None when it could not be recorded), status, exit code,
    and the warnings recording it gave."""

    run_id: str | None
    status: str
    exit_code: int
    warnings: tuple[str, ...] = ()


def record_command(
    command: list[str],
    *,
    name: str | None = None,
    seed: int | None = None,
    deterministic: bool = False,
    store: Any = None,
    outputs: list[str] | tuple[str, ...] = (),
    stdout: Any = None,
) -> CommandResult:
    """Run ``command`` as a recorded run and return when it ended.

    ``stdout`` is where the child's standard output goes (default: inherited). Raises
    ReprokitError when the command cannot be started (no run is kept then).
    """
    if not command:
        raise ReprokitError("nothing to run: the command is empty")
    argv, redacted = redact_argv(list(command))
    entry: dict[str, Any] = {"kind": "command", "argv": argv}
    if redacted:
        entry["redacted"] = redacted
    # The seed is chosen here so that the child's PYTHONHASHSEED is known before the run
    # starts: the record describes the command's hashing, not this wrapper's.
    chosen = check_seed(seed) if seed is not None else draw_seed()
    os.environ.setdefault("PYTHONHASHSEED", str(chosen))
    r = Run(
        name or Path(command[0]).name,
        seed=chosen,
        deterministic=deterministic,
        store=store,
        entry=entry,
        start_dir=os.getcwd(),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r.start()
    said = tuple(str(w.message) for w in caught)
    r.note_seeds(hash_randomization=os.environ["PYTHONHASHSEED"] == "random")
    if seed is None:
        r.note_seeds(source="drawn")
    told = ChildProtocol(
        seed=None if ChildProtocol.from_env().seed is not None else r.seed,
        parent=r.id,
        store=(r.store.remote or str(Path(r.store.root).resolve())) if r.store else None,
    )
    try:
        child = subprocess.Popen(command, env=told.child_env(), stdout=stdout)
    except OSError as exc:
        # Nothing ran: there is no run to keep (a typo must not become `latest`).
        r.abandon()
        raise ReprokitError(f"cannot run {command[0]!r}: {exc.strerror or exc}") from None
    code = _supervise(child)
    root = Path(r.root)
    declared = []
    for path in outputs:
        p = Path(path)
        if p.exists() or p.is_symlink():
            try:
                declared.append(describe_output(p, root))
            except OSError as exc:
                declared.append({"path": path, "unreadable": exc.strerror or str(exc)})
        else:
            declared.append({"path": path, "missing": True})
    if declared:
        r.set_output("declared", declared)
    if code < 0:
        status = "interrupted" if -code in (signal.SIGINT, signal.SIGTERM) else "failed"
    else:
        status = "completed" if code == 0 else "failed"
    r.finish(status, exit_code=code)
    return CommandResult(r.id, status, code, said)


def _supervise(child: subprocess.Popen[Any]) -> int:
    """Wait for ``child``; pass SIGINT/SIGTERM on to it only if it did not get them itself.

    Ctrl-C (and a scheduler's SIGTERM) usually reach the whole process group, the child
    included: forwarding at once would signal it twice, mid-way through sealing its runs. So a
    signal is passed on only if the child has not ended on its own within a moment (it was sent
    to reprokit alone, e.g. ``kill PID``).
    """
    received: dict[int, float] = {}

    def note(signum: int, _frame: Any) -> None:
        received.setdefault(signum, time.monotonic())

    old = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                return child.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            for signum, since in list(received.items()):
                if now - since >= FORWARD_GRACE_S:
                    try:
                        child.send_signal(signum)
                    except OSError:
                        pass
                    received[signum] = float("inf")  # passed on once
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
