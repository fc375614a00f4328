"""Runs: ``@track``, ``run()`` and ``Run`` drive capture -> manifest -> store.

Per process, the code, environment and hardware are captured once and their manifest blocks
rendered once; a run re-captures code only when a module file it depends on changed on disk.
Whatever goes wrong inside reprokit turns into a warning: the user's function always runs and
returns (or raises) exactly what it would have without us.
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
import time
import warnings

from reprokit._capture import unavailable
from reprokit._capture.params import Params, bind_call, record_params
from reprokit._seeding import (
    check_seed,
    draw_seed,
    late_seeded,
    reset_late_seeded,
    seed_everything,
)
from reprokit._model.digest import fingerprint_exact, sha256_file
from reprokit._model.errors import ReprokitError, warn
from reprokit._model.redact import redact_argv

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path
    from typing import Any, TypeVar, overload

    F = TypeVar("F", bound=Callable[..., Any])

_current: contextvars.ContextVar[Run | None] = contextvars.ContextVar("reprokit_run", default=None)
_SMALL_VALUE_BYTES = 4096
_CO_COROUTINE = 0x80
_INLINE_CHECKPOINT = 64  # numbers kept inline in a checkpoint record, for divergence sizes


def _utc(ts: float) -> str:
    """ISO 8601 UTC with milliseconds (without importing datetime)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


_warn = warn


# -- per-process capture cache -------------------------------------------------------------------


class _ProcessCapture:
    """Code, environment and hardware of this process, captured once and rendered once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.code: dict[str, _CodeCache] = {}  # start folder -> capture
        self.env: dict[str, Any] | None = None
        self.env_text: str | None = None
        self.hardware_text: str | None = None
        self._module_count = -1
        self._modules_under: dict[str, list[str]] = {}
        self._replay_code: tuple[Any, _CodeCache] | None = None

    def environment(self) -> dict[str, Any]:
        if self.env is None:
            try:
                from reprokit._capture.environment import capture_environment

                self.env = capture_environment()
            except Exception as exc:
                self.env = {"error": unavailable(exc)}
        return self.env

    def environment_text(self, imported: list[str]) -> str:
        from reprokit._model.yaml import dump as dump_yaml
        from reprokit._model.yaml import dump_section

        if self.env_text is None:
            self.env_text = dump_section("environment", self.environment())
        extra = dump_yaml({"imported": imported}) if imported else "imported: []\n"
        return self.env_text + "".join(f"  {line}\n" for line in extra.splitlines())

    def hardware(self) -> str:
        if self.hardware_text is None:
            from reprokit._model.yaml import dump_section

            try:
                from reprokit._capture.hardware import capture_hardware

                hw: Any = capture_hardware()
            except Exception as exc:
                hw = unavailable(exc)
            self.hardware_text = dump_section("hardware", hw)
        return self.hardware_text

    def _module_files(self, root: str) -> list[str]:
        """Files of imported modules under ``root``; recomputed only when more were imported."""
        if len(sys.modules) != self._module_count or root not in self._modules_under:
            prefix = root + os.sep
            files = []
            for mod in list(sys.modules.values()):
                f = getattr(mod, "__file__", None)
                if f and f.startswith(prefix):
                    files.append(f)
            self._module_count = len(sys.modules)
            self._modules_under = {root: files}
        return self._modules_under[root]

    def _changed(self, cached: _CodeCache) -> tuple[bool, bool]:
        """(anything changed, a module file changed) since ``cached`` was captured."""
        if cached.cap.root is None:
            return False, False
        root = cached.cap.root
        module_changed = False
        for f in self._module_files(root):
            try:
                st = os.stat(f)
            except OSError:
                continue
            known = cached.stats.get(f)
            if known is None:
                # Imported after the capture: it changed only if written after it.
                if st.st_mtime_ns > cached.when_ns:
                    module_changed = True
                else:
                    cached.stats[f] = (st.st_mtime_ns, st.st_size)
            elif known != (st.st_mtime_ns, st.st_size):
                module_changed = True
        if module_changed:
            return True, True
        return _git_state(root) != cached.git_state, False

    def _replayed_code(self) -> tuple[Any, _CodeCache] | None:
        """In a process re-executing a recorded run from its verified source: that run's code.

        Its tree was checked against the recorded digest before the process started, so the
        code identity carries over (with where it was rebuilt), rather than a snapshot of a
        temporary folder that would differ in name only.
        """
        raw = os.environ.get("REPROKIT_REPLAY_CODE")
        if not raw:
            return None
        if self._replay_code is None:
            import json

            from reprokit._capture.git import CodeCapture
            from reprokit._model.yaml import dump_section

            try:
                data = json.loads(raw)
                section = dict(data["code"])
                section["rebuilt_in"] = data["source"]
                section["verified_before_running"] = True
                cap = CodeCapture(section=section, root=data["source"])
                text = dump_section("code", section)
                self._replay_code = (cap, _CodeCache(cap, text, 0, {}, None))
            except (ValueError, KeyError, TypeError):
                return None
        return self._replay_code

    def code_for(self, start: str, entry: str | None) -> tuple[Any, _CodeCache]:
        """(CodeCapture, its cache entry) for code started from ``start``; captured once per
        process, again only when a module file or the repository's index/HEAD changed.

        The portable patch may still be being written: ``code_text`` completes it."""
        from reprokit._capture.git import capture_code

        replayed = self._replayed_code()
        if replayed is not None:
            return replayed
        cached = self.code.get(start)
        module_changed = False
        if cached is not None:
            changed, module_changed = self._changed(cached)
            if not changed:
                return cached.cap, cached
        when = time.time_ns()
        cap = capture_code(start, entry, wait=False)
        if module_changed:
            cap.section["changed_during_process"] = (
                "a source file changed on disk after this process imported it: the code that ran "
                "may differ from the recorded tree"
            )
        stats = {}
        if cap.root is not None:
            for f in self._module_files(cap.root):
                try:
                    st = os.stat(f)
                    stats[f] = (st.st_mtime_ns, st.st_size)
                except OSError:
                    pass
        git_state = _git_state(cap.root) if cap.root is not None else None
        entry_cache = _CodeCache(cap, None, when, stats, git_state)
        self.code[start] = entry_cache
        return cap, entry_cache

    def code_text(self, cache: _CodeCache) -> str:
        """The rendered code block, once the capture (and its patch) is complete."""
        if cache.text is None:
            from reprokit._model.yaml import dump_section

            cache.cap.complete()
            cache.text = dump_section("code", cache.cap.section)
        return cache.text


class _CodeCache:
    __slots__ = ("cap", "text", "when_ns", "stats", "git_state")

    def __init__(
        self, cap: Any, text: str | None, when_ns: int, stats: dict, git_state: Any
    ) -> None:
        self.cap, self.text, self.when_ns, self.stats, self.git_state = (
            cap,
            text,
            when_ns,
            stats,
            git_state,
        )


def _git_state(root: str) -> tuple:
    """Stat data of the files a commit, checkout or ``git add`` rewrites."""
    out: list[tuple[int, int] | None] = []
    for name in ("index", "HEAD"):
        try:
            st = os.stat(os.path.join(root, ".git", name))
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


_process = _ProcessCapture()
# Runs of one process share this token; "ordinal" counts runs of one name within the process,
# so a replayed script's runs can be matched to the recorded ones by name and order.
_PROCESS_TOKEN = os.urandom(6).hex()
_ordinals: dict[str | None, int] = {}
_overrides: dict[str, Any] = {}  # {"seed": s, "group": g} while across_seeds() runs a function
_last_store_root: str | None = None  # where this process last sealed a run
_active_runs: list[Run] = []  # started and not yet finished, in this process
_sigterm_watched = False


class Terminated(BaseException):
    """Recorded as a run's error when a signal (SIGTERM) ended it."""


def _watch_sigterm() -> None:
    """Seal unfinished runs as ``interrupted`` on SIGTERM, then die of it as usual.

    Installed only over the default disposition and from the main thread: a program with its
    own SIGTERM handler keeps it.
    """
    global _sigterm_watched
    if _sigterm_watched or threading.current_thread() is not threading.main_thread():
        return
    import signal

    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError, AttributeError):  # no SIGTERM here (Windows) or not allowed
        return
    _sigterm_watched = True


class _DeferSignals:
    """Hold SIGINT and SIGTERM back while a run is sealed, then deliver them.

    A signal that lands in the middle of sealing (the ledger lock held, the manifest half
    written) would otherwise leave a run incomplete or deadlock on the ledger's lock. Only the
    main thread receives signals, so elsewhere this does nothing.
    """

    __slots__ = ("pending", "saved")

    def __init__(self) -> None:
        self.pending: list[int] = []
        self.saved: dict[int, Any] = {}

    def __enter__(self) -> _DeferSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.saved[sig] = signal.signal(sig, self._hold)
            except (ValueError, OSError):
                pass
        return self

    def _hold(self, signum: int, frame: Any) -> None:
        self.pending.append(signum)

    def __exit__(self, *exc: Any) -> None:
        if not self.saved:
            return
        import signal

        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(self.pending):  # each held signal once, in arrival order
            os.kill(os.getpid(), sig)


def _on_sigterm(signum: int, frame: Any) -> None:
    import signal

    for r in reversed(list(_active_runs)):
        try:
            r.finish("interrupted", error=Terminated(f"terminated by signal {signum} (SIGTERM)"))
        except Exception:
            pass
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


_counter_lock = threading.RLock()  # re-entrant: the SIGTERM handler may run while it is held


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
    ) -> None:
        self.name = name
        self._params = Params()
        if params is not None:
            self._params.update(record_params(params))
        self._seed_given = seed
        self.seed: int = 0
        self.deterministic = deterministic or os.environ.get("REPROKIT_DETERMINISTIC") == "1"
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
            _warn(f"metric {name!r}: {type(value).__name__} is not a number; not logged")
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
        summary = _numeric_summary(value)
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
            dest = run_dir / "artifacts" / _safe_rel(record["path"])
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

    # -- lifecycle -------------------------------------------------------------------------------

    def _root_for_paths(self) -> str:
        return self._cached.get("_root") or os.getcwd()

    def start(self) -> Run:
        """Capture, create the run folder and make this the active run. Never raises."""
        self._started = time.time()
        self._t0 = time.perf_counter()
        self._capture_s = 0.0
        parent = _current.get()
        self.parent = parent.id if parent is not None else os.environ.get("REPROKIT_PARENT")
        # A replay's child process marks its top-level runs as replays of the recorded one.
        top = parent is None
        self._replay_of = os.environ.get("REPROKIT_REPLAY_OF") if top else None
        # A seed-robustness sweep re-runs one run under other seeds and groups the results.
        self._group = (_overrides.get("group") or os.environ.get("REPROKIT_GROUP")) if top else None
        self._seed_override = None
        if top:
            env_seed = os.environ.get("REPROKIT_SEED_OVERRIDE", "")
            self._seed_override = _overrides.get(
                "seed", int(env_seed) if env_seed.isdigit() else None
            )
        with _counter_lock:
            self._ordinal = _ordinals.get(self.name, 0)
            _ordinals[self.name] = self._ordinal + 1
        try:
            self._seed_and_capture()
            self._recording = True
            # The run's duration is the user's code; capture time is recorded on its own.
            now = time.perf_counter()
            self._capture_s, self._t0 = now - self._t0, now
        except Exception as exc:
            self._recording = False
            _warn(f"this run is not recorded: {exc}")
        self.status = "running"
        self._token = _current.set(self)
        if self._recording:
            with _counter_lock:
                _active_runs.append(self)
            _watch_sigterm()
        return self

    def _seed_and_capture(self) -> None:
        from reprokit._store.store import Store, default_store_path

        seed = self._seed_given if self._seed_override is None else self._seed_override
        if seed is None and os.environ.get("REPROKIT_SEED", "").isdigit():
            seed = int(os.environ["REPROKIT_SEED"])
        self.seed = check_seed(seed) if seed is not None else draw_seed()
        reset_late_seeded()
        self._seeds = seed_everything(self.seed, self.deterministic)
        self._seeds["source"] = "given" if seed is not None else "drawn"
        cap, self._code_cache = _process.code_for(self._start_dir, self._entry_file)
        self._code = cap
        if cap.root is not None:
            self._cached["_root"] = str(cap.root)
        if self._store_arg is not None:
            self.store = Store.at(self._store_arg)
        elif os.environ.get("REPROKIT_STORE"):
            self.store = Store.at(None)
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
        with _counter_lock:
            if self in _active_runs:
                _active_runs.remove(self)
        if self._token is not None:
            try:
                _current.reset(self._token)
            except ValueError:  # finished from another context (threads, generators)
                _current.set(None)
            self._token = None
        self.status = status
        lost = self._lost
        if lost is not None and self.store is not None and self.id is not None:
            self._lost = None
            try:
                self.store.discard(self.id)
            except Exception:
                pass
            _warn(f"run {self.id} was not recorded: {lost}")
            return
        if not self._recording:
            return
        self._recording = False
        # Sealing is a critical section: a second Ctrl-C or a SIGTERM waits until it is done.
        with _DeferSignals():
            try:
                self._seal(status, error, result, has_result, exit_code)
            except Exception as exc:
                if self.store is not None and self.id is not None:
                    try:
                        self.store.discard(self.id)
                    except Exception:
                        pass
                _warn(f"run {self.id} was not recorded: {exc}")

    def _seal(
        self,
        status: str,
        error: BaseException | None,
        result: Any,
        has_result: bool,
        exit_code: int | None,
    ) -> None:
        from reprokit._capture.environment import imported_distributions
        from reprokit._store.store import digest_folder
        from reprokit._model.yaml import render

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
            "started": _utc(self._started),
            "ended": _utc(ended),
            "duration_s": round(duration, 6),
            "capture_s": round(self._capture_s, 6),
            "entry": self._entry,
            "cwd": rel_cwd,
            "parent": self.parent,
            "pid": os.getpid(),
            "process": _PROCESS_TOKEN,
            "ordinal": self._ordinal,
            "replay_of": self._replay_of,
            "group": self._group,
        }
        run.update(self._extra_run)
        if error is not None:
            import traceback

            from reprokit._model.redact import redact_text

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
        code_text = _process.code_text(self._code_cache)
        for digest, blob in self._code.blobs.items():
            self.store.put_object(digest, blob)  # a no-op once the store has it
        cached = {
            "code": code_text,
            "environment": _process.environment_text(imported_distributions()),
            "hardware": _process.hardware(),
        }
        self.store.seal(self.id, render(sections, cached))
        global _last_store_root
        _last_store_root = self.store._root
        if self._group is not None and "sealed" in _overrides:
            _overrides["sealed"].append(self.id)
        log = os.environ.get("REPROKIT_RUN_LOG")
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
            self.finish(*_status_of(exc), error=_error_of(exc))

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.name!r} {self.status}>"


def _status_of(exc: BaseException | None) -> tuple[str]:
    if exc is None:
        return ("completed",)
    if isinstance(exc, KeyboardInterrupt):
        return ("interrupted",)
    if isinstance(exc, SystemExit) and exc.code in (None, 0):
        return ("completed",)
    return ("failed",)


def _error_of(exc: BaseException | None) -> BaseException | None:
    if exc is None or (isinstance(exc, SystemExit) and exc.code in (None, 0)):
        return None
    return exc


def _safe_rel(rel: str) -> str:
    from pathlib import Path

    parts = [p for p in Path(rel).parts if p not in ("..", "/", "\\") and not Path(p).anchor]
    return "/".join(parts) or "artifact"


def describe_output(path: Path, root: Path) -> dict[str, Any]:
    """Size and sha256 of a file, or of every file in a folder, with paths relative to root."""
    from pathlib import Path

    try:
        rel = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        rel = os.fspath(path)
    if path.is_dir():
        files = []
        total = 0
        for dirpath, dirs, names in os.walk(path):
            dirs.sort()
            for n in sorted(names):
                f = Path(dirpath) / n
                digest, size = sha256_file(f)
                files.append(
                    {"path": f.relative_to(path).as_posix(), "size": size, "sha256": digest}
                )
                total += size
        return {"path": rel, "kind": "folder", "size": total, "files": files}
    digest, size = sha256_file(path)
    return {"path": rel, "kind": "file", "size": size, "sha256": digest}


def describe_value(value: Any) -> dict[str, Any]:
    """Fingerprint of a value, plus the value itself when it is small plain data."""
    fp, exact = fingerprint_exact(value)
    out: dict[str, Any] = {"type": f"{type(value).__module__}.{type(value).__qualname__}"}
    out["fingerprint"] = fp
    if not exact:
        out["exact"] = False
    plain = record_params({"v": value})
    if not plain.problems and not plain.redacted:
        from reprokit._model.yaml import dump

        if len(dump({"v": plain.values["v"]})) <= _SMALL_VALUE_BYTES:
            out["value"] = plain.values["v"]
    summary = _numeric_summary(value)
    if summary is not None and "value" not in out:
        out.update(summary)
    return out


def _numeric_summary(value: Any) -> dict[str, Any] | None:
    """Inline numbers (small) or summary statistics (large) of numeric values, for tolerances."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return {"value": value}
    module = type(value).__module__
    if module == "numpy" or module.startswith("torch"):
        try:
            if module.startswith("torch"):
                value = value.detach().cpu()
                if not (value.is_floating_point() or value.dtype.is_signed):
                    return None
                value = value.double().numpy()
            import numpy as np

            arr = np.asarray(value)
            if arr.dtype.kind not in "iuf":
                return None
            if arr.size <= _INLINE_CHECKPOINT:
                return {"values": arr.astype(float).ravel().tolist(), "shape": list(arr.shape)}
            a = arr.astype(np.float64)
            return {
                "shape": list(arr.shape),
                "stats": {
                    "mean": float(a.mean()),
                    "std": float(a.std()),
                    "min": float(a.min()),
                    "max": float(a.max()),
                    "l2": float(np.sqrt((a * a).sum())),
                },
            }
        except Exception:
            return None
    if (
        isinstance(value, (list, tuple))
        and 0 < len(value) <= _INLINE_CHECKPOINT
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        return {"values": [float(v) for v in value]}
    return None


# -- entry points --------------------------------------------------------------------------------


def current_run() -> Run | None:
    """The active run of this thread/task, or None."""
    return _current.get()


def _active() -> Run:
    r = _current.get()
    if r is None:
        raise ReprokitError("no active run: call this inside @reprokit.track or reprokit.run()")
    return r


def log_metric(name: str, value: Any, step: int | None = None) -> None:
    """``current_run().log_metric(...)``."""
    _active().log_metric(name, value, step)


def log_params(params: Mapping[str, Any] | Any = None, **more: Any) -> None:
    """``current_run().log_params(...)``."""
    _active().log_params(params, **more)


def log_artifact(path: str | os.PathLike[str], copy: bool = False) -> dict[str, Any]:
    """``current_run().log_artifact(...)``."""
    return _active().log_artifact(path, copy)


def checkpoint(name: str, value: Any) -> str:
    """``current_run().checkpoint(...)``; outside a run it only returns the fingerprint."""
    r = _current.get()
    if r is None:
        return fingerprint_exact(value)[0]
    return r.checkpoint(name, value)


def _script_entry() -> tuple[dict[str, Any], str | None, list[str]]:
    argv, redacted = redact_argv(list(sys.argv))
    main = sys.modules.get("__main__")
    file = getattr(main, "__file__", None)
    entry: dict[str, Any] = {"kind": "script", "argv": argv, "executable": sys.executable}
    problems = []
    if redacted:
        entry["redacted"] = redacted
    if not file or not sys.argv or sys.argv[0] in ("", "-c", "-"):
        problems.append("the process was started from python -c, stdin or an interactive shell")
        return entry, None, problems
    path = os.path.realpath(file)
    entry["file"] = path
    return entry, path, problems


def run(
    name: str | None = None,
    params: Mapping[str, Any] | Any = None,
    seed: int | None = None,
    *,
    deterministic: bool = False,
    store: Any = None,
) -> Run:
    """A run for a ``with`` block: ``with reprokit.run("exp") as run: ...``.

    Entering the block captures and starts the run; leaving it seals the run (``failed`` with
    the traceback when the block raised; the exception is re-raised unchanged).
    """
    entry, file, problems = _script_entry()
    r = Run(
        name,
        params=params,
        seed=seed,
        deterministic=deterministic,
        store=store,
        entry=entry,
        entry_file=file,
        start_dir=os.getcwd(),
    )
    r._replayable_problems.extend(problems)
    return r


def _function_entry(func: Callable[..., Any]) -> tuple[dict[str, Any], str | None, list[str]]:
    qualname = getattr(func, "__qualname__", getattr(func, "__name__", repr(func)))
    module = getattr(func, "__module__", None)
    entry: dict[str, Any] = {"kind": "function", "module": module, "qualname": qualname}
    problems = []
    code = getattr(inspect_unwrap(func), "__code__", None)
    src = code.co_filename if code is not None else None
    path = os.path.realpath(src) if src and os.path.isfile(src) else None
    if path is not None:
        entry["file"] = path
    else:
        problems.append("the function has no source file")
    if "<locals>" in qualname or "<lambda>" in qualname:
        problems.append(f"{qualname} is defined inside another function and cannot be re-imported")
    argv, redacted = redact_argv(list(sys.argv))
    entry["argv"] = argv
    if redacted:
        entry["redacted"] = redacted
    return entry, path, problems


def inspect_unwrap(func: Any) -> Any:
    """The innermost function behind ``functools.wraps`` layers."""
    seen = 0
    while hasattr(func, "__wrapped__") and seen < 100:
        func, seen = func.__wrapped__, seen + 1
    return func


def _is_method(func: Callable[..., Any]) -> bool:
    code = getattr(inspect_unwrap(func), "__code__", None)
    return bool(code is not None and code.co_argcount and code.co_varnames[0] == "self")


if TYPE_CHECKING:

    @overload
    def track(func: F) -> F: ...
    @overload
    def track(
        func: None = None,
        *,
        name: str | None = None,
        seed: int | None = None,
        deterministic: bool = False,
        store: Any = None,
    ) -> Callable[[F], F]: ...


def track(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    seed: int | None = None,
    deterministic: bool = False,
    store: Any = None,
) -> Any:
    """Record every call of the decorated function as a run (plain, method or ``async def``).

    Params are bound from the signature with defaults applied. The function returns and raises
    exactly what it did before.
    """
    if func is None:

        def decorate(f: Callable[..., Any]) -> Any:
            return _track(f, name=name, seed=seed, deterministic=deterministic, store=store)

        return decorate
    return _track(func, name=name, seed=seed, deterministic=deterministic, store=store)


def _track(
    func: Callable[..., Any],
    *,
    name: str | None,
    seed: int | None,
    deterministic: bool,
    store: Any,
) -> Any:
    if seed is not None:
        check_seed(seed)
    info: dict[str, Any] = {}

    def make_run(args: tuple, kwargs: dict) -> Run | None:
        try:
            if not info:
                info["entry"], info["file"], info["problems"] = _function_entry(func)
                if _is_method(func):
                    info["problems"].append("a method: replay would need the instance")
            values = bind_call(func, args, kwargs)
            run_seed = seed
            if run_seed is None and isinstance(values.get("seed"), int):
                run_seed = values["seed"]
            file = info["file"]
            r = Run(
                name or getattr(func, "__name__", None),
                params=values,
                seed=run_seed,
                deterministic=deterministic,
                store=store,
                entry=info["entry"],
                entry_file=file,
                start_dir=os.path.dirname(file) if file is not None else os.getcwd(),
            )
            r._replayable_problems.extend(info["problems"])
            for problem in r._params.problems:
                _warn(f"{problem}; the run is marked not replayable")
            return r.start()
        except Exception as exc:  # never break the user's call
            _warn(f"this call is not recorded: {exc}")
            return None

    code = getattr(func, "__code__", None)
    if code is not None and code.co_flags & _CO_COROUTINE:

        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            r = make_run(args, kwargs)
            if r is None:
                return await func(*args, **kwargs)
            try:
                result = await func(*args, **kwargs)
            except BaseException as exc:
                r.finish(*_status_of(exc), error=_error_of(exc))
                raise
            r.finish("completed", result=result, has_result=True)
            return result

        return _wraps(async_wrapper, func)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        r = make_run(args, kwargs)
        if r is None:
            return func(*args, **kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            r.finish(*_status_of(exc), error=_error_of(exc))
            raise
        r.finish("completed", result=result, has_result=True)
        return result

    return _wraps(wrapper, func)


def _wraps(wrapper: Any, func: Any) -> Any:
    """What ``functools.wraps`` does (functools pulls in collections: milliseconds at import)."""
    for attr in ("__module__", "__name__", "__qualname__", "__doc__", "__annotations__"):
        try:
            setattr(wrapper, attr, getattr(func, attr))
        except AttributeError:
            pass
    wrapper.__dict__.update(getattr(func, "__dict__", {}))
    wrapper.__wrapped__ = func
    return wrapper
