"""``verify`` of a sealed run: its manifest and every file it keeps match their digests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reprokit._model.report import Report
from reprokit._store.store import Store


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
