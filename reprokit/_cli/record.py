"""``reprokit run -- CMD``: record any command as a run."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from reprokit._cli.output import (
    emit_json,
    err,
    parser_for,
)
from reprokit._model.errors import ReprokitError
from reprokit._record.command import record_command
from reprokit._record.console import DEFAULT_LIMIT


def cmd_run(args: argparse.Namespace) -> int:
    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise ReprokitError(
            "nothing to run: give a command after --, e.g. reprokit run -- python train.py"
        )
    result = record_command(
        command,
        name=args.name,
        seed=args.seed,
        deterministic=args.deterministic,
        store=args.store,
        outputs=args.output,
        inputs=args.input,
        tags=args.tag,
        note=args.note,
        console_limit=args.max_console,
        # With --json, stdout carries our one document: the command's output goes to stderr.
        stdout=sys.stderr if args.json else None,
    )
    for message in result.warnings:
        err(message)
    code, status = result.exit_code, result.status
    if args.json:
        emit_json({"schema": 1, "run": result.run_id, "status": status, "exit_code": code})
    elif not args.quiet and result.run_id:
        err(f"reprokit: recorded run {result.run_id} ({status}, exit code {code})")
    if code < 0 and -code in (signal.SIGINT, signal.SIGTERM):
        # The child died of a signal: so do we, as a shell expects of a wrapper.
        sys.stdout.flush()
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return 128 - code if code < 0 else code


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = parser_for(
        sub, common, "run", "record any command as a run: run -- CMD ...",
        "Record any command as a run, with no code change: the code, seed, environment and "
        "hardware before it starts, its exit code and the files it declares as outputs when "
        "it ends. Runs tracked inside the command become its children.",
        "reprokit run -- python train.py --lr 0.1\n"
        "reprokit run --name sweep --seed 3 --output model.pt -- python train.py",
    )  # fmt: skip
    p.add_argument("--name", help="run name (default: the command's name)")
    p.add_argument(
        "--seed",
        type=int,
        help="seed (default: drawn); the child gets PYTHONHASHSEED and the seed unless set",
    )
    p.add_argument("--deterministic", action="store_true", help="ask for deterministic mode")
    p.add_argument(
        "--output",
        action="append",
        default=[],
        metavar="PATH",
        help="a file or folder the command writes, hashed when it ends (repeatable)",
    )
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="PATH",
        help="a file or folder the command reads, hashed before it starts; replay checks it "
        "and makes it available (repeatable)",
    )
    p.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="T",
        help="label the run (repeatable); reprokit ls --tag T finds it",
    )
    p.add_argument("--note", metavar="TEXT", help="a note kept with the run (shown by show/ls)")
    p.add_argument(
        "--max-console",
        type=int,
        default=DEFAULT_LIMIT,
        metavar="BYTES",
        help="keep the last BYTES of the command's output in the run as console.log "
        f"(default {DEFAULT_LIMIT // 2**20} MiB; 0: keep none)",
    )
    p.add_argument("--json", action="store_true", help="one JSON document: run id, status, exit")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...", help="the command")
    p.set_defaults(func=cmd_run)
