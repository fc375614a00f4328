"""``reprokit push``: send the runs recorded here that a remote store does not have yet."""

from __future__ import annotations

import argparse
import json
import sys

from reprokit._model.errors import ReprokitError, StoreError
from reprokit._store.store import Store


def cmd_push(args: argparse.Namespace) -> int:
    store = Store.at(args.store)
    if not store.remote:
        raise ReprokitError(
            f"store {store.root} is a folder: push sends runs to a remote store "
            "(--store s3://BUCKET/PREFIX or $REPROKIT_STORE)"
        )
    try:
        waiting = store.pending()
    except StoreError as exc:
        sys.stderr.write(
            f"reprokit: error: cannot reach {store.remote} ({exc}); the runs recorded here are "
            f"still waiting in {store.root}\n"
        )
        return 2
    sent: list[str] = []
    failure = None
    for rid in waiting:
        try:
            if store.push_run(rid):
                sent.append(rid)
        except StoreError as exc:
            failure = exc
            break
    left = [rid for rid in waiting if rid not in sent]
    if args.json:
        doc = {"schema": 1, "remote": store.remote, "sent": sent, "waiting": left}
        if failure is not None:
            doc["error"] = str(failure)
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        for rid in sent:
            sys.stdout.write(f"{rid}\n")
    if failure is not None:
        sys.stderr.write(
            f"reprokit: error: sent {len(sent)} run(s) to {store.remote}; {len(left)} still "
            f"waiting in {store.root}: {failure}\n"
        )
        return 2
    if not args.quiet:
        sys.stderr.write(f"sent {len(sent)} run(s) to {store.remote}; none waiting\n")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``push`` to the CLI."""
    p = sub.add_parser(
        "push",
        parents=[common],
        help="send runs kept locally (the remote store was unreachable) to the remote store",
        description="Send every run recorded on this machine that the remote store "
        "(--store s3://BUCKET/PREFIX or $REPROKIT_STORE) does not have yet: objects, files, "
        "a ledger entry, then the manifest. Prints the ids sent.",
        epilog="example: reprokit --store s3://lab-runs/paper push",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="one JSON document: sent and waiting ids")
    p.set_defaults(func=cmd_push)
