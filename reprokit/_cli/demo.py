"""``reprokit demo``: record and replay a small bundled example in a temporary repository."""

from __future__ import annotations

import argparse
import os

from reprokit._cli.output import emit_json, err, out
from reprokit._cli.replay import narrator, print_replay
from reprokit._cli.runs import print_manifest, print_verified
from reprokit._store.store import Store
from reprokit._verbs.demo import prepare_demo
from reprokit._verbs.replay import replay
from reprokit._verbs.verify import verify_run


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "demo",
        parents=[common],
        help="record a small example run in a temporary repository, show and replay it",
        description="Record one run of a bundled training script in a temporary git repository "
        "(with an uncommitted change), show its manifest, verify it and replay it.",
        epilog="example:\n  reprokit demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="one JSON document: the replay report")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    folder, printed = prepare_demo(err)
    err(f"reprokit demo: train() returned {printed}")
    store = str(folder / ".reprokit")
    cwd = os.getcwd()
    if args.json:
        try:
            os.chdir(folder)
            report = replay("latest", store=store)
        finally:
            os.chdir(cwd)
        emit_json({"schema": 1, "folder": str(folder), "replay": report.to_dict()})
        return 0 if report.identical else 1
    st = Store.at(store)
    print_manifest(st.load("latest"), st)
    out("")
    print_verified(verify_run("latest", store=store))
    out("")
    err("reprokit demo: replaying it from the recorded source (`reprokit replay latest`)")
    seen_drift: list[str] = []
    try:
        os.chdir(folder)
        report = replay("latest", store=store, on_event=narrator(args.quiet, seen_drift))
    finally:
        os.chdir(cwd)
    print_replay(report, seen_drift, args.quiet)
    err(f"reprokit demo: look around with `cd {folder} && reprokit ls`")
    return 0 if report.identical else 1
