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
    "archive": "reprokit._archive",
    "across_seeds": "reprokit._audit",
    "check": "reprokit._audit",
    "CheckReport": "reprokit._audit",
    "SeedReport": "reprokit._audit",
    "diff": "reprokit._api",
    "load": "reprokit._api",
    "verify": "reprokit._api",
    "derive_seed": "reprokit._capture.seeds",
    "seed_everything": "reprokit._capture.seeds",
    "jax_key": "reprokit._capture.seeds",
    "worker_init_fn": "reprokit._capture.seeds",
    "fingerprint": "reprokit._digest",
    "AmbiguousRun": "reprokit._errors",
    "ManifestError": "reprokit._errors",
    "NotReplayable": "reprokit._errors",
    "ReprokitError": "reprokit._errors",
    "ReprokitWarning": "reprokit._errors",
    "RunNotFound": "reprokit._errors",
    "StoreError": "reprokit._errors",
    "TamperedError": "reprokit._errors",
    "Manifest": "reprokit._manifest",
    "Run": "reprokit._run",
    "checkpoint": "reprokit._run",
    "current_run": "reprokit._run",
    "log_artifact": "reprokit._run",
    "log_metric": "reprokit._run",
    "log_params": "reprokit._run",
    "run": "reprokit._run",
    "replay": "reprokit._replay",
    "ReplayReport": "reprokit._replay",
    "track": "reprokit._run",
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
    from reprokit._archive import archive
    from reprokit._audit import CheckReport, SeedReport, across_seeds, check
    from reprokit._capture.seeds import derive_seed, jax_key, seed_everything, worker_init_fn
    from reprokit._digest import fingerprint
    from reprokit._errors import (
        AmbiguousRun,
        ManifestError,
        NotReplayable,
        ReprokitError,
        ReprokitWarning,
        RunNotFound,
        StoreError,
        TamperedError,
    )
    from reprokit._manifest import Manifest
    from reprokit._replay import ReplayReport, replay
    from reprokit._run import (
        Run,
        checkpoint,
        current_run,
        log_artifact,
        log_metric,
        log_params,
        run,
        track,
    )
