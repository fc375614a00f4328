"""Executing a recorded run again: the command line, the environment and the child process.

``plan`` turns a manifest into the argv, environment and cwd that re-execute it inside a
rebuilt source tree; ``execute`` runs that in a subprocess, telling the child what it needs
through the parent/child protocol, and returns the runs the child sealed, in order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from reprokit._model.errors import NotReplayable, ReprokitError
from reprokit._model.manifest import Manifest
from reprokit._model.protocol import ChildProtocol, variable
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


def child_env(
    m: Manifest, store: Store, log: str, parent: str | None, replay_of: bool = True
) -> dict[str, str]:
    env = dict(os.environ)
    seeds = m.seeds
    seed = seeds.get("seed")
    variables = m.environment.get("variables") or {}
    for key, value in variables.items():
        if isinstance(value, str) and value != "<redacted>" and key != "PYTHONHASHSEED":
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


def plan(m: Manifest, source: str, params: Mapping[str, Any]) -> tuple[list[str], dict, str]:
    """(argv, extra environment, cwd) that re-execute the run inside ``source``."""
    run = m.run
    entry = run.get("entry") or {}
    cwd_rel = run.get("cwd") or "."
    cwd = source if os.path.isabs(cwd_rel) else os.path.join(source, *cwd_rel.split("/"))
    if not os.path.isdir(cwd):
        cwd = source
    kind = entry.get("kind")
    argv0 = (entry.get("argv") or [""])[0]
    if (
        kind == "function"
        and entry.get("module") == "__main__"
        and entry.get("file_rel")
        and os.path.basename(argv0) == os.path.basename(entry.get("file") or "")
    ):
        # A function of the script itself: importing the script would run its top-level code
        # again, so the script is re-run as it was and its run matched by name and order.
        kind = "script"
    if kind == "function":
        rel = entry.get("file_rel")
        if not rel:
            raise NotReplayable(m.id, "the function's source file is not inside the recorded tree")
        file = os.path.join(source, *rel.split("/"))
        module = entry.get("module") or "__main__"
        parts = module.split(".")
        by_name = module != "__main__"
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
        return [sys.executable, os.path.join(source, *rel.split("/")), *argv[1:]], {}, cwd
    if kind == "command":
        return list(entry.get("argv") or []), {}, cwd
    raise NotReplayable(m.id, f"runs of kind {kind!r} cannot be re-executed")


def check_replayable(m: Manifest, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The params to replay with; NotReplayable with every reason when there are any."""
    run = m.run
    reasons = list(run.get("not_replayable_because") or [])
    if run.get("replayable") is False and not reasons:
        reasons.append("the run was recorded as not replayable")
    params = dict(m.params)
    redacted = [p for p in run.get("redacted_params") or [] if "." not in p and "[" not in p]
    unknown = sorted(set(overrides) - set(redacted))
    if unknown:
        # A replay runs what was recorded; --param only gives back values that were not
        # recorded (redacted secrets). Changing a param would make a different run.
        raise ReprokitError(
            f"--param {unknown[0]}: only redacted params can be supplied again "
            f"(this run's: {', '.join(redacted) or 'none'}); to try other values, run it anew"
        )
    missing = [p for p in redacted if p not in overrides]
    if missing:
        reasons.append(
            "params were redacted when recorded; supply them again with "
            + " ".join(f"--param {p}=..." for p in missing)
        )
    entry = run.get("entry") or {}
    if entry.get("kind") in ("script", "command") and entry.get("redacted"):
        reasons.append("its command line held secrets, which were not recorded")
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
) -> tuple[int, list[Manifest], str]:
    """Run ``m`` again from ``source``; (exit code, runs its process sealed, cwd).

    ``protocol``: more to tell the child (an audit's group, a sweep's seed).
    ``python`` replaces this interpreter for function and script runs (a fresh virtualenv).
    ``verified``: ``source`` was checked to be the recorded tree, so the re-executed runs carry
    the recorded code identity instead of a snapshot of a temporary folder.
    """
    argv, extra, cwd = plan(m, source, params)
    if verified:
        extra = dict(extra)
        code = json.dumps({"code": dict(m.code), "source": source})
        ChildProtocol(replay_code=code).apply(extra)
    if python and argv and argv[0] == sys.executable:
        argv = [python, *argv[1:]]
    env = child_env(m, store, log, parent, replay_of)
    env.update(extra)
    if protocol is not None:
        protocol.apply(env)
    try:
        proc = subprocess.run(
            argv, cwd=cwd, env=env, stdout=stdout if stdout is not None else sys.stderr
        )
    except OSError as exc:
        raise NotReplayable(m.id, f"cannot start {argv[0]!r}: {exc.strerror}") from None
    return proc.returncode, new_runs(store, log), cwd


def new_runs(store: Store, log: str) -> list[Manifest]:
    try:
        with open(log, encoding="utf-8") as fh:
            ids = [line.strip() for line in fh if line.strip()]
    except FileNotFoundError:
        return []
    return [store.load(i) for i in ids]
