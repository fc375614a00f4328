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

from reprokit._capture.environment import imported_distributions, one_look
from reprokit._capture.params import Params, record_params
from reprokit._model.errors import ReprokitError, warn
from reprokit._model.numbers import KEPT
from reprokit._model.protocol import ChildProtocol
from reprokit._model.redact import redact_text
from reprokit._model.yaml import render
from reprokit._record import group, lineage, metrics, observe, signals
from reprokit._record.inputs import InputLog
from reprokit._record.outputs import (
    INLINE_CHECKPOINT,
    describe_output,
    describe_value,
    numeric_summary,
    safe_fingerprint,
    safe_rel,
)
from reprokit._record.process import CAPTURE, STATE, CodeCache
from reprokit._seeding import (
    CURRENT_SEED,
    check_seed,
    draw_seed,
    late_seeded,
    reset_late_seeded,
    seed_everything,
    silence_hash_warning,
)
from reprokit._store.statcache import StatCache
from reprokit._store.store import Store, default_store_path, digest_folder, new_run_id

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from pathlib import Path
    from typing import Any

    from reprokit._record.group import RankInfo

_I63 = 1 << 63  # ints kept exact in metrics: those JSON readers take as 64-bit
KEPT_PER_RUN = 20_000_000  # numbers a run keeps across its checkpoints (~160 MB before zlib)

CURRENT: contextvars.ContextVar[Run | None] = contextvars.ContextVar("reprokit_run", default=None)


def utc(ts: float) -> str:
    """ISO 8601 UTC with milliseconds (without importing datetime)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def check_labels(
    tags: Iterable[str] | str | None, note: str | None
) -> tuple[tuple[str, ...], str | None]:
    """``tags`` (one string or several) and ``note`` as a run keeps them; ReprokitError naming
    the argument when they are not text (a mistake in the program, said before any run)."""
    if tags is None:
        tags = ()
    elif isinstance(tags, str):
        tags = (tags,)
    try:
        kept = tuple(dict.fromkeys(tags))
    except TypeError:
        raise ReprokitError(
            f"tags must be a string or a list of strings, got {type(tags).__name__}"
        ) from None
    for tag in kept:
        if not isinstance(tag, str) or not tag.strip():
            raise ReprokitError(f"each tag must be a non-empty string, got {tag!r}")
    if note is not None and not isinstance(note, str):
        raise ReprokitError(f"note must be a string, got {type(note).__name__}")
    return tuple(t.strip() for t in kept), note or None


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
        inputs: Iterable[str | os.PathLike[str]] | None = None,
        tags: Iterable[str] | str | None = None,
        note: str | None = None,
    ) -> None:
        self.name = name
        self.tags, self.note = check_labels(tags, note)
        self._replay_of_given = replay_of
        self._params = Params()
        if params is not None:
            self._params.update(record_params(params))
        self._seed_given = seed
        self.seed: int = 0
        # What a parent process told this one: read once per run (the environment does not
        # change between a run's creation, start and seal).
        self._told = ChildProtocol.from_env()
        self.deterministic = deterministic or self._told.deterministic
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
        self._metrics: dict[str, list[Any]] = {}
        self._pending: list[tuple[Any, Any, Any, float]] = []  # metric points not yet written
        self._ckpt_fh: Any = None
        self._written: dict[str, tuple[int, str]] = {}  # stream -> (size, sha256) as written
        self._ckpt_count = 0
        self._numbers_kept = 0
        self._artifacts: list[dict[str, Any]] = []
        self._outputs: dict[str, Any] = {}
        self._token: contextvars.Token | None = None
        self._seed_token: contextvars.Token[int | None] | None = None
        self._recording = False
        self._cached: dict[str, str] = {}
        self._extra_run: dict[str, Any] = {}
        self._replayable_problems: list[str] = []
        self._lost: str | None = None  # why recording stopped mid-run (disk full), if it did
        self._inputs = InputLog(inputs or ())
        self._param_sources: dict[str, str] = {}
        self._starter: int | None = None  # the process that started this one as a worker
        self._forked_away = False  # a forked child's copy of its parent's run: never touched
        self._rank: RankInfo | None = None  # this process's rank in a distributed job

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

    def add_params(self, params: Params, source: str) -> None:
        """Add params already made plain (e.g. by a child process), noting where they came from."""
        self._params.update(params)
        for name in params.values:
            self._param_sources[name] = source

    def log_params(self, params: Mapping[str, Any] | Any = None, **more: Any) -> None:
        """Add hyperparameters (a mapping, a config object, or keyword arguments)."""
        if params is not None:
            self._params.update(record_params(params))
        if more:
            self._params.update(record_params(more))

    def log_metric(self, name: str, value: Any, step: int | None = None) -> None:
        """Append ``value`` to the series ``name`` (kept in order, streamed to disk in batches:
        see ``metrics.py`` for what a killed process can lose)."""
        kind = type(value)
        if kind is float or (kind is int and -_I63 < value < _I63):
            number = value
        else:
            try:
                number = (
                    float(value)
                    if not isinstance(value, int)
                    or isinstance(value, bool)
                    or value.bit_length() > 63
                    else value
                )
            except (TypeError, ValueError, OverflowError):
                warn(
                    f"metric {name!r}: {type(value).__name__} is not a float-sized number; "
                    "not logged"
                )
                return
            except Exception as exc:  # a number-like object whose __float__ raises
                warn(
                    f"metric {name!r}: reading the value failed ({type(exc).__name__}); not logged"
                )
                return
        if self._rank is not None:
            self._note_backend()
        with self._lock:
            series = self._metrics.get(name)
            if series is None:
                series = self._metrics[name] = [0, None, None]  # count, last, last step
            if step is None:
                step = series[0]
            series[0] += 1
            series[1] = number
            series[2] = step
            if self._recording:
                pending = self._pending
                pending.append((name, step, number, time.time()))
                if len(pending) >= metrics.FLUSH_POINTS:
                    self._write_metrics()
                elif len(pending) == 1:
                    metrics.FLUSHER.watch(self)

    def flush_metrics(self, older_than: float = 0.0) -> None:
        """Write the buffered metric points to the run folder (only if the oldest is at least
        ``older_than`` seconds old)."""
        with self._lock:
            if self._pending and time.time() - self._pending[0][3] >= older_than:
                self._write_metrics()

    def _write_metrics(self) -> None:
        """(Lock held.) The buffered points to ``metrics.jsonl``, handed to the kernel."""
        pending, self._pending = self._pending, []
        if self._lost is not None or self._forked_away or self.store is None:
            return  # recording stopped (full disk, abandoned), or the run is another process's
        try:
            if self._metrics_fh is None:
                self._metrics_fh = self.store.open_stream(self._dir, "metrics.jsonl")
            self._metrics_fh.write(metrics.lines(pending))
        except OSError as exc:
            self._lose(exc)

    def _note_backend(self) -> None:
        """A rank's ``torch.distributed`` backend, read while the process group exists (a
        program usually destroys it before the run ends)."""
        ranks = self._extra_run.get("ranks")
        if ranks is not None and "backend" not in ranks:
            backend = group.distributed_backend()
            if backend is not None:
                ranks["backend"] = backend

    def checkpoint(self, name: str, value: Any) -> str:
        """Record the fingerprint of an intermediate value; returns it. Finds divergence later."""
        if self._rank is not None:
            self._note_backend()
        fp, exact = safe_fingerprint(value)
        if fp is None:
            warn(f"checkpoint {name!r}: {type(value).__name__} cannot be fingerprinted; recorded")
            fp = "unavailable"
        record: dict[str, Any] = {"index": self._ckpt_count, "name": name, "fingerprint": fp}
        if not exact:
            record["exact"] = False
        # Up to KEPT numbers per checkpoint are kept (compressed) so a tolerance can judge them,
        # until the run has kept KEPT_PER_RUN in all; beyond, a summary.
        keep = KEPT if self._numbers_kept < KEPT_PER_RUN else INLINE_CHECKPOINT
        summary = numeric_summary(value, keep)
        if summary is not None:
            record.update(summary)
            if "packed" in summary:
                self._numbers_kept += int(summary["stats"]["count"])
        with self._lock:
            record["index"] = self._ckpt_count
            self._ckpt_count += 1
            if self._recording:
                try:
                    if self._ckpt_fh is None:
                        import json

                        self._json = json
                        self._ckpt_fh = self.store.open_stream(self._dir, "checkpoints.jsonl")
                    self._ckpt_fh.write(self._json.dumps(record) + "\n")
                except OSError as exc:
                    self._lose(exc)
        return fp

    def keep_console(self, text: str, info: dict[str, Any]) -> None:
        """Keep a command's console output (already redacted) in the run as ``console.log``,
        described under ``outputs.console``; a store that refuses it costs a warning only."""
        if not self._recording or self._dir is None:
            return
        try:
            with self.store.open_stream(self._dir, "console.log") as fh:
                fh.write(text)
            done = fh.written()
            if done is not None:
                self._written["console.log"] = done
        except OSError as exc:
            warn(f"the command's console output is not kept: {exc.strerror or exc}")
            return
        self.set_output("console", info)

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
        self._close_streams()

    def _close_streams(self) -> None:
        """(Lock held.) Close the run's streams (their descriptors: nothing is buffered)."""
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
        if not (p.exists() or p.is_symlink()):
            raise ReprokitError(f"artifact {os.fspath(path)!r} does not exist")
        try:
            record = describe_output(p, Path(self._root_for_paths()))
        except OSError as exc:  # vanished or unreadable: say so, keep training
            record = {"path": os.fspath(path), "unreadable": exc.strerror or str(exc)}
            warn(f"artifact {os.fspath(path)!r} could not be read: {record['unreadable']}")
        skipped = record.get("skipped")
        if skipped:
            what = skipped if isinstance(skipped, str) else f"{len(skipped)} entries not hashed"
            warn(f"artifact {record['path']!r}: {what} (links and special files are not read)")
        if copy and self._recording and self.id is not None and "unreadable" not in record:
            try:
                record["copy"] = self.store.keep_copy(self._dir, p, safe_rel(record["path"]))
            except (OSError, RecursionError) as exc:  # a full disk must not break training
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                warn(f"artifact {record['path']!r} is hashed but not copied: {why}")
        with self._lock:
            self._artifacts.append(record)
        return record

    def add_observed_inputs(self, paths: list[str], lost: int, since_ns: int) -> None:
        """Files the run's program read in processes of its own (``reprokit run``), recorded
        at the seal as observed inputs, like the reads of this process."""
        self._inputs.add_observed(paths, lost, since_ns)

    def log_input(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        source: str | None = None,
        *,
        full_hash: bool = False,
    ) -> dict[str, Any]:
        """Record a file or folder the run reads: path, size, file count and sha256.

        ``name`` labels it, ``source`` says where it comes from (a URL, a dataset id).
        Unchanged files keep their digest through the store's stat cache; ``full_hash=True``
        reads every byte again. Returns the record.
        """
        return self._inputs.declare(
            path, self._root_for_paths(), name=name, source=source, full=full_hash
        )

    def _start_inputs(self) -> None:
        """Watch what the program opens, and declare the inputs given to the constructor."""
        self._inputs.cache = StatCache(self.store.cache_dir)
        if self._entry.get("kind") not in ("replay", "command"):
            # A replay's verdict and a command's wrapper read records and outputs, not data:
            # the files the program itself opens are seen in its own process.
            self._inputs.start(self.store.folder)
        pending, self._inputs.pending = self._inputs.pending, []
        for path in pending:
            try:
                self.log_input(path)
            except Exception as exc:  # never into the user's call: a warning says it
                warn(f"input {os.fspath(path)!r} is not recorded: {exc}")

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

    @property
    def start_dir(self) -> str:
        """The folder the run started in."""
        return self._start_dir

    def set_entry(self, key: str, value: Any) -> None:
        """Add ``key`` to the run's entry (what a replay needs to start it again)."""
        self._entry[key] = value

    @property
    def code(self) -> Any:
        """The run's code capture (a ``CodeCapture``; None before the run started)."""
        return getattr(self, "_code", None)

    def use_code(self, cap: Any) -> None:
        """Record ``cap`` as the run's code instead of what was captured when it started (a
        command's own files are known only once it ran)."""
        self._code = cap
        self._code_cache = CodeCache(cap, None, 0, {}, None)
        if cap.root is not None:
            self._cached["_root"] = str(cap.root)

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
        told = self._told
        self.parent = parent.id if parent is not None else told.parent
        # In a worker process, a run outside any other run of its own is nested in the run that
        # started the worker (found once the store is known).
        self._starter = lineage.starter_pid() if parent is None else None
        if self._starter is not None:
            silence_hash_warning()  # the process that started this one has said it
        # A replay's child process marks its top-level runs as replays of the recorded one.
        top = parent is None and self._starter is None
        self._rank = group.detect() if top else None
        self._replay_of = self._replay_of_given or (told.replay_of if top else None)
        # A seed-robustness sweep re-runs one run under other seeds and groups the results.
        sweep = STATE.sweep
        self._group = (sweep.get("group") or told.group) if top else None
        self._seed_override = sweep.get("seed", told.seed_override) if top else None
        self._ordinal = STATE.next_ordinal(self.name)
        try:
            with observe.paused():  # capture's own reads (git, caches) are not the run's inputs
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
            self._start_inputs()
        return self

    def _seed_and_capture(self) -> None:
        seed = self._seed_given if self._seed_override is None else self._seed_override
        if seed is None and self._told.seed is not None:
            seed = self._told.seed
        self.seed = check_seed(seed) if seed is not None else draw_seed()
        cap, self._code_cache = CAPTURE.code_for(self._start_dir, self._entry_file)
        self._code = cap
        if cap.root is not None:
            self._cached["_root"] = str(cap.root)
        forked_store = lineage.forked_store(self._starter) if self._starter is not None else None
        parent = CURRENT.get()
        if self._store_arg is not None:
            self.store = Store.at(self._store_arg)
        elif forked_store:
            self.store = Store.at(forked_store)
        elif parent is not None and parent.store is not None:
            # A nested run seals beside its parent, so its ``parent`` id resolves in one store.
            self.store = parent.store
        elif self._told.store:
            self.store = Store.at(self._told.store)
        elif cap.section.get("kind") == "git" and cap.root is not None:
            self.store = Store.at(os.path.join(cap.root, ".reprokit"))
        else:
            self.store = Store.at(default_store_path(os.getcwd()))
        if self._starter is not None:
            found = lineage.parent_run(self.store.unfinished_runs_of(self._starter), self._starter)
            if found is not None:
                self.parent = found
        rank = self._rank
        if rank is not None:
            # One rank of a distributed job: the ranks agree on one run id and, unless one was
            # given, one seed (a replay seeds every rank alike).
            agreed = self.store.agree(
                rank.key(self.name, self._ordinal), f"{new_run_id()} {self.seed}"
            ).split()
            if seed is None and len(agreed) == 2 and agreed[1].isdigit():
                self.seed = int(agreed[1])
            self._extra_run["ranks"] = rank.group()
            self._extra_run["rank"] = rank.mine()
            if rank.rank == 0:
                self.id, self._dir = self.store.new_run_dir(agreed[0], parent=self.parent)
            else:
                self.id, self._dir = agreed[0], self.store.new_shard_dir(agreed[0], rank.rank)
        else:
            self.id, self._dir = self.store.new_run_dir(parent=self.parent)
        reset_late_seeded()
        self._seeds = seed_everything(self.seed, self.deterministic)
        self._seeds["source"] = "given" if seed is not None else "drawn"

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
        if self._forked_away:
            return  # the parent process seals it
        signals.remove_active(self)
        self._inputs.stop()
        if self._token is not None:
            try:
                CURRENT.reset(self._token)
            except ValueError:  # finished from another context (threads, generators)
                CURRENT.set(None)
            self._token = None
            try:
                if self._seed_token is not None:
                    CURRENT_SEED.reset(self._seed_token)
            except ValueError:
                CURRENT_SEED.set(None)
        self.status = status
        lost = self._lost
        if lost is not None and self.store is not None and self.id is not None:
            self._lost = None
            if self._lock.acquire(timeout=0.5):  # (abandoned: its streams may still be open)
                try:
                    self._close_streams()
                finally:
                    self._lock.release()
            try:
                self.store.discard(self.id)
            except Exception:
                pass
            warn(f"run {self.id} was not recorded: {lost}")
            self._journal_end()
            return
        if not self._recording:
            return
        self._recording = False
        # Sealing is a critical section: a second Ctrl-C or a SIGTERM waits until it is done.
        with signals.DeferSignals(), observe.paused():  # (the seal's reads are reprokit's own)
            try:
                self._seal(status, error, result, has_result, exit_code)
            except Exception as exc:
                if self.store is not None and self.id is not None:
                    try:
                        self.store.discard(self.id)
                    except Exception:
                        pass
                warn(f"run {self.id} was not recorded: {exc}")
        self._journal_end()

    def _journal_end(self) -> None:
        rank = self._rank
        label = self.id if rank is None or rank.rank == 0 else f"{self.id}/rank-{rank.rank}"
        try:
            self.store.journal_end(label, last=self._starter is not None and not signals.ACTIVE)
        except Exception:
            pass  # the journal only helps workers find their parent run

    # -- forks: a child never seals, edits or signals its parent's runs --------------------------

    def hold_for_fork(self) -> None:
        """Before a fork: the buffered metric points go to the file (the streams themselves
        buffer nothing), so the child copies no points it would never write."""
        self._lock.acquire()
        if self._pending:
            self._write_metrics()

    def release_after_fork(self) -> None:
        self._lock.release()

    def leave_to_parent(self) -> None:
        """In a forked child: this run belongs to the parent; let go of the child's handles to
        it (the copied descriptors stay open, unused: the at-fork handler does no I/O)."""
        self._forked_away = True
        self._recording = False
        self._metrics_fh = self._ckpt_fh = None
        self._pending = []  # (empty: buffered points are written before the fork)
        self._lock = threading.Lock()

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
        # The SIGTERM handler may seal while this thread holds the lock in log_metric: wait a
        # moment for the lock (the flusher thread's write), never forever.
        held = self._lock.acquire(timeout=0.5)
        try:
            if self._pending:
                self._write_metrics()
        finally:
            if held:
                self._lock.release()
        streams = (("metrics.jsonl", self._metrics_fh), ("checkpoints.jsonl", self._ckpt_fh))
        for name, fh in streams:
            if fh is not None:
                # Not held: a thread may be in the middle of a write, and a descriptor closed
                # under it could be reused by the next file opened: it stays open (the digest
                # reads the file if its size is not what was counted).
                fh.close(keep_descriptor=not held)
                done = fh.written()
                if done is not None:
                    self._written[name] = done
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
            # Where the tree lay when recorded: a sandboxed replay puts the rebuilt tree there.
            "root": root or cwd,
            "parent": self.parent,
            "pid": os.getpid(),
            "process": STATE.token,
            "ordinal": self._ordinal,
            "replay_of": self._replay_of,
            "group": self._group,
        }
        if self.tags:
            run["tags"] = [redact_text(t) for t in self.tags]
        if self.note:
            run["note"] = redact_text(self.note)
        if self._starter is not None:
            # Made in a worker process: replay calls the function, never re-runs the script.
            run["worker_of"] = self._starter
        if self._rank is not None:
            self._note_backend()
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
                name: {"count": count, "last": last, "last_step": last_step}
                for name, (count, last, last_step) in sorted(self._metrics.items())
            }
        if self._ckpt_count:
            outputs["checkpoints"] = {"count": self._ckpt_count, "file": "checkpoints.jsonl"}
        if self._artifacts:
            outputs["artifacts"] = self._artifacts

        params = dict(self._params.values)
        seeds = dict(self._seeds)
        late = late_seeded()
        if late and "seeded_on_import" not in seeds:
            # Libraries first imported during the run, seeded by the import hook as they loaded.
            seeds["seeded_on_import"] = late
        sections: dict[str, Any] = {"run": run, "params": params, "seeds": seeds}
        if self._params.redacted:
            run["redacted_params"] = sorted(set(self._params.redacted))
        if self._params.types:
            run["param_types"] = self._params.types
        try:
            made = [str(a.get("path")) for a in self._artifacts]  # outputs, read to hash them
            inputs = self._inputs.section(root, self._code.section, self.store, made)
        except Exception as exc:  # capture degrades; it never costs the user the run
            inputs = {"unavailable": f"{type(exc).__name__}: {exc}"}
        if inputs:
            sections["inputs"] = inputs
        if self._param_sources:
            run["param_sources"] = dict(sorted(self._param_sources.items()))
        sections["outputs"] = outputs
        sections["digests"] = digest_folder(self._dir, self._written)  # type: ignore[arg-type]
        code_text = CAPTURE.code_text(self._code_cache)
        for digest, blob in self._code.blobs.items():
            self.store.put_object(digest, blob)  # a no-op once the store has it
        with one_look():  # one look at sys.path's folders for both
            environment = CAPTURE.environment_text(imported_distributions())
        cached = {"code": code_text, "environment": environment, "hardware": CAPTURE.hardware()}
        rank = self._rank
        if rank is not None and rank.rank != 0:
            self.store.seal_shard(self.id, rank.rank, render(sections, cached))
            STATE.last_store_root = self.store.folder
            return  # a shard is part of rank 0's run: not a run of its own to list
        # (The streams this run wrote were created read-only: only other files need a look.)
        others = [f for f in sections["digests"] if f not in self._written]
        self.store.seal(self.id, render(sections, cached), others)
        STATE.last_store_root = self.store.address
        if self._group is not None and "sealed" in STATE.sweep:
            STATE.sweep["sealed"].append(self.id)
        log = self._told.run_log
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


_held: list[Run] = []


def _before_fork() -> None:
    # The lock first: two threads forking at once would otherwise interleave the saved masks.
    signals.LOCK.acquire()
    signals.block_for_fork()
    _held[:] = list(signals.ACTIVE)
    for r in _held:
        r.hold_for_fork()


def _after_fork_in_parent() -> None:
    for r in _held:
        r.release_after_fork()
    _held.clear()
    signals.unblock_after_fork()
    signals.LOCK.release()


def _after_fork_in_child() -> None:
    # Lock-free, without I/O or imports: other threads of the parent do not exist here, and
    # whatever they held at the fork (locks, a module being imported) stays held.
    current = CURRENT.get()
    run_id = store_root = None
    if current is not None and any(r is current for r in _held) and current.store is not None:
        run_id, store_root = current.id, current.store.folder
    for r in _held:
        r.leave_to_parent()
    _held.clear()
    lineage.note_fork(os.getppid(), run_id, store_root)
    CURRENT.set(None)
    signals.forget_after_fork()
    STATE.forget_after_fork()
    CAPTURE.forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


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
