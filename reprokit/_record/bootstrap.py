"""Inside a Python program that ``reprokit run`` started, before the program's first line.

The start-up hook (``startup/sitecustomize.py``, on a PYTHONPATH only that program gets) calls
:func:`start`, which:

- seeds the program as ``seed_everything(S)`` does — ``random`` now, numpy, torch, TensorFlow,
  Keras and CuPy the moment the program imports them;
- records the command line argparse parsed (``parse_args`` / ``parse_known_args``), with its
  types, and which flag set each value, so a replay can change one;
- lists the program's own files (the entry script and the modules imported from under the
  working folder) when it ends;

and reports all of it to the parent as one JSON file named by the parent/child protocol. The
parent writes the manifest: this process only says what happened in it. Nothing here raises
into the program, and nothing runs in the program's own child processes.
"""

from __future__ import annotations

import os
import sys

from reprokit._model.protocol import ChildProtocol, variable

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from typing import Any

SITE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "startup")

# What this process has to tell its parent; written to the report file as it grows.
_report: dict[str, Any] = {}
_where: list[str] = []  # [report path]
_pid: list[int] = []


def bootstrap_env(env: dict[str, str], report: str) -> None:
    """Make ``env`` (a child's environment) start the hook, reporting to ``report``."""
    ChildProtocol(child_report=report).apply(env)
    shown = env.get("PYTHONPATH")
    env["PYTHONPATH"] = SITE_DIR + (os.pathsep + shown if shown else "")


def read_report(path: str) -> dict[str, Any] | None:
    """What a started program reported, or None when it reported nothing."""
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def start() -> None:
    """Seed, watch argparse, and report at exit; never raises."""
    try:
        told = ChildProtocol.from_env()
        path = told.child_report
        # Only this process: a program it starts is not the one `reprokit run` started.
        os.environ.pop(variable("child_report"), None)
        if not path:
            return
        _where[:] = [path]
        _pid[:] = [os.getpid()]
        _report["pid"] = os.getpid()
        _report["cwd"] = os.getcwd()
        _report["python"] = sys.executable
        if told.seed is not None:
            _seed(told.seed, told.deterministic)
        if "argparse" in sys.modules:
            _patch_argparse(sys.modules["argparse"])
        else:
            sys.meta_path.insert(0, _AfterImport())
        import atexit

        atexit.register(_at_exit)
        _write()
    except Exception as exc:
        _report["error"] = f"{type(exc).__name__}: {exc}"
        _write()


def _seed(seed: int, deterministic: bool) -> None:
    from reprokit._seeding import seed_everything

    state = seed_everything(seed, deterministic)
    _report["seeds"] = {
        "seeded": state.get("seeded", {}),
        "deterministic": state.get("deterministic", {}),
    }


def _write() -> None:
    """Replace the report file with the current report (atomically); never raises."""
    if not _where or _pid != [os.getpid()]:
        return
    import json

    path = _where[0]
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(_report, fh, default=repr)
        os.replace(tmp, path)
    except Exception:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _at_exit() -> None:
    if _pid != [os.getpid()]:
        return  # a forked copy of the program ends: the program itself has not
    try:
        from reprokit._seeding import late_seeded

        late = late_seeded()
        if late and "seeds" in _report:
            _report["seeds"]["seeded_on_import"] = late
        main = sys.modules.get("__main__")
        entry = getattr(main, "__file__", None)
        _report["entry_file"] = os.path.abspath(entry) if isinstance(entry, str) else None
        _report["modules"] = _own_modules(_report.get("cwd") or os.getcwd())
        _report["exited"] = True
    except Exception as exc:
        _report["error"] = f"{type(exc).__name__}: {exc}"
    _write()


def _own_modules(base: str) -> list[str]:
    from pathlib import Path

    from reprokit._capture.git import local_modules

    return sorted(str(p) for p in local_modules(Path(base).resolve()))


# -- argparse ------------------------------------------------------------------------------------


class _AfterImport:
    """``sys.meta_path`` finder: patches argparse the moment its import completes.

    argparse is not imported here (it costs milliseconds of the program's start-up); for any
    other name this returns None after one comparison.
    """

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "argparse":
            return None
        for finder in list(sys.meta_path):
            if finder is self or getattr(finder, "find_spec", None) is None:
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                loader = spec.loader
                if loader is not None and hasattr(loader, "exec_module"):
                    spec.loader = _PatchingLoader(loader)
                return spec
        return None


class _PatchingLoader:
    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        create = getattr(self.loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: Any) -> None:
        if module.__dict__.get("__loader__") is self:
            module.__loader__ = self.loader
        spec = module.__dict__.get("__spec__")
        if spec is not None and spec.loader is self:
            spec.loader = self.loader
        self.loader.exec_module(module)
        try:
            _patch_argparse(module)
        except Exception:
            pass
        for i, finder in enumerate(sys.meta_path):
            if isinstance(finder, _AfterImport):
                del sys.meta_path[i]
                break

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.loader, attr)


_depth = [0]


def _patch_argparse(argparse: Any) -> None:
    cls = argparse.ArgumentParser
    original = cls.parse_known_args
    if getattr(original, "__reprokit__", False):
        return

    def parse_known_args(self: Any, args: Any = None, namespace: Any = None) -> Any:
        # Sub-parsers call this again from inside the outer call: only the outermost result,
        # which holds theirs, is the program's command line.
        _depth[0] += 1
        try:
            result = original(self, args, namespace)
        finally:
            _depth[0] -= 1
        if _depth[0] == 0:
            try:
                _note_argparse(self, result[0], args)
            except Exception:
                pass
        return result

    parse_known_args.__wrapped__ = original  # type: ignore[attr-defined]
    parse_known_args.__name__ = original.__name__
    parse_known_args.__qualname__ = original.__qualname__
    parse_known_args.__doc__ = original.__doc__
    parse_known_args.__reprokit__ = True  # type: ignore[attr-defined]
    cls.parse_known_args = parse_known_args


def _flag(action: Any) -> dict[str, Any] | None:
    """How a replay could set this destination again on the command line (None: it cannot)."""
    options = [o for o in action.option_strings if o.startswith("--")] or list(
        action.option_strings
    )
    if not options:
        return None
    kind = type(action).__name__
    if kind in ("_StoreTrueAction", "_StoreFalseAction"):
        return {"option": options[0], "kind": "switch", "sets": kind == "_StoreTrueAction"}
    if kind == "BooleanOptionalAction":
        return {"option": options[0], "kind": "boolean-optional"}
    if kind == "_StoreAction" and action.nargs is None:
        return {"option": options[0], "kind": "value"}
    return None


def _note_argparse(parser: Any, namespace: Any, args: Any) -> None:
    from reprokit._capture.params import record_params

    recorded = record_params(namespace)
    flags: dict[str, Any] = {}
    for action in parser._actions:
        if action.dest in recorded.values:
            flag = _flag(action)
            if flag is not None:
                flags[action.dest] = flag
    previous = _report.get("params") or {}
    _report["params"] = {
        "source": "argparse",
        "values": {**previous.get("values", {}), **recorded.values},
        "problems": previous.get("problems", []) + recorded.problems,
        "redacted": previous.get("redacted", []) + recorded.redacted,
        "flags": {**previous.get("flags", {}), **flags},
        # Parsing a list given in the code, not sys.argv: argv cannot change it on replay.
        "from_argv": previous.get("from_argv", True)
        and (args is None or list(args) == sys.argv[1:]),
    }
    _write()
