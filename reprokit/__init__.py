"""reprokit: record ML runs as immutable, tamper-evident manifests, and check them later.

Map of the package, in the direction data flows (a module imports only from the rows above):
``_model`` (yaml, manifest, digest, redaction, comparison, the parent/child protocol),
``_capture`` (collectors), ``_seeding``, ``_store`` (write-once run folders, the ledger),
``_record`` (Run, track/run, signals, outputs), ``_reexec`` (rebuilding source, executing a
run again), ``_verbs`` (replay, audits, archives, diff), and the facade: this module, ``_api``,
``_cli``.

Names load on first use, so ``import reprokit`` costs next to nothing.
"""

from __future__ import annotations

from reprokit._model.version import __version__

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it

__all__ = [
    "AmbiguousRun",
    "ArchiveReport",
    "ArchiveVerifyReport",
    "CheckReport",
    "DiffReport",
    "GitError",
    "Manifest",
    "ManifestError",
    "NotReplayable",
    "ReplayReport",
    "ReprokitError",
    "ReprokitWarning",
    "Run",
    "RunNotFound",
    "SeedReport",
    "StoreError",
    "TamperedError",
    "UnsafeArchive",
    "VerifyReport",
    "__version__",
    "across_seeds",
    "archive",
    "check",
    "checkpoint",
    "current_run",
    "derive_seed",
    "diff",
    "fingerprint",
    "jax_key",
    "load",
    "log_artifact",
    "log_input",
    "log_metric",
    "log_params",
    "replay",
    "run",
    "seed_everything",
    "track",
    "verify",
    "worker_init_fn",
]

_WHERE = {
    "load": "reprokit._api",
    "verify": "reprokit._api",
    "fingerprint": "reprokit._model.digest",
    "AmbiguousRun": "reprokit._model.errors",
    "GitError": "reprokit._model.errors",
    "ManifestError": "reprokit._model.errors",
    "NotReplayable": "reprokit._model.errors",
    "ReprokitError": "reprokit._model.errors",
    "ReprokitWarning": "reprokit._model.errors",
    "RunNotFound": "reprokit._model.errors",
    "StoreError": "reprokit._model.errors",
    "TamperedError": "reprokit._model.errors",
    "UnsafeArchive": "reprokit._model.errors",
    "Manifest": "reprokit._model.manifest",
    "checkpoint": "reprokit._record.api",
    "current_run": "reprokit._record.api",
    "log_artifact": "reprokit._record.api",
    "log_input": "reprokit._record.api",
    "log_metric": "reprokit._record.api",
    "log_params": "reprokit._record.api",
    "run": "reprokit._record.api",
    "track": "reprokit._record.api",
    "Run": "reprokit._record.run",
    "derive_seed": "reprokit._seeding",
    "jax_key": "reprokit._seeding",
    "seed_everything": "reprokit._seeding",
    "worker_init_fn": "reprokit._seeding",
    "ArchiveReport": "reprokit._verbs.archive",
    "ArchiveVerifyReport": "reprokit._verbs.archive",
    "archive": "reprokit._verbs.archive",
    "CheckReport": "reprokit._verbs.audit",
    "SeedReport": "reprokit._verbs.audit",
    "across_seeds": "reprokit._verbs.audit",
    "check": "reprokit._verbs.audit",
    "DiffReport": "reprokit._verbs.diff",
    "diff": "reprokit._verbs.diff",
    "ReplayReport": "reprokit._verbs.replay",
    "replay": "reprokit._verbs.replay",
    "VerifyReport": "reprokit._verbs.verify",
    # IPython's extension protocol (`%load_ext reprokit`), not a public name of the library.
    "load_ipython_extension": "reprokit._record.notebook",
}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'reprokit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from reprokit._api import load, verify
    from reprokit._model.digest import fingerprint
    from reprokit._model.errors import (
        AmbiguousRun,
        GitError,
        ManifestError,
        NotReplayable,
        ReprokitError,
        ReprokitWarning,
        RunNotFound,
        StoreError,
        TamperedError,
        UnsafeArchive,
    )
    from reprokit._model.manifest import Manifest
    from reprokit._record.api import (
        checkpoint,
        current_run,
        log_artifact,
        log_input,
        log_metric,
        log_params,
        run,
        track,
    )
    from reprokit._record.run import Run
    from reprokit._seeding import derive_seed, jax_key, seed_everything, worker_init_fn
    from reprokit._verbs.archive import ArchiveReport, ArchiveVerifyReport, archive
    from reprokit._verbs.audit import CheckReport, SeedReport, across_seeds, check
    from reprokit._verbs.diff import DiffReport, diff
    from reprokit._verbs.replay import ReplayReport, replay
    from reprokit._verbs.verify import VerifyReport
