"""The Run: one recorded run, from capture through the user's code to the sealed manifest.

Whatever goes wrong inside reprokit turns into a warning: the user's function always runs and
returns (or raises) exactly what it would have without us.
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
import warnings

from reprokit._capture.environment import imported_distributions
from reprokit._capture.params import Params, record_params
from reprokit._model.digest import fingerprint_exact
from reprokit._model.errors import ReprokitError, warn
from reprokit._model.protocol import ChildProtocol
from reprokit._model.redact import redact_text
from reprokit._model.yaml import render
from reprokit._record import signals
from reprokit._record.outputs import describe_output, describe_value, numeric_summary, safe_rel
from reprokit._record.process import CAPTURE, STATE
from reprokit._seeding import (
    CURRENT_SEED,
    check_seed,
    draw_seed,
    late_seeded,
    reset_late_seeded,
    seed_everything,
)
from reprokit._store.store import Store, default_store_path, digest_folder

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path
    from typing import Any

CURRENT: contextvars.ContextVar[Run | None] = contextvars.ContextVar("reprokit_run", default=None)


def utc(ts: float) -> str:
    """ISO 8601 UTC with milliseconds (without importing datetime)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


# -- the Run -------------------------------------------------------------------------------------


class Run:
    """One recorded run. Use it through ``@track`` or ``with reprokit.run(...) as run``."""

    def __init__(
        self,
        name: str | None = None,
        *,
        params: Mapping[str, Any] | Any = None,
        seed: int | None = None,
        deterministic: bool = False,
        store: Any = None,
        entry: dict[str, Any] | None = None,
        start_dir: str | None = None,
        entry_file: str | None = None,
        replay_of: str | None = None,
    ) -> None:
        self.name = name
        self._replay_of_given = replay_of
        self._params = Params()
        if params is not None:
            self._params.update(record_params(params))
        self._seed_given = seed
        self.seed: int = 0
        self.deterministic = deterministic or ChildProtocol.from_env().deterministic
        self._store_arg = store
        self._entry = dict(entry or {})
        self._start_dir = start_dir or os.getcwd()
        self._entry_file = entry_file
        self.id: str | None = None
        self._dir: str | None = None
        self.parent: str | None = None
        self.status = "created"
        self.store: Any = None
        self._lock = threading.Lock()
        self._metrics_fh: Any = None
        self._metrics: dict[str, dict[str, Any]] = {}
        self._ckpt_fh: Any = None
        self._ckpt_count = 0
        self._artifacts: list[dict[str, Any]] = []
        self._outputs: dict[str, Any] = {}
        self._token: contextvars.Token | None = None
        self._seed_token: contextvars.Token | None = None
        self._told = ChildProtocol()
        self._recording = False
        self._cached: dict[str, str] = {}
        self._extra_run: dict[str, Any] = {}
        self._replayable_problems: list[str] = []
        self._lost: str | None = None  # why recording stopped mid-run (disk full), if it did

    # -- public API ------------------------------------------------------------------------------

    @property
    def dir(self) -> Path | None:
        """The run's folder in the store (None when the run is not being recorded)."""
        if self._dir is None:
            return None
        from pathlib import Path

        return Path(self._dir)

    @property
    def params(self) -> dict[str, Any]:
        """The recorded params, as plain values."""
        return dict(self._params.values)

    def log_params(self, params: Mapping[str, Any] | Any = None, **more: Any) -> None:
        """Add hyperparameters (a mapping, a config object, or keyword arguments)."""
        if params is not None:
            self._params.update(record_params(params))
        if more:
            self._params.update(record_params(more))

    def log_metric(self, name: str, value: Any, step: int | None = None) -> None:
        """Append ``value`` to the series ``name`` (kept in order, streamed to disk)."""
        try:
            number = (
                float(value) if not isinstance(value, int) or isinstance(value, bool) else value
            )
        except (TypeError, ValueError):
            warn(f"metric {name!r}: {type(value).__name__} is not a number; not logged")
            return
        with self._lock:
            series = self._metrics.setdefault(name, {"count": 0, "last": None, "last_step": None})
            if step is None:
                step = series["count"]
            series["count"] += 1
            series["last"] = number
            series["last_step"] = step
            if self._recording:
                try:
                    if self._metrics_fh is None:
                        import json

                        self._json = json
                        path = os.path.join(self._dir, "metrics.jsonl")  # type: ignore[arg-type]
                        self._metrics_fh = open(path, "a", encoding="utf-8")  # noqa: SIM115
                    self._metrics_fh.write(
                        self._json.dumps({"name": name, "step": step, "value": number}) + "\n"
                    )
                except OSError as exc:
                    self._lose(exc)

    def checkpoint(self, name: str, value: Any) -> str:
        """Record the fingerprint of an intermediate value; returns it. Finds divergence later."""
        fp, exact = fingerprint_exact(value)
        record: dict[str, Any] = {"index": self._ckpt_count, "name": name, "fingerprint": fp}
        if not exact:
            record["exact"] = False
        summary = numeric_summary(value)
        if summary is not None:
            record.update(summary)
        with self._lock:
            record["index"] = self._ckpt_count
            self._ckpt_count += 1
            if self._recording:
                try:
                    if self._ckpt_fh is None:
                        import json

                        self._json = json
                        path = os.path.join(self._dir, "checkpoints.jsonl")  # type: ignore[arg-type]
                        self._ckpt_fh = open(path, "a", encoding="utf-8")  # noqa: SIM115
                    self._ckpt_fh.write(self._json.dumps(record) + "\n")
                except OSError as exc:
                    self._lose(exc)
        return fp

    def abandon(self) -> None:
        """Drop this run without sealing it (nothing the user ran happened)."""
        self._lost = "abandoned"
        self._recording = False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.finish("failed")

    def _lose(self, exc: OSError) -> None:
        """The store stopped taking writes (disk full, quota): stop recording, keep training.

        The run is discarded at the end, with a warning, rather than sealed incomplete.
        """
        self._lost = f"{exc.strerror or exc} while streaming to the run folder"
        self._recording = False
        for fh in (self._metrics_fh, self._ckpt_fh):
            if fh is not None:
                try:
                    fh.close()
                except OSError:
                    pass
        self._metrics_fh = self._ckpt_fh = None

    def log_artifact(self, path: str | os.PathLike[str], copy: bool = False) -> dict[str, Any]:
        """Hash a file or folder the run produced (``copy=True`` also keeps a copy in the run)."""
        from pathlib import Path

        p = Path(path)
        if not p.exists():
            raise ReprokitError(f"artifact {os.fspath(path)!r} does not exist")
        record = describe_output(p, Path(self._root_for_paths()))
        if copy and self._recording and self._dir is not None:
            run_dir = Path(self._dir)
            dest = run_dir / "artifacts" / safe_rel(record["path"])
            dest.parent.mkdir(parents=True, exist_ok=True)
            import shutil

            if p.is_dir():
                shutil.copytree(p, dest, dirs_exist_ok=True)
            else:
                shutil.copyfile(p, dest)
            record["copy"] = dest.relative_to(run_dir).as_posix()
        with self._lock:
            self._artifacts.append(record)
        return record

    def not_replayable(self, reason: str) -> None:
        """Mark the run not replayable; ``reason`` is recorded in the manifest."""
        self._replayable_problems.append(reason)

    @property
    def param_problems(self) -> list[str]:
        """Params that could not be recorded faithfully (each makes the run not replayable)."""
        return list(self._params.problems)

    def set_output(self, key: str, value: Any) -> None:
        """Record ``value`` under ``key`` in the run's outputs (a verdict, declared files)."""
        with self._lock:
            self._outputs[key] = value

    def note_seeds(self, **items: Any) -> None:
        """Add facts to the run's seeds section (e.g. where the seed came from)."""
        seeds = getattr(self, "_seeds", None)
        if seeds is not None:
            seeds.update(items)

    @property
    def root(self) -> str:
        """The folder recorded paths are relative to: the repository root, else the cwd."""
        return self._root_for_paths()

    # -- lifecycle -------------------------------------------------------------------------------

    def _root_for_paths(self) -> str:
        return self._cached.get("_root") or os.getcwd()

    def start(self) -> Run:
        """Capture, create the run folder and make this the active run. Never raises."""
        self._started = time.time()
        self._t0 = time.perf_counter()
        self._capture_s = 0.0
        parent = CURRENT.get()
        told = ChildProtocol.from_env()
        self._told = told
        self.parent = parent.id if parent is not None else told.parent
        # A replay's child process marks its top-level runs as replays of the recorded one.
        top = parent is None
        self._replay_of = self._replay_of_given or (told.replay_of if top else None)
        # A seed-robustness sweep re-runs one run under other seeds and groups the results.
        sweep = STATE.sweep
        self._group = (sweep.get("group") or told.group) if top else None
        self._seed_override = sweep.get("seed", told.seed_override) if top else None
        self._ordinal = STATE.next_ordinal(self.name)
        try:
            self._seed_and_capture()
            self._recording = True
            # The run's duration is the user's code; capture time is recorded on its own.
            now = time.perf_counter()
            self._capture_s, self._t0 = now - self._t0, now
        except Exception as exc:
            self._recording = False
            warn(f"this run is not recorded: {exc}")
        self.status = "running"
        self._token = CURRENT.set(self)
        self._seed_token = CURRENT_SEED.set(self.seed)
        if self._recording:
            signals.add_active(self)
        return self

    def _seed_and_capture(self) -> None:
        seed = self._seed_given if self._seed_override is None else self._seed_override
        if seed is None and self._told.seed is not None:
            seed = self._told.seed
        self.seed = check_seed(seed) if seed is not None else draw_seed()
        reset_late_seeded()
        self._seeds = seed_everything(self.seed, self.deterministic)
        self._seeds["source"] = "given" if seed is not None else "drawn"
        cap, self._code_cache = CAPTURE.code_for(self._start_dir, self._entry_file)
        self._code = cap
        if cap.root is not None:
            self._cached["_root"] = str(cap.root)
        if self._store_arg is not None:
            self.store = Store.at(self._store_arg)
        elif self._told.store:
            self.store = Store.at(self._told.store)
        elif cap.section.get("kind") == "git" and cap.root is not None:
            self.store = Store.at(os.path.join(cap.root, ".reprokit"))
        else:
            self.store = Store.at(default_store_path(os.getcwd()))
        self.id, self._dir = self.store.new_run_dir()

    def finish(
        self,
        status: str = "completed",
        *,
        error: BaseException | None = None,
        result: Any = None,
        has_result: bool = False,
        exit_code: int | None = None,
    ) -> None:
        """Seal the run. Failures here become a warning; the user's program goes on."""
        signals.remove_active(self)
        if self._token is not None:
            try:
                CURRENT.reset(self._token)
            except ValueError:  # finished from another context (threads, generators)
                CURRENT.set(None)
            self._token = None
            try:
                CURRENT_SEED.reset(self._seed_token)
            except ValueError:
                CURRENT_SEED.set(None)
        self.status = status
        lost = self._lost
        if lost is not None and self.store is not None and self.id is not None:
            self._lost = None
            try:
                self.store.discard(self.id)
            except Exception:
                pass
            warn(f"run {self.id} was not recorded: {lost}")
            return
        if not self._recording:
            return
        self._recording = False
        # Sealing is a critical section: a second Ctrl-C or a SIGTERM waits until it is done.
        with signals.DeferSignals():
            try:
                self._seal(status, error, result, has_result, exit_code)
            except Exception as exc:
                if self.store is not None and self.id is not None:
                    try:
                        self.store.discard(self.id)
                    except Exception:
                        pass
                warn(f"run {self.id} was not recorded: {exc}")

    def _seal(
        self,
        status: str,
        error: BaseException | None,
        result: Any,
        has_result: bool,
        exit_code: int | None,
    ) -> None:
        ended = time.time()
        duration = time.perf_counter() - self._t0
        for fh in (self._metrics_fh, self._ckpt_fh):
            if fh is not None:
                fh.close()
        self._metrics_fh = self._ckpt_fh = None

        root = self._code.root
        file = self._entry.get("file")
        if root and isinstance(file, str) and file.startswith(root.rstrip(os.sep) + os.sep):
            # Replay finds the entry inside the rebuilt tree by this path.
            self._entry["file_rel"] = os.path.relpath(file, root).replace(os.sep, "/")
        cwd = os.getcwd()
        rel_cwd = cwd
        if root and (cwd == root or cwd.startswith(root + os.sep)):
            rel_cwd = os.path.relpath(cwd, root).replace(os.sep, "/")
        run: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "status": status,
            "started": utc(self._started),
            "ended": utc(ended),
            "duration_s": round(duration, 6),
            "capture_s": round(self._capture_s, 6),
            "entry": self._entry,
            "cwd": rel_cwd,
            "parent": self.parent,
            "pid": os.getpid(),
            "process": STATE.token,
            "ordinal": self._ordinal,
            "replay_of": self._replay_of,
            "group": self._group,
        }
        run.update(self._extra_run)
        if error is not None:
            import traceback

            run["error"] = {
                "type": f"{type(error).__module__}.{type(error).__qualname__}",
                "message": redact_text(str(error)),
                "traceback": redact_text("".join(traceback.format_exception(error))),
            }
        problems = list(self._replayable_problems) + list(self._params.problems)
        if self._code.section.get("kind", "").startswith("unavailable") or "error" in (
            self._code.section
        ):
            problems.append("the code could not be captured")
        problems.extend(self._code.section.get("incomplete", []))
        run["replayable"] = not problems
        if problems:
            run["not_replayable_because"] = problems

        outputs: dict[str, Any] = dict(self._outputs)
        if has_result:
            outputs["return"] = describe_value(result)
        if exit_code is not None:
            outputs["exit_code"] = exit_code
        if self._metrics:
            outputs["metrics"] = {
                name: dict(series) for name, series in sorted(self._metrics.items())
            }
        if self._ckpt_count:
            outputs["checkpoints"] = {"count": self._ckpt_count, "file": "checkpoints.jsonl"}
        if self._artifacts:
            outputs["artifacts"] = self._artifacts

        params = dict(self._params.values)
        seeds = dict(self._seeds)
        late = late_seeded()
        if late:
            # Libraries first imported during the run, seeded by the import hook as they loaded.
            seeds["seeded_on_import"] = late
        sections: dict[str, Any] = {"run": run, "params": params, "seeds": seeds}
        if self._params.redacted:
            run["redacted_params"] = sorted(set(self._params.redacted))
        if self._params.types:
            run["param_types"] = self._params.types
        sections["outputs"] = outputs
        sections["digests"] = digest_folder(self._dir)  # type: ignore[arg-type]
        code_text = CAPTURE.code_text(self._code_cache)
        for digest, blob in self._code.blobs.items():
            self.store.put_object(digest, blob)  # a no-op once the store has it
        cached = {
            "code": code_text,
            "environment": CAPTURE.environment_text(imported_distributions()),
            "hardware": CAPTURE.hardware(),
        }
        self.store.seal(self.id, render(sections, cached))
        STATE.last_store_root = self.store.address
        if self._group is not None and "sealed" in STATE.sweep:
            STATE.sweep["sealed"].append(self.id)
        log = ChildProtocol.from_env().run_log
        if log:
            # A replay reads back which runs its child process sealed, in order.
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(f"{self.id}\n")

    # -- context manager -------------------------------------------------------------------------

    def __enter__(self) -> Run:
        if self.status == "created":
            self.start()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self.status == "running":
            self.finish(*status_of(exc), error=error_of(exc))

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.name!r} {self.status}>"


def status_of(exc: BaseException | None) -> tuple[str]:
    if exc is None:
        return ("completed",)
    if isinstance(exc, KeyboardInterrupt):
        return ("interrupted",)
    if isinstance(exc, SystemExit) and exc.code in (None, 0):
        return ("completed",)
    return ("failed",)


def error_of(exc: BaseException | None) -> BaseException | None:
    if exc is None or (isinstance(exc, SystemExit) and exc.code in (None, 0)):
        return None
    return exc
