"""``verify`` of a sealed run: its manifest and every file it keeps match their digests."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from reprokit._model.errors import TamperedError
from reprokit._model.report import Report
from reprokit._store.store import SHARD, VOID, Store


@dataclass(frozen=True)
class VerifyReport(Report):
    """What ``verify`` checked: the run, its manifest digest, file and object counts."""

    run_id: str = field(metadata={"json": "run"})
    intact: bool
    manifest_sha256: str
    files: int
    objects: int
    ledger_head: str


def verify_run(ref: str, store: Store | Path | str | None = None) -> VerifyReport:
    """Check a sealed run against its digests; ``TamperedError`` names the first mismatch."""
    info = Store.at(store).verify(ref)
    return VerifyReport(
        run_id=str(info["run"]),
        intact=True,
        manifest_sha256=str(info["manifest_sha256"]),
        files=int(info["files"]),  # type: ignore[call-overload]
        objects=int(info["objects"]),  # type: ignore[call-overload]
        ledger_head=str(info["ledger_head"]),
    )


@dataclass(frozen=True)
class StoreVerifyReport(Report):
    """What ``verify --all`` checked: every sealed run against the ledger, the ledger against
    the run folders, and (with ``head``) the ledger against a head published earlier."""

    store: str
    intact: bool
    runs: int
    ledger_lines: int
    ledger_head: str
    head_checked: str | None = None
    unsealed: list[str] = field(default_factory=list)


def verify_store(
    store: Store | Path | str | None = None, *, head: str | None = None
) -> StoreVerifyReport:
    """Check a whole store; ``TamperedError`` names the first problem.

    Every run the ledger vouches for must be present, sealed and intact (a deleted run folder,
    a folder holding another run's copy, an edited manifest are caught); every sealed folder must
    be in the ledger (nothing extra); with ``head``, that value (printed by an earlier
    ``verify``) must be a line of the chain: a ledger rolled back or rewritten since is caught.
    Folders that were never sealed (running, or killed before sealing) are listed, not errors.
    """
    st = Store.at(store)
    st.heal_quietly()  # lines that processes killed mid-seal did not write
    entries = st.ledger_entries()
    ids = set(st.run_ids())
    heads: dict[str, int] = {}
    vouched: dict[str, int] = {}
    last = "0" * 64
    for i, (_seq, rid, digest, chain) in enumerate(entries):
        heads[chain] = i + 1
        last = chain
        if digest == VOID and rid in vouched:
            del vouched[rid]  # its sealing failed (full disk) and the run was discarded
            continue
        if rid in vouched:
            raise TamperedError(f"run {rid} appears twice in the store's ledger", rid, "ledger")
        vouched[rid] = i + 1
    if head is not None:
        wanted = head.strip().lower()
        matches = [h for h in heads if len(wanted) >= 8 and h.startswith(wanted)]
        if not matches:
            raise TamperedError(
                f"ledger head {head} is not in the store's ledger: the ledger was rolled back, "
                f"truncated or rewritten since it was published (now {len(entries)} lines, "
                f"head {last[:16]})",
                path="ledger",
            )
    for rid, line in vouched.items():
        run_id, shard, rank = rid.partition("/rank-")
        if shard:
            # A rank's shard of a multi-rank run (its content: the run's own verify, below).
            if not rank.isdigit() or not os.path.exists(
                os.path.join(st.shard_path(run_id, int(rank)), SHARD)
            ):
                raise TamperedError(
                    f"rank {rank} of run {run_id} (ledger line {line}) is missing from the "
                    "store (deleted?)",
                    rid,
                )
        elif rid not in ids:
            raise TamperedError(
                f"run {rid} (ledger line {line}) is missing from the store (deleted?)", rid
            )
    unsealed: list[str] = []
    for rid in sorted(ids):
        sealed = (st.runs / rid / "manifest.yaml").exists()
        if not sealed:
            if rid in vouched:
                raise TamperedError(
                    f"run {rid} is sealed in the ledger (line {vouched[rid]}) but its manifest "
                    "is gone",
                    rid,
                    "manifest.yaml",
                )
            unsealed.append(rid)
            continue
        if rid not in vouched and st.running(rid):
            unsealed.append(rid)  # being sealed now: its ledger line follows the manifest
            continue
        if rid not in vouched:
            raise TamperedError(f"run {rid} is not in the store's ledger (added?)", rid, "ledger")
        st.verify(rid)
    return StoreVerifyReport(
        store=str(st.root),
        intact=True,
        runs=sum(1 for rid in vouched if "/rank-" not in rid),
        ledger_lines=len(entries),
        ledger_head=last,
        head_checked=head,
        unsealed=unsealed,
    )
