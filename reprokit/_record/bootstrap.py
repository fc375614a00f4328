"""Inside a Python program that ``reprokit run`` started, before the program's first line.

The start-up hook (``startup/sitecustomize.py``, on a PYTHONPATH only that program gets) calls
:func:`start`, which:

- seeds the program as ``seed_everything(S)`` does — ``random`` now, numpy, torch, TensorFlow,
  Keras and CuPy the moment the program imports them;
- records the command line argparse (``parse_args`` / ``parse_known_args``) or click (typer)
  parsed, with its types, and which flag set each value, so a replay can change one;
- lists the program's own files (the entry script and the modules imported from under the
  working folder) when it ends;
- lists the files the program read (``reprokit._record.observe``'s audit hook), and those its
  forked workers (a DataLoader's, a fork pool's) read, each worker in a file of its own beside
  the report, so the parent records them as the run's observed inputs;

and reports all of it to the parent as one file named by the parent/child protocol. The
parent writes the manifest: this process only says what happened in it. Nothing here raises
into the program, and in the program's own child processes nothing runs but the read log of
its forked workers.

A launcher (torchrun, ``accelerate launch``) is not the program: its Python children are, one
per rank. In a launcher the hook does nothing but hand itself on: its children get it, each
seeded with the same seed and reporting to its own file in the folder the protocol names, and
the parent reads them as one report (:func:`read_report`).

This module is imported by every program ``reprokit run`` starts, within a 5 ms budget
(``bench/bootstrap.py``): beyond the protocol, reprokit's modules (seeding, params) are imported
only when the program imports what they serve, and argparse, click and Hydra are never imported
here — they are patched the moment the program's own import of them completes.
"""

from __future__ import annotations

import os
import sys

from reprokit._capture.modules import own_module_files
from reprokit._model.loader import WrappedLoader
from reprokit._model.protocol import ChildProtocol, variable
from reprokit._record import observe

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from typing import Any

SITE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "startup")

# What this process has to tell its parent; written to the report file as it grows.
_report: dict[str, Any] = {}
_where: list[str] = []  # [report path]
_pid: list[int] = []
_observing: list[int] = []  # [observe token] while this process observes its reads


def bootstrap_env(env: dict[str, str], report: str, program: dict[str, Any] | None = None) -> None:
    """Make ``env`` (a child's environment) start the hook, reporting to ``report``.

    ``program``: what ``python_program`` says the command runs; for a launcher the hook is
    handed on to its workers, which report into the folder ``report + ".workers"``.
    """
    told = ChildProtocol(child_report=report)
    if program is not None and program.get("launcher"):
        told.worker_reports = report + ".workers"
        os.makedirs(told.worker_reports, exist_ok=True)
    told.apply(env)
    _put_on_path(env)


def _put_on_path(env: Any) -> None:
    shown = env.get("PYTHONPATH")
    env["PYTHONPATH"] = SITE_DIR if shown is None else SITE_DIR + os.pathsep + shown


def _load(path: str) -> dict[str, Any] | None:
    import marshal

    try:
        with open(path, "rb") as fh:
            data = marshal.loads(fh.read())
    except (OSError, ValueError, EOFError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def read_report(path: str) -> dict[str, Any] | None:
    """What a started program reported, or None when it reported nothing.

    A launcher's report is its workers' (``workers``: how many reported, ``ranks``: theirs):
    the lowest rank's seeds, params and entry, every worker's own files, and ``exited`` only
    when the launcher and every worker lived to report it. With no worker reporting it holds
    only ``launcher`` and ``workers: 0``.
    """
    report = _load(path)
    if report is None or not report.get("launcher"):
        return report
    try:
        names = sorted(n for n in os.listdir(path + ".workers") if ".reads-" not in n)
    except OSError:
        names = []
    workers = [w for w in (_load(os.path.join(path + ".workers", n)) for n in names) if w]
    if not workers:
        return {"launcher": True, "workers": 0}

    def rank(worker: dict[str, Any]) -> tuple[bool, int, int]:
        r = worker.get("rank")
        return (not isinstance(r, int), r if isinstance(r, int) else 0, worker.get("pid") or 0)

    workers.sort(key=rank)
    merged = dict(workers[0])
    merged["launcher"] = True
    merged["workers"] = len(workers)
    merged["ranks"] = [w["rank"] for w in workers if isinstance(w.get("rank"), int)]
    merged["exited"] = bool(report.get("exited")) and all(w.get("exited") for w in workers)
    merged["modules"] = sorted({m for w in workers for m in w.get("modules") or []})
    merged["read"] = list(dict.fromkeys(p for w in workers for p in w.get("read") or []))
    merged["reads_lost"] = sum(int(w.get("reads_lost") or 0) for w in workers)
    return merged


def start() -> None:
    """Seed, watch argparse, and report at exit; never raises."""
    try:
        told = ChildProtocol.from_env()
        path = told.child_report
        # Only this process: a program it starts is not the one `reprokit run` started.
        os.environ.pop(variable("child_report"), None)
        if path and told.worker_reports:
            _start_launcher(path)
            return
        if not path and told.worker_reports:
            # One of a launcher's workers: the program. Its own children are not.
            os.environ.pop(variable("worker_reports"), None)
            path = os.path.join(told.worker_reports, f"worker-{os.getpid()}")
            rank = os.environ.get("RANK", "")
            _report["rank"] = int(rank) if rank.isdigit() else None
            _report["argv"] = sys.argv[1:]
        if not path:
            return
        _where[:] = [path]
        _pid[:] = [os.getpid()]
        _report["pid"] = os.getpid()
        _report["cwd"] = os.getcwd()
        _report["python"] = sys.executable
        _observing[:] = [observe.start()]
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_observe_in_worker)
        seed = told.seed_override if told.seed_override is not None else told.seed
        if seed is not None:
            _seed_args[:] = [seed, told.deterministic]
            if any(name in sys.modules for name in _SEED_TRIGGERS):
                _seed()
            else:
                for name in _SEED_TRIGGERS:
                    _after_import[name] = _seed_once
        for name, patch in (
            ("argparse", _patch_argparse),
            ("click", _patch_click),
            ("hydra", _patch_hydra),
            ("fire", _patch_fire),
        ):
            if name in sys.modules:
                patch(sys.modules[name])
            else:
                _after_import[name] = patch
        if _after_import:
            sys.meta_path.insert(0, _AfterImport())
        import atexit

        atexit.register(_at_exit)
    except Exception as exc:
        _report["error"] = f"{type(exc).__name__}: {exc}"
        _write()


def _start_launcher(path: str) -> None:
    """In a launcher: hand the hook on to the workers it starts; seed and record nothing here
    (its own command line is not the program's)."""
    _put_on_path(os.environ)
    _where[:] = [path]
    _pid[:] = [os.getpid()]
    _report["pid"] = os.getpid()
    _report["launcher"] = True
    import atexit

    atexit.register(_launcher_exit)


def _launcher_exit() -> None:
    _report["exited"] = True
    _write()


# Seeding waits for the first of these imports: nothing random can have been drawn before it,
# and a program that never imports one does not pay for importing ``random`` at start-up.
# (The same libraries seed_everything seeds, plus ``random`` itself.)
_SEED_TRIGGERS = ("random", "numpy", "torch", "tensorflow", "keras", "cupy")
_seed_args: list[Any] = []


def _seed_once(module: Any) -> None:
    if _importing - {module.__name__}:
        # Imported from inside another trigger's import (torch importing random, say): seed
        # when that one is complete, or seed_everything would find it half-initialised.
        return
    for name in _SEED_TRIGGERS:
        _after_import.pop(name, None)
    _seed()


def _seed() -> None:
    from reprokit._seeding import seed_everything

    state = seed_everything(*_seed_args)
    _report["seeds"] = {
        "seeded": state.get("seeded", {}),
        "deterministic": state.get("deterministic", {}),
    }


def _write() -> None:
    """Replace the report file with the current report (atomically); never raises.

    ``marshal`` is built into the interpreter: importing ``json`` would cost the program more
    than everything else this hook does. The parent reads it with ``read_report``.
    """
    if not _where or _pid != [os.getpid()]:
        return
    import marshal

    path = _where[0]
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        data = marshal.dumps(_plain(_report))
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except Exception:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _observe_in_worker() -> None:
    """In a forked child of the program (a DataLoader worker, a fork pool's): observe its reads
    too, and leave them beside the report when it ends — by ``atexit``, or by multiprocessing's
    own exit path (its processes end with ``os._exit``, after their finalizers)."""
    try:
        if not _where:
            return
        _observing[:] = [observe.start()]
        me = os.getpid()
        import atexit

        atexit.register(_worker_exit, me)
        util = sys.modules.get("multiprocessing.util")
        if util is not None:
            # A multiprocessing child clears the finalizers it inherited once forked; the
            # after-fork hooks run after that, and register the one that writes.
            util.register_after_fork(_worker_exit, lambda _: util.Finalize(
                None, _worker_exit, args=(me,), exitpriority=0))  # fmt: skip
    except Exception:  # noqa: S110 - never into the program's fork
        pass


def _worker_exit(pid: Any) -> None:
    """Write what this forked worker read to ``<report>.reads-<pid>``; once, never raises."""
    if pid != os.getpid() or not _observing or not _where:
        return
    import marshal

    try:
        read, lost = observe.stop(_observing.pop())
        with open(f"{_where[0]}.reads-{pid}", "wb") as fh:
            fh.write(marshal.dumps([[p for p in read if isinstance(p, str)], lost]))
    except Exception:  # noqa: S110 - a worker's end is not the place to fail
        pass


def program_reads(path: str, report: dict[str, Any] | None) -> tuple[list[str], int]:
    """(the files the program read — it, a launcher's workers, and their forked workers —,
    opens that could not be logged), from ``report`` (``read_report``'s) and the files forked
    workers left beside the report ``path``."""
    import glob
    import marshal

    read: dict[str, None] = dict.fromkeys(p for p in (report or {}).get("read") or [])
    lost = int((report or {}).get("reads_lost") or 0)
    left = glob.glob(glob.escape(path) + ".reads-*")
    left += glob.glob(os.path.join(glob.escape(path + ".workers"), "*.reads-*"))
    for name in sorted(left):
        try:
            with open(name, "rb") as fh:
                paths, missed = marshal.loads(fh.read())
            read.update(dict.fromkeys(p for p in paths if isinstance(p, str)))
            lost += int(missed)
        except (OSError, ValueError, TypeError, EOFError):
            continue
    return list(read), lost


def _plain(value: Any) -> Any:
    """``value`` with only what marshal writes and the parent may read: plain data."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, str):
        return str(value)  # marshal refuses str subclasses (torch.__version__ is one)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return repr(value)


def _at_exit() -> None:
    if _pid != [os.getpid()]:
        return  # a forked copy of the program ends: the program itself has not
    try:
        if "seeds" in _report:
            from reprokit._seeding import late_seeded

            late = late_seeded()
            if late:
                _report["seeds"]["seeded_on_import"] = late
        # CPython deletes __main__.__file__ once a script's code has run; sys.argv[0] still
        # names it (and the module's file under -m).
        main = sys.modules.get("__main__")
        entry = getattr(main, "__file__", None) or (sys.argv[0] if sys.argv else None)
        start = _report.get("cwd") or os.getcwd()
        entry = os.path.join(start, entry) if isinstance(entry, str) and entry else None
        _report["entry_file"] = entry if entry and os.path.isfile(entry) else None
        _report["modules"] = sorted(set(own_module_files(_report.get("cwd") or os.getcwd())))
        if _observing:
            _report["read"], _report["reads_lost"] = observe.stop(_observing.pop())
        _report["exited"] = True
    except Exception as exc:
        _report["error"] = f"{type(exc).__name__}: {exc}"
    _write()


# -- argparse ------------------------------------------------------------------------------------


# module name -> what to do with the module once its import completed
_after_import: dict[str, Any] = {}
_importing: set[str] = set()  # watched modules whose import is under way


class _AfterImport:
    """``sys.meta_path`` finder: acts on a watched module the moment its import completes.

    Nothing is imported here; for a name not watched this returns None after one lookup.
    """

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        action = _after_import.get(fullname)
        if action is None:
            return None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                loader = spec.loader
                if loader is not None and hasattr(loader, "exec_module"):
                    spec.loader = _ActingLoader(loader, fullname)  # type: ignore[assignment]
                return spec
        return None


class _ActingLoader(WrappedLoader):
    """Runs the module, then the action waiting for it (seeding, watching a parser)."""

    def execute(self, module: Any) -> None:
        _importing.add(self.name)
        try:
            self.loader.exec_module(module)
        finally:
            _importing.discard(self.name)
        action = _after_import.pop(self.name, None)
        if action is not None:
            try:
                action(module)
            except Exception as exc:
                _report.setdefault("errors", []).append(f"{type(exc).__name__}: {exc}")
        if not _after_import:
            sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _AfterImport)]


def _stand_in(wrapper: Any, original: Any) -> None:
    """Let ``wrapper`` pass for ``original`` (name, doc, ``__wrapped__``), marked as ours so it
    is never wrapped twice."""
    wrapper.__wrapped__ = original
    wrapper.__name__ = original.__name__
    wrapper.__qualname__ = original.__qualname__
    wrapper.__doc__ = original.__doc__
    wrapper.__reprokit__ = True


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

    _stand_in(parse_known_args, original)
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


def _parsing_for_a_framework() -> bool:
    """Is the parser being run Hydra's or fire's own (their params are recorded from what they
    hand the program: Hydra's config, the arguments fire calls with)?"""
    frame: Any = sys._getframe(2)  # noqa: SLF001  (the caller of parse_known_args)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module not in ("argparse", __name__):
            return module.split(".", 1)[0] in ("hydra", "fire")
        frame = frame.f_back
    return False


def _note_argparse(parser: Any, namespace: Any, args: Any) -> None:
    from reprokit._capture.params import record_params

    if ("hydra" in sys.modules or "fire" in sys.modules) and _parsing_for_a_framework():
        return

    recorded = record_params(namespace)
    flags: dict[str, Any] = {}
    for action in parser._actions:  # noqa: SLF001  (argparse lists its actions only here)
        if action.dest in recorded.values:
            flag = _flag(action)
            if flag is not None:
                flags[action.dest] = flag
    # Parsing a list given in the code, not sys.argv: argv cannot change it on replay.
    _note_params("argparse", recorded, flags, args is None or list(args) == sys.argv[1:])


def _note_params(source: str, recorded: Any, flags: dict[str, Any], from_argv: bool) -> None:
    previous = _report.get("params") or {}
    _report["params"] = {
        "source": source,
        "values": {**previous.get("values", {}), **recorded.values},
        "problems": previous.get("problems", []) + recorded.problems,
        "redacted": previous.get("redacted", []) + recorded.redacted,
        "flags": {**previous.get("flags", {}), **flags},
        "from_argv": previous.get("from_argv", True) and from_argv,
    }
    _write()


# -- click (and typer, which is click underneath) ------------------------------------------------


def _patch_click(click: Any) -> None:
    cls = click.core.Command
    original = cls.make_context
    if getattr(original, "__reprokit__", False):
        return

    def make_context(self: Any, info_name: Any, args: Any, parent: Any = None, **extra: Any) -> Any:
        given = list(args)  # click consumes the list it parses
        ctx = original(self, info_name, args, parent=parent, **extra)
        try:
            if not getattr(ctx, "resilient_parsing", False):
                _note_click(click, self, ctx, given, parent)
        except Exception:
            pass
        return ctx

    _stand_in(make_context, original)
    cls.make_context = make_context


def _click_flag(click: Any, param: Any) -> dict[str, Any] | None:
    if not isinstance(param, click.core.Option):
        return None
    options = [o for o in param.opts if o.startswith("--")] or list(param.opts)
    if not options:
        return None
    if param.is_flag and getattr(param, "is_bool_flag", False):
        off = [o for o in param.secondary_opts if o.startswith("--")]
        if off:
            return {"option": options[0], "kind": "pair", "off": off[0]}
        return {"option": options[0], "kind": "switch", "sets": bool(param.flag_value)}
    if not param.is_flag and param.nargs == 1 and not param.multiple and not param.count:
        return {"option": options[0], "kind": "value"}
    return None


def _note_click(click: Any, command: Any, ctx: Any, args: Any, parent: Any) -> None:
    from reprokit._capture.params import record_params

    recorded = record_params(dict(ctx.params))
    if parent is not None:
        # A sub-command's context: its parents' options can only be changed where they stand
        # on the command line, since an option added at the end would reach the sub-command.
        for flag in ((_report.get("params") or {}).get("flags") or {}).values():
            flag["append"] = False
    flags = {}
    for param in command.params:
        if param.name in recorded.values:
            flag = _click_flag(click, param)
            if flag is not None:
                flags[param.name] = flag
    from_argv = parent is not None or list(args) == sys.argv[1:]
    _note_params("click", recorded, flags, from_argv)


# -- Hydra ---------------------------------------------------------------------------------------


def _patch_hydra(hydra: Any) -> None:
    # Hydra hands every job its config through HydraConfig.set_config: once with the output
    # folder filled in (inside run_job, just before the task function runs), the job's config
    # is final and its interpolations resolve.
    cls = sys.modules["hydra.core.hydra_config"].HydraConfig
    original = cls.set_config
    if getattr(original, "__reprokit__", False):
        return

    def set_config(self: Any, cfg: Any) -> Any:
        result = original(self, cfg)
        try:
            _note_hydra(cfg)
        except Exception:
            pass
        return result

    _stand_in(set_config, original)
    cls.set_config = set_config


def _leaves(values: Any, prefix: str = "") -> list[str]:
    if isinstance(values, dict) and values:
        out: list[str] = []
        for key, value in values.items():
            out.extend(_leaves(value, f"{prefix}{key}."))
        return out
    return [prefix[:-1]] if prefix else []


def _note_hydra(cfg: Any) -> None:
    from reprokit._capture.params import record_params

    omegaconf = sys.modules["omegaconf"].OmegaConf
    if not omegaconf.select(cfg, "hydra.runtime.output_dir"):
        return
    job = omegaconf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    recorded = record_params(omegaconf.to_container(job, resolve=True))
    overrides = omegaconf.to_container(cfg.hydra.overrides.task)
    flags = {path: {"option": path, "kind": "override"} for path in _leaves(recorded.values)}
    sources = omegaconf.to_container(cfg.hydra.runtime.config_sources, resolve=True) or []
    _report["config_dirs"] = [
        str(src["path"]).removeprefix("file://")
        for src in sources
        if isinstance(src, dict) and src.get("schema") == "file"
    ]
    # Hydra's own command line (its argparse parser) is not the program's params: replaced.
    _report["params"] = {}
    _note_params("hydra", recorded, flags, True)
    _report["params"]["overrides"] = [str(o) for o in overrides or []]
    _write()


# -- python-fire ---------------------------------------------------------------------------------


def _patch_fire(fire: Any) -> None:
    # Fire parses each call it makes (a function; a class's __init__, then a method) with the
    # parse function _MakeParseFn builds: what that returns is what the call receives, typed.
    core: Any = sys.modules["fire.core"]
    original = getattr(core, "_MakeParseFn", None)
    if original is None or getattr(original, "__reprokit__", False):
        return  # a fire this hook does not know: its params stay in argv

    def make_parse_fn(fn: Any, metadata: Any) -> Any:
        parse = original(fn, metadata)

        def parse_fn(args: Any) -> Any:
            result = parse(args)
            try:
                _note_fire(fn, metadata, list(args), result[0])
            except Exception:
                pass
            return result

        return parse_fn

    _stand_in(make_parse_fn, original)
    core._MakeParseFn = make_parse_fn  # noqa: SLF001  (fire's one place where a call's args parse)


def _fire_flag_keys(args: list[str]) -> tuple[dict[str, str], int]:
    """The flags on a fire command line (name with underscores -> the option as written) and
    how many words are not flags or their values (fire may give those to params by position)."""
    keys: dict[str, str] = {}
    loose = 0
    i = 0
    while i < len(args):
        word = args[i]
        if word.startswith("-") and len(word) > 1 and not word[1].isdigit() and word[1] != ".":
            key = word.lstrip("-").split("=", 1)[0]
            name = key.replace("-", "_")
            keys.setdefault(name, "--" + key if word.startswith("--") else word.split("=", 1)[0])
            bare = "=" not in word and (i + 1 == len(args) or args[i + 1].startswith("--"))
            if bare and name.startswith("no"):
                keys.setdefault(name[2:], "--" + key[2:].lstrip("-_"))
            i += 1 if "=" in word or bare else 2
            continue
        loose += 1
        i += 1
    return keys, loose


def _note_fire(fn: Any, metadata: Any, args: list[str], called: Any) -> None:
    from reprokit._capture.params import record_params

    spec = sys.modules["fire.inspectutils"].GetFullArgSpec(fn)
    varargs, kwargs = called
    names = list(spec.args)
    values: dict[str, Any] = dict(zip(names, varargs, strict=False))
    if spec.varargs:
        values[spec.varargs] = list(varargs[len(names) :])
    values.update({k: v for k, v in (spec.kwonlydefaults or {}).items() if k not in kwargs})
    values.update(kwargs)
    recorded = record_params(values)
    keys, loose = _fire_flag_keys(args)
    # Fire gives the words that are not flags to the params no flag named, in order.
    by_position = [n for n in names if n not in keys]
    accepts = metadata.get("ACCEPTS_POSITIONAL_ARGS", True) if isinstance(metadata, dict) else True
    positional = set(by_position[: loose if accepts else 0])
    if spec.varargs:
        positional.add(spec.varargs)
    flags: dict[str, Any] = {}
    for name, value in recorded.values.items():
        if name in positional:
            continue
        option = keys.get(name, "--" + name)
        if not option.startswith("--"):
            option = "--" + name  # a one-letter shortcut (-l) is set again by its full name
        if isinstance(value, bool):
            flags[name] = {"option": "--" + name, "kind": "pair", "off": "--no" + name}
        else:
            flags[name] = {"option": option, "kind": "value"}
    sequence = iter(sys.argv[1:])
    from_argv = all(any(word == seen for seen in sequence) for word in args)
    _note_params("fire", recorded, flags, from_argv)
