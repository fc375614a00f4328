"""``reprokit verify --all``: every sealed run of a store (a folder or a bucket) and its ledger."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from reprokit._model.errors import ManifestError, ReprokitError, TamperedError
from reprokit._store.store import Store


def cmd_verify_all(args: argparse.Namespace) -> int:
    if args.ref is not None:
        raise ReprokitError("name one run or archive, or pass --all, not both")
    if args.replay or args.venv:
        raise ReprokitError("--replay and --venv apply to archives")
    store = Store.at(args.store)
    # Vouching for a remote store needs the remote itself: unreachable is "cannot tell" (exit 2),
    # never an "intact" that only covers this machine's copy.
    store.pull()
    results: list[dict[str, Any]] = []
    head: str | None = None
    for entry in store.entries(head=True):
        if entry.state == "running":
            continue
        if entry.state == "incomplete":
            results.append({"run": entry.id, "intact": None, "problem": "incomplete (not sealed)"})
            continue
        try:
            info = store.verify(entry.id)
            head = head or str(info["ledger_head"])
            results.append({"run": entry.id, "intact": True})
        except (TamperedError, ManifestError) as exc:
            results.append({"run": entry.id, "intact": False, "problem": str(exc)})
    results.reverse()  # oldest first
    bad = [r for r in results if r["intact"] is False]
    if args.json:
        doc = {
            "schema": 1,
            "store": store.address,
            "intact": not bad,
            "ledger_head": head,
            "runs": results,
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        for r in results:
            if r["intact"] is not True:
                state = "tampered" if r["intact"] is False else "skipped"
                sys.stdout.write(f"{state}: {r['run']}: {r['problem']}\n")
        good = sum(r["intact"] is True for r in results)
        sys.stdout.write(
            f"{'intact' if not bad else 'TAMPERED'}: {good} of {len(results)} runs verify "
            f"in {store.address} (ledger head {(head or '-')[:16]})\n"
        )
    return 1 if bad else 0
