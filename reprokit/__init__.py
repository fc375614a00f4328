"""reprokit: record ML runs as immutable, tamper-evident manifests, and check them later.

Map of the package: ``_capture/`` describes a run's world (code, params, seeds, environment,
hardware); ``_manifest`` and ``_digest`` define the record and what "same" means; ``_store``
keeps sealed runs write-once; ``_run`` drives capture -> manifest -> store for ``@track`` and
``run()``; ``_api`` holds the verbs (load, verify, diff); ``_cli`` only calls the library.
"""

from __future__ import annotations

from reprokit._api import diff, load, verify
from reprokit._capture.seeds import derive_seed, seed_everything
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

__version__ = "0.1.0"

__all__ = [
    "AmbiguousRun",
    "Manifest",
    "ManifestError",
    "NotReplayable",
    "ReprokitError",
    "ReprokitWarning",
    "Run",
    "RunNotFound",
    "StoreError",
    "TamperedError",
    "__version__",
    "checkpoint",
    "current_run",
    "derive_seed",
    "diff",
    "fingerprint",
    "load",
    "log_artifact",
    "log_metric",
    "log_params",
    "run",
    "seed_everything",
    "track",
    "verify",
]
