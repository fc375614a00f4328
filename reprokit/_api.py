"""The facade's own verbs: ``load`` and ``verify`` (of a run or an archive file).

Each returns data; none prints or exits. The other verbs live in ``reprokit._verbs``.
"""

from __future__ import annotations

from pathlib import Path

from reprokit._model.manifest import Manifest
from reprokit._store.store import Store
from reprokit._verbs.archive import ArchiveVerifyReport, is_archive, verify_archive
from reprokit._verbs.verify import VerifyReport, verify_run


def load(ref: str, store: Store | Path | str | None = None) -> Manifest:
    """The sealed manifest of a run: ``ref`` is a run id, a unique prefix/suffix, "latest" (the
    newest run the user started), or ``NAME@latest`` / ``NAME@N`` (the N-th newest run NAME)."""
    return Store.at(store).load(ref)


def verify(
    ref: str,
    store: Store | Path | str | None = None,
    *,
    replay: bool = False,
    venv: bool = False,
    rtol: float = 0.0,
    atol: float = 0.0,
    allowed_signers: str | None = None,
    sandbox: bool = True,
    trust: bool = False,
) -> VerifyReport | ArchiveVerifyReport:
    """Check a sealed run (or an archive file) against its digests.

    For a run: returns a ``VerifyReport`` when intact. For an archive (``.tar.gz``/``.zip``):
    checks every checksum and run, replays every run with ``replay=True`` (inside a fresh
    virtualenv with ``venv=True``) and returns an ``ArchiveVerifyReport``. Raises
    ``TamperedError`` naming the first file that does not match. ``allowed_signers``: require
    a valid ``FILE.sig`` by one of these SSH keys. Replays of an archive run inside bubblewrap
    (``sandbox``); where there is none, only with ``trust=True``.
    """
    if is_archive(str(ref)):
        return verify_archive(
            ref,
            replay=replay,
            venv=venv,
            rtol=rtol,
            atol=atol,
            allowed_signers=allowed_signers,
            sandbox=sandbox,
            trust=trust,
        )
    return verify_run(ref, store)
