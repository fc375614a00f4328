"""Recording a command (``reprokit run -- CMD``): the run around a child process.

The run is started (captured, seeded) before the child, the child is told through the
parent/child protocol where to seal its own runs and which run is their parent, signals meant
for the child reach it once, and the run is sealed with the child's exit code and the files it
declared as outputs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reprokit._capture.git import capture_snapshot
from reprokit._capture.params import Params
from reprokit._capture.pycommand import python_program
from reprokit._model.errors import ReprokitError
from reprokit._model.protocol import ChildProtocol
from reprokit._model.redact import redact_argv
from reprokit._model.report import Report, json_name
from reprokit._record import observe
from reprokit._record.bootstrap import bootstrap_env, program_reads, read_report
from reprokit._record.console import DEFAULT_LIMIT, ConsoleTee
from reprokit._record.outputs import describe_declared
from reprokit._record.run import Run
from reprokit._seeding import check_seed, draw_seed

FORWARD_GRACE_S = 1.0
PIPE_GRACE_S = 2.0  # how long output still coming from the command's children is waited for


@dataclass(frozen=True)
class CommandResult(Report):
    """A recorded command: its run id (None when it could not be recorded), status, exit code,
    and the warnings recording it gave."""

    run_id: str | None = field(metadata={"json": "run"})
    status: str
    exit_code: int
    warnings: tuple[str, ...] = json_name(None, default=())


def record_command(
    command: list[str],
    *,
    name: str | None = None,
    seed: int | None = None,
    deterministic: bool = False,
    store: Any = None,
    outputs: list[str] | tuple[str, ...] = (),
    stdout: Any = None,
    inputs: list[str] | tuple[str, ...] = (),
    tags: list[str] | tuple[str, ...] = (),
    note: str | None = None,
    console_limit: int = DEFAULT_LIMIT,
) -> CommandResult:
    """Run ``command`` as a recorded run and return when it ended.

    ``stdout`` is where the child's standard output goes (default: this process's). Its
    stdout and stderr pass through as they come and the last ``console_limit`` bytes of them
    are kept in the run (``console.log``, redacted; 0 keeps nothing and leaves the child's
    output alone). ``inputs``: files and folders the command reads, hashed before it starts.
    ``tags``/``note`` label the run. Raises ReprokitError when the command cannot be started
    or an input does not exist (no run is kept then).
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
        tags=tags,
        note=note,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r.start()
    said = tuple(str(w.message) for w in caught)
    _declare_inputs(r, inputs)
    r.note_seeds(hash_randomization=os.environ["PYTHONHASHSEED"] == "random")
    if seed is None:
        r.note_seeds(source="drawn")
    told = ChildProtocol(
        seed=None if ChildProtocol.from_env().seed is not None else r.seed,
        parent=r.id,
        store=(r.store.remote or str(Path(r.store.root).resolve())) if r.store else None,
    )
    env = told.child_env()
    program = python_program(command)
    scratch = tempfile.mkdtemp(prefix="reprokit-run-") if program is not None else None
    report_path = os.path.join(scratch, "child.json") if scratch is not None else None
    if report_path is not None:
        bootstrap_env(env, report_path, program)
    tee = ConsoleTee(console_limit) if console_limit > 0 else None
    pipe = subprocess.PIPE if tee is not None else None
    if tee is not None:
        # Through a pipe, a Python child would buffer its prints: the user watches it live.
        env.setdefault("PYTHONUNBUFFERED", "1")
    started_ns = time.time_ns()
    try:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        try:
            child = subprocess.Popen(command, env=env, stdout=pipe or stdout, stderr=pipe)
        except OSError as exc:
            # Nothing ran: there is no run to keep (a typo must not become `latest`).
            r.abandon()
            raise ReprokitError(f"cannot run {command[0]!r}: {exc.strerror or exc}") from None
        if tee is not None:
            assert child.stdout is not None and child.stderr is not None
            tee.follow(child.stdout, stdout if stdout is not None else 1)
            tee.follow(child.stderr, 2)
        code = _supervise(child)
        if tee is not None:
            tee.wait(PIPE_GRACE_S)
        report = read_report(report_path) if report_path is not None else None
        if report_path is not None:
            r.add_observed_inputs(*program_reads(report_path, report), since_ns=started_ns)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    said += tuple(_take_report(r, command, program, report))
    with observe.paused():
        declared = describe_declared(list(outputs), r.root, cwd=os.getcwd())
    if declared:
        r.set_output("declared", declared)
    if tee is not None:
        r.keep_console(*tee.text())
    if code < 0:
        status = "interrupted" if -code in (signal.SIGINT, signal.SIGTERM) else "failed"
    else:
        status = "completed" if code == 0 else "failed"
    r.finish(status, exit_code=code)
    return CommandResult(r.id, status, code, said)


def _declare_inputs(r: Run, inputs: list[str] | tuple[str, ...]) -> None:
    """Hash the declared inputs before the command starts; none may be missing."""
    for path in inputs:
        try:
            r.log_input(path)
        except (ReprokitError, OSError) as exc:
            r.abandon()
            text = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise ReprokitError(f"cannot record input {path!r}: {text}") from None


def _take_report(
    r: Run, command: list[str], program: dict[str, Any] | None, report: dict[str, Any] | None
) -> list[str]:
    """Put what the child reported (seeds, params, its files) into the run; the warnings to
    give. Only what happened in the child is recorded: nothing reported, nothing claimed."""
    said: list[str] = []
    base = r.start_dir
    launcher = program.get("launcher") if program is not None else None
    located = not launcher  # a launcher's workers' flags: found on its command line?
    if report is not None and launcher and not report.get("workers"):
        said.append(
            f"reprokit: {launcher} started no Python worker that reprokit's start-up hook "
            "reached: the workers were not seeded and their command line not recorded"
        )
        report = None
    if program is not None:
        shown = {k: v for k, v in program.items() if k in ("how", "script", "module", "launcher")}
        if report is not None and launcher:
            shown["workers"] = report.get("workers")
            at = _worker_args_at(command, report.get("argv"))
            if at is not None:
                shown["args_at"] = at  # where the workers' own flags start, for replay
                located = True
        r.set_entry("program", shown)
    if report is not None:
        got = report.get("seeds")
        seeds: dict[str, Any] = got if isinstance(got, dict) else {}
        r.note_seeds(seeded=seeds.get("seeded") or {}, seeded_in="child")
        if seeds.get("deterministic"):
            r.note_seeds(deterministic=seeds["deterministic"])
        if seeds.get("seeded_on_import"):
            r.note_seeds(seeded_on_import=seeds["seeded_on_import"])
        if not seeds:
            r.note_seeds(note="the program imported none of the RNGs reprokit seeds")
    else:
        if program is not None:
            said.append(
                "reprokit: the program was not seeded and its command line not recorded: "
                "reprokit's start-up hook did not run in it (-E/-I, or an interpreter that "
                "cannot import reprokit)"
            )
        # The command's own process was never seeded by us: say so, claim nothing.
        r.note_seeds(
            seeded={},
            seeded_in="none",
            note="only PYTHONHASHSEED and $REPROKIT_SEED reached the command"
            + ("" if program is None else " (the start-up hook did not report)"),
        )
    params = (report or {}).get("params")
    if isinstance(params, dict) and isinstance(params.get("values"), dict):
        got = Params()
        got.values.update(params["values"])
        got.problems.extend(str(p) for p in params.get("problems") or [])
        got.redacted.extend(str(p) for p in params.get("redacted") or [])
        r.add_params(got, str(params.get("source") or "argparse"))
        if params.get("flags") and params.get("from_argv") and located:
            r.set_entry("flags", params["flags"])
    cap = r.code
    if cap is None or cap.section.get("kind") == "git":
        return said
    # Outside git: the program's own files, as the child listed them (else the files named on
    # its command line), captured relative to the folder the command ran in.
    files: list[Path] = []
    problems: list[str] = []
    entry_file = (report or {}).get("entry_file")
    if report is not None and report.get("exited"):
        files = [Path(p) for p in [entry_file, *(report.get("modules") or [])] if p]
        for folder in report.get("config_dirs") or []:  # Hydra's config files
            files.extend(
                p for p in Path(folder).rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
            )
    else:
        files = [Path(base, a) for a in command[1:] if os.path.isfile(os.path.join(base, a))]
        if program is not None and program["how"] != "code":
            problems.append(
                "outside git, the program's imported modules are unknown: it ended before "
                "reprokit's start-up hook could list them (killed, os._exit, -E/-I, or an "
                "interpreter that cannot import reprokit)"
            )
    if program is not None and program["how"] == "script":
        script = Path(base, program["script"]).resolve()
        if not script.is_relative_to(Path(base).resolve()):
            problems.append(
                f"outside git, its script {program['script']} lies outside the working folder "
                "and was not captured"
            )
        elif script not in [f.resolve() for f in files] and script.is_file():
            files.append(script)
    snap = capture_snapshot(None, files, Path(base).resolve())
    if report is not None and report.get("exited"):
        snap.section["captured"] = "the program's own files, as it listed them when it ended"
    else:
        snap.section["captured"] = "the files named on the command line"
    if not snap.section["files"] and (program is None or program["how"] != "code"):
        # Replaying it would run against an empty folder: its failure would read as a verdict.
        problems.append(
            "outside git, nothing the command reads could be captured (it names no file in "
            "the working folder); record it inside a git repository"
        )
    for reason in problems:
        r.not_replayable(reason)
        said.append(f"reprokit: this run cannot be replayed: {reason}")
    r.use_code(snap)
    return said


def _worker_args_at(command: list[str], argv: Any) -> int | None:
    """Where in ``command`` a launcher's worker's own arguments (its ``sys.argv[1:]``) start:
    they end the command line; None when they are not found there as they are."""
    if not isinstance(argv, list):
        return None
    at = len(command) - len(argv)
    return at if at > 0 and command[at:] == argv else None


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
