"""Executing a recorded run again: the command line, the environment and the child process.

``plan`` turns a manifest into the argv, environment and cwd that re-execute it inside a
rebuilt source tree; ``execute`` runs that in a subprocess, telling the child what it needs
through the parent/child protocol, and returns the runs the child sealed, in order.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from reprokit._capture.environment import is_numerics_variable
from reprokit._capture.hardware import capture_hardware
from reprokit._capture.pycommand import python_program
from reprokit._model.errors import ArgumentError, NotReplayable, ReprokitError
from reprokit._model.manifest import Manifest
from reprokit._model.protocol import ChildProtocol, variable
from reprokit._record.bootstrap import bootstrap_env
from reprokit._reexec.sandbox import wrap as sandbox_wrap
from reprokit._store.store import Store

BOOTSTRAP = r"""
import asyncio, importlib, importlib.util, inspect, json, os, sys
spec = json.loads(os.environ.pop("REPLAY_SPEC_VARIABLE"))
sys.path.insert(0, spec["sys_path0"])
if spec["by_name"]:
    module = importlib.import_module(spec["module"])
else:
    mspec = importlib.util.spec_from_file_location("__reprokit_replay__", spec["file"])
    module = importlib.util.module_from_spec(mspec)
    sys.modules["__reprokit_replay__"] = module
    mspec.loader.exec_module(module)
func = module
for part in spec["qualname"].split("."):
    func = getattr(func, part)
params = spec["params"]
for name, typename in spec.get("types", {}).items():
    if isinstance(params.get(name), dict):
        mod, _, cls = typename.rpartition(".")
        params[name] = getattr(importlib.import_module(mod), cls)(**params[name])
target = inspect.unwrap(func)
args, kwargs = [], {}
try:
    sig = inspect.signature(target)
except (TypeError, ValueError):
    sig = None
rest = dict(params)
if sig is not None:
    for p in sig.parameters.values():
        if p.name not in rest:
            continue
        value = rest.pop(p.name)
        if p.kind is p.POSITIONAL_ONLY:
            args.append(value)
        elif p.kind is p.VAR_POSITIONAL:
            args.extend(value)
        else:
            kwargs[p.name] = value
kwargs.update(rest)
try:
    result = func(*args, **kwargs)
    if inspect.iscoroutine(result):
        asyncio.run(result)
except BaseException:
    sys.exit(1)
""".replace("REPLAY_SPEC_VARIABLE", variable("replay_spec"))


NOTEBOOK_RUNNER = r"""
import json, os, sys
import nbformat
from nbclient import NotebookClient
spec = json.loads(os.environ.pop("REPLAY_SPEC_VARIABLE"))
nb = nbformat.v4.new_notebook()
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nb.cells = [nbformat.v4.new_code_cell(cell["source"]) for cell in spec["cells"]]
client = NotebookClient(
    nb, timeout=None, kernel_name="python3", allow_errors=True,
    resources={"metadata": {"path": spec["cwd"]}},
)
client.execute()
for cell in nb.cells:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            sys.stdout.write(out.get("text", ""))
        elif out.get("output_type") == "error":
            sys.stdout.write(f"{out.get('ename')}: {out.get('evalue')}\n")
""".replace("REPLAY_SPEC_VARIABLE", variable("replay_spec"))
_LAYOUT = frozenset(
    {"RANK", "LOCAL_RANK", "GROUP_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "NODE_RANK"}
)


def child_env(
    m: Manifest, store: Store, log: str, parent: str | None, replay_of: bool = True
) -> dict[str, str]:
    env = dict(os.environ)
    seeds = m.seeds
    seed = seeds.get("seed")
    variables = m.environment.get("variables") or {}
    if isinstance(variables, Mapping) and variables.get("unavailable") is None:
        # A numerics variable the recorded run did not have is not passed on from this shell:
        # the re-execution gets the recorded numerics environment, no more, no less.
        for key in [k for k in env if is_numerics_variable(k) and k not in variables]:
            # Which devices to use is this machine's choice, not a numerics setting to undo.
            if key != "PYTHONHASHSEED" and not key.endswith("_VISIBLE_DEVICES"):
                del env[key]
    relaunched = isinstance(m.run.get("ranks"), Mapping)
    for key, value in variables.items():
        if relaunched and (key in _LAYOUT or key.startswith("SLURM_")):
            continue  # the re-launched job's launcher gives every rank its place
        if isinstance(value, str) and value != "<redacted>" and applicable_variable(key):
            env[key] = value
    hashseed = seeds.get("pythonhashseed")
    env["PYTHONHASHSEED"] = str(hashseed if hashseed not in (None, "random") else seed)
    det = seeds.get("deterministic") or {}
    ChildProtocol(
        seed=seed,
        store=store.address,
        replay_of=m.id if replay_of else None,
        run_log=log,
        parent=parent,
        deterministic=isinstance(det, Mapping) and bool(det.get("requested")),
    ).apply(env, unset=("replay_of", "parent"))
    return env


# Variables that change how programs and libraries are loaded: a recorded manifest (perhaps a
# stranger's) never sets them for a replay, whatever it lists.
_LOADER_PREFIXES = ("LD_", "DYLD_", "PYTHON", "BASH_", "PERL", "RUBY", "NODE_", "GIT_", "GCONV",
                    "MALLOC_", "JAVA_TOOL", "_JAVA")  # fmt: skip
_LOADER_NAMES = {"ENV", "PATH", "HOME", "SHELL", "IFS", "PS4", "PROMPT_COMMAND", "LOCPATH",
                 "NLSPATH", "TMPDIR", "HOSTALIASES", "RESOLV_HOST_CONF", "CDPATH"}  # fmt: skip


def applicable_variable(name: str) -> bool:
    """True for a recorded environment variable a replay re-applies: a numerics setting
    (OMP_*, CUBLAS_*...) that cannot change which code is loaded (LD_PRELOAD, PYTHONPATH,
    PYTHONSTARTUP, BASH_ENV... never are). PYTHONHASHSEED is set by the replay itself."""
    if not isinstance(name, str) or not is_numerics_variable(name):
        return False
    return not (name.startswith(_LOADER_PREFIXES) or name in _LOADER_NAMES)


def inside(source: str, rel: str, what: str, run_id: str) -> str:
    """``source`` joined with the recorded relative path ``rel``; NotReplayable when ``rel``
    is absolute or climbs out (a hand-made manifest must not point a replay outside)."""
    if not isinstance(rel, str) or os.path.isabs(rel) or "\0" in rel:
        raise NotReplayable(run_id, f"the recorded {what} {rel!r} is not a relative path")
    base = os.path.abspath(source)
    path = os.path.normpath(os.path.join(base, *rel.split("/")))
    real, real_base = os.path.realpath(path), os.path.realpath(base)
    for p, b in ((path, base), (real, real_base)):  # by name, then through links in the tree
        if p != b and not p.startswith(b.rstrip(os.sep) + os.sep):
            raise NotReplayable(run_id, f"the recorded {what} {rel!r} lies outside the source tree")
    return path


def reruns_script(m: Manifest) -> bool:
    """Whether re-executing ``m`` (a function run) means re-running its whole script.

    A function of the script itself, called in the script's own process: importing the script
    would run its top-level code again, so the script is re-run as it was and its run matched by
    name and order. A call made in a worker process is re-made directly instead (the script was
    import-safe for the worker already).
    """
    run = m.run
    entry = run.get("entry") or {}
    argv0 = (entry.get("argv") or [""])[0]
    return bool(
        entry.get("kind") == "function"
        and entry.get("module") == "__main__"
        and entry.get("file_rel")
        and not run.get("worker_of")
        and os.path.basename(argv0) == os.path.basename(entry.get("file") or "")
    )


_SEED_FLAGS = ("--seed", "--random-seed", "--random_seed", "--rng-seed", "--rng_seed")


def with_seed_flag(argv: list[str], seed: int) -> tuple[list[str], bool]:
    """``argv`` with the value of its ``--seed``-style flags set to ``seed``; whether it had one.

    A seed sweep over a script that takes its seed from the command line must change it there.
    """
    out, found, i = list(argv), False, 1
    while i < len(out):
        arg = out[i]
        if arg == "--":
            break
        flag, eq, _value = arg.partition("=")
        if flag in _SEED_FLAGS:
            if eq:
                out[i], found = f"{flag}={seed}", True
            elif i + 1 < len(out):
                out[i + 1], found = str(seed), True
                i += 1
        i += 1
    return out, found


def plan(
    m: Manifest, source: str, params: Mapping[str, Any], *, argv_seed: int | None = None
) -> tuple[list[str], dict, str]:
    """(argv, extra environment, cwd) that re-execute the run inside ``source``.

    ``argv_seed``: a seed sweep's seed, given to a script's ``--seed``-style flags.
    """
    run = m.run
    entry = run.get("entry") or {}
    cwd_rel = run.get("cwd") or "."
    cwd = source if os.path.isabs(str(cwd_rel)) else inside(source, cwd_rel, "cwd", m.id)
    if not os.path.isdir(cwd):
        cwd = source
    kind = "script" if reruns_script(m) else entry.get("kind")
    if kind == "function":
        rel = entry.get("file_rel")
        if not rel:
            raise NotReplayable(m.id, "the function's source file is not inside the recorded tree")
        file = inside(source, rel, "source file", m.id)
        module = entry.get("module") or "__main__"
        parts = module.split(".")
        # A function of a script's main module in a spawned worker ("__mp_main__") is loaded
        # from its file under another name, as multiprocessing did: the script's main guard
        # keeps its top-level program from running again.
        by_name = module not in ("__main__", "__mp_main__")
        sys_path0 = os.path.dirname(file)
        if by_name:
            stem = rel[:-3] if rel.endswith(".py") else rel
            stem_parts = stem.split("/")
            if stem_parts[-1] == "__init__":
                stem_parts = stem_parts[:-1]
            if stem_parts[-len(parts) :] == parts:
                base = stem_parts[: len(stem_parts) - len(parts)]
                sys_path0 = os.path.join(source, *base) if base else source
            else:
                by_name = False
        spec = {
            "file": file,
            "module": module,
            "by_name": by_name,
            "sys_path0": sys_path0,
            "qualname": entry.get("qualname"),
            "params": dict(params),
            "types": dict(run.get("param_types") or {}),
        }
        return (
            [sys.executable, "-c", BOOTSTRAP],
            ChildProtocol(replay_spec=json.dumps(spec)).child_env({}),
            cwd,
        )
    if kind == "script":
        rel = entry.get("file_rel")
        if not rel:
            raise NotReplayable(m.id, "the script is not inside the recorded tree")
        argv = list(entry.get("argv") or [])
        if argv_seed is not None:
            argv = with_seed_flag(argv, argv_seed)[0]
        return [sys.executable, inside(source, rel, "script", m.id), *argv[1:]], {}, cwd
    if kind == "notebook":
        needed = ("nbclient", "nbformat", "ipykernel")
        missing = [name for name in needed if importlib.util.find_spec(name) is None]
        if missing:
            raise NotReplayable(
                m.id,
                f"replaying a notebook run needs {', '.join(missing)}: "
                "pip install 'reprokit-verdict[notebook]'",
            )
        spec = {"cells": list(entry.get("cells") or []), "cwd": cwd}
        return (
            [sys.executable, "-c", NOTEBOOK_RUNNER],
            ChildProtocol(replay_spec=json.dumps(spec)).child_env({}),
            cwd,
        )
    if kind == "command":
        argv = list(entry.get("argv") or [])
        changed = {k: v for k, v in params.items() if k not in m.params or m.params[k] != v}
        if changed:
            argv = with_flags(m, argv, changed)
        program = python_program(argv)
        if program is not None and program["how"] == "script":
            script = os.path.join(cwd, program["script"])
            if not os.path.isfile(script):
                raise NotReplayable(
                    m.id,
                    f"its script {program['script']} is not in the recorded source "
                    f"({m.code.get('kind')} {m.code.get('digest') or m.code.get('tree')})",
                )
        return argv, {}, cwd
    raise NotReplayable(m.id, f"runs of kind {kind!r} cannot be re-executed")


def with_flags(m: Manifest, argv: list[str], changed: Mapping[str, Any]) -> list[str]:
    """``argv`` with the flags of the ``changed`` params set to their new values."""
    entry = m.run.get("entry") or {}
    flags = entry.get("flags") or {}
    program = python_program(argv)
    # A launcher's command line: its workers' flags start where the recording found them.
    start = (entry.get("program") or {}).get("args_at")
    if not isinstance(start, int):
        start = program["args_at"] if program is not None else 1
    head, args = argv[:start], argv[start:]
    for name, value in changed.items():
        flag = flags.get(name)
        if not isinstance(flag, Mapping):
            raise ReprokitError(f"param {name!r} was not set by a command-line flag")
        option, kind = str(flag.get("option")), flag.get("kind")
        end = args.index("--") if "--" in args else len(args)
        if kind == "value":
            if isinstance(value, (dict, list)) or value is None:
                raise ReprokitError(
                    f"param {name!r}: {option} takes one value, got {json.dumps(value)}"
                )
            text = value if isinstance(value, str) else json.dumps(value)
            for i, a in enumerate(args[:end]):
                if a == option and i + 1 < end:
                    args[i + 1] = text
                    break
                if a.startswith(option + "="):
                    args[i] = f"{option}={text}"
                    break
            else:
                _can_append(name, flag)
                args[end:end] = [option, text]
        elif kind in ("switch", "pair"):
            if not isinstance(value, bool):
                raise ReprokitError(f"param {name!r}: {option} is a switch; give true or false")
            on = option if kind == "pair" or flag.get("sets") else None
            off = flag.get("off") if kind == "pair" else (None if on else option)
            wanted = on if value else off
            found = [i for i, a in enumerate(args[:end]) if a in (option, flag.get("off"))]
            for i in reversed(found):
                del args[i]
            if wanted is not None:
                if not found:
                    _can_append(name, flag)
                args.insert(found[0] if found else end, wanted)
        elif kind == "override":  # Hydra: key=value on the command line
            text = value if isinstance(value, str) else json.dumps(value)
            for i, a in enumerate(args[:end]):
                if a.lstrip("+").split("=", 1)[0] == option and "=" in a:
                    args[i] = f"{a.split('=', 1)[0]}={text}"
                    break
            else:
                args[end:end] = [f"{option}={text}"]
        else:
            raise ReprokitError(f"param {name!r}: {option} cannot be set again by reprokit")
    return head + args


def _can_append(name: str, flag: Mapping[str, Any]) -> None:
    if flag.get("append") is False:
        raise ReprokitError(
            f"param {name!r}: {flag.get('option')} was not on the recorded command line, and "
            "added at its end it would reach a sub-command"
        )


def group_layout(m: Manifest, gpus_here: int | None = None) -> list[str]:
    """For a distributed run: the launcher command that re-launches its recorded world size on
    this host, to be put before the program's argv. NotReplayable, saying exactly what is
    missing, when the recorded layout cannot be rebuilt here. [] for other runs."""
    ranks = m.run.get("ranks")
    if not isinstance(ranks, Mapping):
        return []
    launcher = ranks.get("launcher")
    world = ranks.get("world_size")
    local = ranks.get("local_world_size")
    if not isinstance(world, int) or world < 1:
        raise NotReplayable(m.id, "its world size was not recorded")
    if isinstance(local, int) and local < world:
        raise NotReplayable(
            m.id,
            f"it ran {world} ranks on {-(-world // local)} hosts ({local} per host); replay "
            "re-launches a job on this host only",
        )
    backend = ranks.get("backend")
    if backend == "nccl":
        have = gpus_here if gpus_here is not None else _gpus_here()
        if have < (local or world):
            raise NotReplayable(
                m.id,
                f"it ran {local or world} ranks per host on the NCCL backend (one GPU each); "
                f"this machine has {have} GPU(s)",
            )
    if launcher in ("torchrun", "accelerate"):
        if importlib.util.find_spec("torch") is None:
            raise NotReplayable(
                m.id, f"it was launched by {launcher} with {world} ranks; torch is not installed"
            )
        # --standalone: a rendezvous on a free local port, so replays never collide.
        return [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={world}", "--no-python",
        ]  # fmt: skip
    tools = {"openmpi": "mpirun", "mpich": "mpiexec", "slurm": "srun"}
    tool = tools.get(str(launcher))
    if tool is None:
        raise NotReplayable(m.id, f"it was launched by {launcher!r}, which replay cannot re-launch")
    if shutil.which(tool) is None:
        raise NotReplayable(
            m.id, f"it was launched by {launcher} with {world} ranks; {tool} is not on PATH here"
        )
    return [tool, "-n", str(world)]


def _gpus_here() -> int:
    gpus = capture_hardware().get("gpus")
    return len(gpus) if isinstance(gpus, list) else 0


def check_replayable(m: Manifest, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The params to replay with; NotReplayable with every reason when there are any."""
    run = m.run
    reasons = list(run.get("not_replayable_because") or [])
    if run.get("replayable") is False and not reasons:
        reasons.append("the run was recorded as not replayable")
    params = dict(m.params)
    redacted = [p for p in run.get("redacted_params") or [] if "." not in p and "[" not in p]
    entry = run.get("entry") or {}
    # A command's flags can be set again: a replay then asks "what does this change do?".
    settable = set(entry.get("flags") or {}) if entry.get("kind") == "command" else set()
    unknown = sorted(set(overrides) - set(redacted) - settable)
    if unknown:
        # A replay runs what was recorded; --param only gives back values that were not
        # recorded (redacted secrets). Changing a param would make a different run.
        raise ArgumentError(
            "params",
            f"{unknown[0]!r} cannot be supplied again: only redacted params and a command's flags "
            f"can (this run's: {', '.join(sorted(set(redacted) | settable)) or 'none'}); to try "
            "other values, run it anew",
        )
    missing = [p for p in redacted if p not in overrides]
    if missing:
        reasons.append(
            "params were redacted when recorded; supply them again (params=) with "
            + " ".join(f"--param {p}=..." for p in missing)
        )
    if entry.get("kind") in ("script", "command") and entry.get("redacted"):
        reasons.append("its command line held secrets, which were not recorded")
    try:
        group_layout(m)
    except NotReplayable as exc:
        reasons.append(exc.reason)
    if reasons:
        raise NotReplayable(m.id, "; ".join(reasons))
    params.update(overrides)
    return params


def execute(
    m: Manifest,
    store: Store,
    source: str,
    params: Mapping[str, Any],
    log: str,
    *,
    parent: str | None,
    replay_of: bool = True,
    protocol: ChildProtocol | None = None,
    stdout: Any = None,
    python: str | None = None,
    verified: bool = True,
    argv_seed: int | None = None,
    sandbox: list[str] | None = None,
    read_only: list[str] | tuple[str, ...] = (),
    moved: Mapping[str, str] | None = None,
    place_at: str | None = None,
    relocate: str | None = None,
) -> tuple[int, list[Manifest], str]:
    """Run ``m`` again from ``source``; (exit code, runs its process sealed, cwd).

    ``protocol``: more to tell the child (an audit's group, a sweep's seed).
    ``argv_seed``: a seed sweep's seed for a script's ``--seed`` flags.
    ``python`` replaces this interpreter for function and script runs (a fresh virtualenv).
    ``verified``: ``source`` was checked to be the recorded tree, so the re-executed runs carry
    the recorded code identity instead of a snapshot of a temporary folder.
    ``sandbox``: run inside bubblewrap, able to write only under these folders and never
    under ``read_only`` (the run's inputs).
    ``moved``: {recorded absolute path: where the replay writes it instead}, applied to a
    command's arguments (see ``moved_outputs``).
    ``place_at``: inside the sandbox, the rebuilt ``source`` appears at this path (where the
    tree lay when recorded), and the program runs from there: a program that writes its own
    path into an output writes what it wrote when recorded.
    ``relocate``: the folder the recorded tree lay in; a path into it among a script's or a
    command's arguments is said as the same path in the rebuilt ``source`` (the user's
    checkout is not written by a replay run outside the sandbox).
    """
    argv, extra, cwd = plan(m, source, params, argv_seed=argv_seed)
    kind = (m.run.get("entry") or {}).get("kind")
    if moved and kind == "command":
        argv = [_moved_arg(a, moved) for a in argv]
    if relocate and (kind in ("command", "script") or reruns_script(m)):
        argv = [_relocated(a, relocate, source) for a in argv]
    argv = group_layout(m) + argv
    if verified:
        extra = dict(extra)
        code = json.dumps({"code": dict(m.code), "source": source})
        ChildProtocol(replay_code=code).apply(extra)
    if python and argv and argv[0] == sys.executable:
        argv = [python, *argv[1:]]
    env = child_env(m, store, log, parent, replay_of)
    env.update(extra)
    program = python_program(argv)
    if (m.run.get("entry") or {}).get("kind") == "command" and program is not None:
        # Seeded as the recorded program was: by the start-up hook, before its first line.
        bootstrap_env(env, child_report_path(log), program)
    if protocol is not None:
        protocol.apply(env)
    if sandbox is not None:
        place = None
        inner_cwd = cwd
        if place_at is not None:
            place = (source, place_at)
            argv = [_relocated(a, source, place_at) for a in argv]
            for key, value in list(env.items()):
                if source in value:
                    env[key] = _relocated(value, source, place_at)
            inner_cwd = _relocated(cwd, source, place_at)
        try:
            argv = sandbox_wrap(argv, inner_cwd, sandbox, read_only, place)
        except OSError as exc:
            raise NotReplayable(m.id, f"the sandbox is unavailable: {exc}") from None
    try:
        proc = subprocess.run(
            argv, cwd=cwd, env=env, stdout=stdout if stdout is not None else sys.stderr
        )
    except OSError as exc:
        raise NotReplayable(m.id, f"cannot start {argv[0]!r}: {exc.strerror}") from None
    return proc.returncode, new_runs(store, log), cwd


def recorded_root(m: Manifest) -> str | None:
    """The absolute folder the run's tree lay in when recorded (its repository root), from
    ``run.root``, else (older manifests) from the entry file's absolute and relative paths."""
    root = m.run.get("root")
    if isinstance(root, str) and os.path.isabs(root) and "\0" not in root:
        return os.path.normpath(root)
    entry = m.run.get("entry") or {}
    file, rel = entry.get("file"), entry.get("file_rel")
    if isinstance(file, str) and isinstance(rel, str) and os.path.isabs(file):
        suffix = "/" + rel
        if file.replace(os.sep, "/").endswith(suffix):
            return os.path.normpath(file[: -len(suffix)] or "/")
    return None


def moved_outputs(m: Manifest, source: str, outside: str) -> dict[str, str]:
    """Where a replay of command run ``m`` writes each declared output that was named by an
    absolute path: {recorded absolute path: path in the replay's folders}. Never the user's
    file: one inside the recorded tree goes to the rebuilt tree (``source``), one outside it
    under ``outside``. The parent folders are created."""
    root = recorded_root(m)
    moved: dict[str, str] = {}
    for rec in m.outputs.get("declared") or []:
        path = rec.get("path") if isinstance(rec, Mapping) else None
        if not isinstance(path, str) or not path or "\0" in path:
            continue
        if os.path.isabs(path):
            norm = os.path.normpath(path)
            target = os.path.join(outside, *norm.lstrip(os.sep).split(os.sep))
        elif root is not None:
            norm = os.path.join(root, *path.split("/"))
            target = inside(source, path, "output", m.id)
        else:
            continue  # a relative output of an old record: argv names it relative to the cwd
        if norm in (os.sep, root):
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        moved[norm] = target
    return moved


def _moved_arg(arg: str, moved: Mapping[str, str]) -> str:
    """``arg`` with each recorded path in it (a whole path, or the start of one below it:
    ``/data/out/model.txt`` for ``/data/out``) replaced in one pass, longest first."""
    olds = sorted(moved, key=len, reverse=True)
    pattern = r"(?<![\w.\-/])(" + "|".join(map(re.escape, olds)) + r")(?![\w.\-])"
    return re.sub(pattern, lambda mt: moved[mt.group(1)], arg)


def _relocated(text: str, old: str, new: str) -> str:
    """``text`` with the folder ``old`` (as a whole path or a prefix of one) said as ``new``."""
    return re.sub(r"(?<![\w.\-/])" + re.escape(old) + r"(?=$|/|[^\w.\-])", lambda _m: new, text)


def relocated_values(value: Any, old: str, new: str) -> Any:
    """``value`` (params: dicts, lists, strings) with every path into folder ``old`` said as
    the same path under ``new``."""
    if isinstance(value, str):
        return _relocated(value, old, new) if old in value else value
    if isinstance(value, Mapping):
        return {k: relocated_values(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [relocated_values(v, old, new) for v in value]
    return value


def child_report_path(log: str) -> str:
    """Where a re-executed command's start-up hook reports (beside the run log)."""
    return os.path.join(os.path.dirname(log), "child.json")


def new_runs(store: Store, log: str) -> list[Manifest]:
    try:
        with open(log, encoding="utf-8") as fh:
            ids = [line.strip() for line in fh if line.strip()]
    except FileNotFoundError:
        return []
    return [store.load(i) for i in ids]
