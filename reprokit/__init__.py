"""reprokit: record ML runs as immutable, tamper-evident manifests, and check them later.

Map of the package: ``_capture/`` describes a run's world (code, params, seeds, environment,
hardware); ``_yaml``/``_manifest`` and ``_digest`` define the record and what "same" means;
``_store`` keeps sealed runs write-once; ``_run`` drives capture -> manifest -> store for
``@track`` and ``run()``; ``_api`` holds the verbs (load, verify, diff); ``_cli`` only calls them.

Names load on first use, so ``import reprokit`` costs next to nothing.
"""

from __future__ import annotations

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it

__version__ = "0.1.0"

__all__ = [
    "AmbiguousRun",
    "CheckReport",
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
    "archive": "reprokit._verbs.archive",
    "across_seeds": "reprokit._verbs.audit",
    "check": "reprokit._verbs.audit",
    "CheckReport": "reprokit._verbs.audit",
    "SeedReport": "reprokit._verbs.audit",
    "diff": "reprokit._api",
    "load": "reprokit._api",
    "verify": "reprokit._api",
    "derive_seed": "reprokit._seeding",
    "seed_everything": "reprokit._seeding",
    "jax_key": "reprokit._seeding",
    "worker_init_fn": "reprokit._seeding",
    "fingerprint": "reprokit._model.digest",
    "AmbiguousRun": "reprokit._model.errors",
    "ManifestError": "reprokit._model.errors",
    "NotReplayable": "reprokit._model.errors",
    "ReprokitError": "reprokit._model.errors",
    "ReprokitWarning": "reprokit._model.errors",
    "RunNotFound": "reprokit._model.errors",
    "StoreError": "reprokit._model.errors",
    "TamperedError": "reprokit._model.errors",
    "Manifest": "reprokit._model.manifest",
    "Run": "reprokit._record.run",
    "checkpoint": "reprokit._record.run",
    "current_run": "reprokit._record.run",
    "log_artifact": "reprokit._record.run",
    "log_metric": "reprokit._record.run",
    "log_params": "reprokit._record.run",
    "run": "reprokit._record.run",
    "replay": "reprokit._verbs.replay",
    "ReplayReport": "reprokit._verbs.replay",
    "track": "reprokit._record.run",
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
    from reprokit._api import diff, load, verify
    from reprokit._verbs.archive import archive
    from reprokit._verbs.audit import CheckReport, SeedReport, across_seeds, check
    from reprokit._seeding import derive_seed, jax_key, seed_everything, worker_init_fn
    from reprokit._model.digest import fingerprint
    from reprokit._model.errors import (
        AmbiguousRun,
        ManifestError,
        NotReplayable,
        ReprokitError,
        ReprokitWarning,
        RunNotFound,
        StoreError,
        TamperedError,
    )
    from reprokit._model.manifest import Manifest
    from reprokit._verbs.replay import ReplayReport, replay
    from reprokit._record.run import (
        Run,
        checkpoint,
        current_run,
        log_artifact,
        log_metric,
        log_params,
        run,
        track,
    )
