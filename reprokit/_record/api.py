"""The recording entry points: ``@track``, ``run()``, ``current_run()`` and the ``log_*``
functions that act on the active run."""

from __future__ import annotations

import os
import sys

from reprokit._capture.params import bind_call
from reprokit._model.digest import fingerprint_exact
from reprokit._model.errors import ReprokitError, warn
from reprokit._model.redact import redact_argv
from reprokit._record import lineage
from reprokit._record.notebook import current_shell, notebook_entry
from reprokit._record.outputs import describe_output
from reprokit._record.process import STATE
from reprokit._record.run import CURRENT, Run, check_labels, error_of, status_of
from reprokit._seeding import check_seed
from reprokit._seeding import sweep_seed as process_sweep_seed

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any, TypeVar, overload

    F = TypeVar("F", bound=Callable[..., Any])

_CO_COROUTINE = 0x80


def current_run() -> Run | None:
    """The active run of this thread/task, or None."""
    return CURRENT.get()


_worker_warned: list[bool] = []


def _active() -> Run | None:
    """The active run; None (with one warning) in a worker process outside a tracked call."""
    r = CURRENT.get()
    if r is None:
        if lineage.starter_pid() is not None:
            # The run that started this worker lives in another process: what is logged here
            # cannot reach it. Training goes on; the user learns how to record it.
            if not _worker_warned:
                _worker_warned.append(True)
                warn(
                    "a log call in a worker process outside a tracked function is not recorded "
                    "(the run that started the worker is in another process); decorate the "
                    "worker's function with @reprokit.track to record it as a child run"
                )
            return None
        raise ReprokitError("no active run: call this inside @reprokit.track or reprokit.run()")
    return r


def log_metric(name: str, value: Any, step: int | None = None) -> None:
    """``current_run().log_metric(...)``."""
    r = _active()
    if r is not None:
        r.log_metric(name, value, step)


def log_params(params: Mapping[str, Any] | Any = None, **more: Any) -> None:
    """``current_run().log_params(...)``."""
    r = _active()
    if r is not None:
        r.log_params(params, **more)


def log_artifact(path: str | os.PathLike[str], copy: bool = False) -> dict[str, Any]:
    """``current_run().log_artifact(...)``; in a worker outside a tracked call, a description
    of the file that is not recorded."""
    r = _active()
    if r is None:
        from pathlib import Path

        return describe_output(Path(path), Path.cwd())
    return r.log_artifact(path, copy)


def log_input(
    path: str | os.PathLike[str],
    name: str | None = None,
    source: str | None = None,
    *,
    full_hash: bool = False,
) -> dict[str, Any]:
    """``current_run().log_input(...)``: record a file or folder the run reads."""
    r = _active()
    if r is None:
        return {}
    return r.log_input(path, name, source, full_hash=full_hash)


def checkpoint(name: str, value: Any) -> str:
    """``current_run().checkpoint(...)``; outside a run it only returns the fingerprint."""
    r = CURRENT.get()
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
    inputs: Iterable[str | os.PathLike[str]] | None = None,
    tags: Iterable[str] | str | None = None,
    note: str | None = None,
) -> Run:
    """A run for a ``with`` block: ``with reprokit.run("exp") as run: ...``.

    Entering the block captures and starts the run; leaving it seals the run (``failed`` with
    the traceback when the block raised; the exception is re-raised unchanged). ``inputs``:
    files and folders the block reads, recorded as by ``log_input``. ``tags`` and ``note``
    label the run (``reprokit ls --tag T`` finds it).
    """
    shell = current_shell()
    if shell is not None:
        entry, file, problems = notebook_entry(shell)
    else:
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
        inputs=inputs,
        tags=tags,
        note=note,
    )
    for problem in problems:
        r.not_replayable(problem)
        warn(f"{problem}; the run is marked not replayable")
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


def sweep_seed() -> int | None:
    """The seed a seed sweep imposes on this process's top-level runs, or None."""
    seed = STATE.sweep.get("seed")
    return process_sweep_seed() if seed is None else seed


def with_seed_param(func: Any, args: tuple, kwargs: dict, seed: int) -> tuple[tuple, dict]:
    """``args``/``kwargs`` with the function's own ``seed`` parameter set to ``seed`` (unchanged
    when it has none): a sweep's seed must reach a ``seed`` the function seeds itself with."""
    code = getattr(inspect_unwrap(func), "__code__", None)
    if code is None:
        return args, kwargs
    names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    if "seed" not in names:
        return args, kwargs
    i = names.index("seed")
    if i < code.co_argcount and i < len(args):
        return (*args[:i], seed, *args[i + 1 :]), kwargs
    return args, {**kwargs, "seed": seed}


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
        inputs: Iterable[str | os.PathLike[str]] | None = None,
        tags: Iterable[str] | str | None = None,
        note: str | None = None,
    ) -> Callable[[F], F]: ...


def track(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    seed: int | None = None,
    deterministic: bool = False,
    store: Any = None,
    inputs: Iterable[str | os.PathLike[str]] | None = None,
    tags: Iterable[str] | str | None = None,
    note: str | None = None,
) -> Any:
    """Record every call of the decorated function as a run (plain, method or ``async def``).

    Params are bound from the signature with defaults applied. The function returns and raises
    exactly what it did before. ``inputs``: files and folders each call reads (relative paths
    from the working folder at call time), recorded as by ``log_input``. ``tags`` and ``note``
    label every call's run.
    """
    kw = {"name": name, "seed": seed, "deterministic": deterministic, "store": store}
    kw["inputs"] = list(inputs) if inputs is not None else None
    kw["labels"] = check_labels(tags, note)
    if func is None:

        def decorate(f: Callable[..., Any]) -> Any:
            return _track(f, **kw)

        return decorate
    return _track(func, **kw)


def _track(
    func: Callable[..., Any],
    *,
    name: str | None,
    seed: int | None,
    deterministic: bool,
    store: Any,
    inputs: list[Any] | None = None,
    labels: tuple[tuple[str, ...], str | None] = ((), None),
) -> Any:
    if seed is not None:
        check_seed(seed)
    info: dict[str, Any] = {}

    def make_run(args: tuple, kwargs: dict) -> Run | None:
        """The started run (None when it cannot be recorded); called with the final arguments."""
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
                inputs=inputs,
                tags=labels[0],
                note=labels[1],
            )
            for problem in info["problems"]:
                r.not_replayable(problem)
            for problem in r.param_problems:
                warn(f"{problem}; the run is marked not replayable")
            return r.start()
        except Exception as exc:  # never break the user's call
            warn(f"this call is not recorded: {exc}")
            return None

    def swept(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        # A top-level call under a seed sweep takes the sweep's seed as its own ``seed`` param,
        # as across_seeds() passes it in process: a script that re-runs under ``reprokit seeds``
        # would otherwise seed itself with its default (or argparse's) value every time.
        # (Through a function, not the context variable itself: cloudpickle (joblib's loky)
        # pickles this closure by value, and a ContextVar cannot be pickled.)
        if current_run() is not None:
            return args, kwargs
        try:
            seed_now = sweep_seed()
            if seed_now is None:
                return args, kwargs
            return with_seed_param(func, args, kwargs, seed_now)
        except Exception:  # never break the user's call
            return args, kwargs

    code = getattr(func, "__code__", None)
    if code is not None and code.co_flags & _CO_COROUTINE:

        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            args, kwargs = swept(args, kwargs)
            r = make_run(args, kwargs)
            if r is None:
                return await func(*args, **kwargs)
            try:
                result = await func(*args, **kwargs)
            except BaseException as exc:
                r.finish(*status_of(exc), error=error_of(exc))
                raise
            r.finish("completed", result=result, has_result=True)
            return result

        return _wraps(async_wrapper, func)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        args, kwargs = swept(args, kwargs)
        r = make_run(args, kwargs)
        if r is None:
            return func(*args, **kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            r.finish(*status_of(exc), error=error_of(exc))
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
