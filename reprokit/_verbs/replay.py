"""Replay: re-execute a recorded run from its exact source and give a verdict that never lies.

1. the run must verify (a tampered run is refused);
2. its source tree is rebuilt in a temporary folder (never the user's working tree) from the
   repository's objects, else from the portable patch kept in the store, and its digest checked;
3. the environment is compared with the recorded one (drift is reported, not fatal);
4. it runs again in a subprocess with the recorded params, seed, deterministic mode,
   PYTHONHASHSEED and numerics variables;
5. every recorded output is compared (exact, or within rtol/atol for numbers), and the first
   checkpoint at which the two runs parted is located; likely causes are listed;
6. the replay is recorded as a run of its own, pointing at the original with ``replay_of``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from reprokit._model import compare as cmp
from reprokit._capture.git import EMPTY_TREE, GitError, find_repo, git
from reprokit._model.errors import NotReplayable, ReprokitError
from reprokit._model.manifest import Manifest, as_mapping
from reprokit._model.redact import redact_argv
from reprokit._store.store import Store

_BOOTSTRAP = r"""
import asyncio, importlib, importlib.util, inspect, json, os, sys
spec = json.loads(os.environ.pop("REPROKIT_REPLAY_SPEC"))
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
"""


class ReplayReport:
    """The verdict of a replay, with everything that led to it. ``to_dict()`` is the JSON form."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.replay_id: str | None = None
        self.verdict = cmp.IDENTICAL
        self.rtol = 0.0
        self.atol = 0.0
        self.source: dict[str, Any] = {}
        self.drift: dict[str, Any] = {}
        self.runs: list[dict[str, Any]] = []  # one entry per compared run
        self.causes: list[str] = []
        self.exit_code: int | None = None

    @property
    def identical(self) -> bool:
        """True when every output is identical or within the tolerance."""
        return self.verdict in (cmp.IDENTICAL, cmp.WITHIN)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "run": self.run_id,
            "replay": self.replay_id,
            "verdict": self.verdict,
            "tolerance": {"rtol": self.rtol, "atol": self.atol},
            "source": self.source,
            "drift": self.drift,
            "runs": self.runs,
            "causes": self.causes,
        }


# -- source --------------------------------------------------------------------------------------


def _repo_with(objects: list[str], candidates: list[str]) -> str | None:
    """The first repository among ``candidates`` that has every object in ``objects``."""
    seen = set()
    for start in candidates:
        found = find_repo(start) if os.path.isdir(start) else None
        if found is None or found[0] in seen:
            continue
        seen.add(found[0])
        try:
            git(["cat-file", "-e", *[f"{o}^{{object}}" for o in objects[:1]]], found[0])
            for obj in objects[1:]:
                git(["cat-file", "-e", obj], found[0])
        except GitError:
            continue
        return found[0]
    return None


def _checkout(repo: str, treeish: str, dest: str, scratch: str) -> None:
    """Write the files of ``treeish`` into ``dest`` without touching the repository's index."""
    env = dict(os.environ, GIT_INDEX_FILE=os.path.join(scratch, "index"), LC_ALL="C")
    env.pop("GIT_DIR", None)
    git(["read-tree", treeish], repo, env=env)
    # Parallel checkout (git >= 2.32; older versions ignore the setting): file creation
    # dominates rebuilding a large tree.
    git(
        [
            "-c",
            "checkout.workers=0",
            "checkout-index",
            "-a",
            "-f",
            f"--prefix={dest.rstrip(os.sep)}{os.sep}",
        ],
        repo,
        env=env,
    )
    os.unlink(os.path.join(scratch, "index"))


def tree_of(folder: str, repo: str | None, scratch: str) -> str:
    """The git tree id of ``folder``'s files (every file, ignore rules not applied)."""
    env = dict(os.environ, GIT_INDEX_FILE=os.path.join(scratch, "verify-index"), LC_ALL="C")
    if repo is None:
        odb = os.path.join(scratch, "odb")
        if not os.path.isdir(odb):
            git(["init", "-q", "--bare", odb], scratch)
        env["GIT_DIR"] = odb
        repo = scratch
    git(["--work-tree", folder, "add", "-A", "-f", "."], repo, env=env)
    tree = git(["write-tree"], repo, env=env).decode().strip()
    os.unlink(os.path.join(scratch, "verify-index"))
    return tree


def snapshot_digest(folder: str) -> str:
    """The digest a snapshot (non-git) run records: sha256 over "sha256  path" lines."""
    import hashlib

    from reprokit._model.digest import sha256_file

    files = {}
    for dirpath, _dirs, names in os.walk(folder):
        for n in names:
            p = os.path.join(dirpath, n)
            files[os.path.relpath(p, folder).replace(os.sep, "/")] = sha256_file(p)[0]
    listing = "".join(f"{d}  {p}\n" for p, d in sorted(files.items())).encode()
    return "sha256:" + hashlib.sha256(listing).hexdigest()


def check_source_dir(m: Manifest, folder: str, scratch: str) -> dict[str, Any]:
    """Check that ``folder`` holds exactly the run's recorded source (e.g. from an archive)."""
    code = m.code
    if code.get("kind") == "snapshot":
        digest = snapshot_digest(folder)
        if digest != code.get("digest"):
            raise NotReplayable(m.id, f"the source in {folder} does not match the recorded digest")
        return {"mode": "archive", "digest": digest, "verified": True}
    tree = code.get("tree")
    if not tree:
        raise NotReplayable(m.id, "the run's code was not captured")
    found = tree_of(folder, None, scratch)
    if found != tree:
        raise NotReplayable(
            m.id, f"the source in {folder} is tree {found[:12]}, not the recorded {tree[:12]}"
        )
    return {"mode": "archive", "tree": tree, "verified": True}


def rebuild_source(m: Manifest, store: Store, dest: str, scratch: str) -> dict[str, Any]:
    """Rebuild the run's exact source tree in ``dest``; raise NotReplayable when it cannot."""
    code = m.code
    kind = code.get("kind")
    os.makedirs(dest, exist_ok=True)
    if kind == "snapshot":
        for rel, digest in sorted((code.get("files") or {}).items()):
            target = os.path.join(dest, *rel.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(store.object_path(digest), target)
        digest = snapshot_digest(dest)
        if digest != code.get("digest"):
            raise NotReplayable(m.id, f"the rebuilt snapshot's digest {digest} does not match")
        return {"mode": "snapshot", "digest": digest, "verified": True}
    if kind != "git" or not code.get("tree"):
        raise NotReplayable(m.id, "the run's code was not captured")
    tree = code["tree"]
    candidates = [os.getcwd(), str(store.root.parent)]
    repo = _repo_with([tree], candidates)
    how = "tree"
    if repo is not None:
        _checkout(repo, tree, dest, scratch)
    else:
        patch = code.get("patch")
        base = (patch or {}).get("base") or code.get("commit")
        if base is None:
            raise NotReplayable(m.id, "the recorded tree is in no repository here")
        if base != EMPTY_TREE:
            repo = _repo_with([base], candidates)
            if repo is None:
                raise NotReplayable(
                    m.id,
                    f"commit {base[:12]} is in no repository here: fetch it, or replay from "
                    "the repository the run was recorded in",
                )
            _checkout(repo, base, dest, scratch)
        if patch:
            data = store.object_path(patch["sha256"]).read_bytes()
            patch_file = os.path.join(scratch, "source.patch")
            with open(patch_file, "wb") as fh:
                fh.write(data)
            env = dict(os.environ, LC_ALL="C", GIT_DIR=os.path.join(scratch, "no-repo"))
            git(["apply", "--binary", "--whitespace=nowarn", patch_file], dest, env=env)
        how = "patch"
    rebuilt = tree_of(dest, repo, scratch)
    if rebuilt != tree:
        raise NotReplayable(
            m.id, f"the rebuilt source tree {rebuilt[:12]} does not match the recorded {tree[:12]}"
        )
    return {"mode": how, "tree": tree, "verified": True}


# -- environment drift ---------------------------------------------------------------------------


# What a process reports only when it imported torch/numpy: compared against the replayed run's
# own record (after it ran), never against the replaying process, which imported neither.
_IMPORT_DEPENDENT = ("torch", "blas")


def environment_drift(
    m: Manifest,
    env_now: Mapping[str, Any] | None = None,
    hw_now: Mapping[str, Any] | None = None,
    hw_keys: tuple[str, ...] = ("cpu", "gpus"),
) -> dict[str, Any]:
    """What changed between the recorded environment and hardware and this machine's."""
    from reprokit._api import compare

    if env_now is None:
        from reprokit._capture.environment import capture_environment

        env_now = capture_environment()
    if hw_now is None:
        from reprokit._capture.hardware import capture_hardware

        hw_now = capture_hardware()
    env_then = dict(m.environment)
    hw_then = dict(m.hardware) if isinstance(m.hardware, Mapping) else {}
    drift: dict[str, Any] = {}
    py_then = (env_then.get("python") or {}).get("version")
    py_now = (env_now.get("python") or {}).get("version")
    if py_then != py_now:
        drift["python"] = {"recorded": py_then, "now": py_now}
    imported = {str(n).lower() for n in env_then.get("imported") or []}
    pa = as_mapping(env_then.get("packages"))
    pb = as_mapping(env_now.get("packages"))
    changes = []
    for name in sorted(set(pa) | set(pb), key=lambda n: (n.lower() not in imported, n.lower())):
        a, b = pa.get(name), pb.get(name)
        if a != b:
            changes.append(
                {"name": name, "recorded": a, "now": b, "imported": name.lower() in imported}
            )
    if changes:
        drift["packages"] = changes
    hw = compare({k: hw_then.get(k) for k in hw_keys}, {k: hw_now.get(k) for k in hw_keys})
    if hw:
        drift["hardware"] = hw
    # Replay sets PYTHONHASHSEED for the re-execution itself: not a drift of this machine.
    then_vars = {
        k: v for k, v in (env_then.get("variables") or {}).items() if k != "PYTHONHASHSEED"
    }
    now_vars = {k: v for k, v in (env_now.get("variables") or {}).items() if k != "PYTHONHASHSEED"}
    variables = compare(then_vars, now_vars)
    if variables:
        drift["variables"] = variables
    return drift


# -- execution -----------------------------------------------------------------------------------


def _child_env(
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
    env["REPROKIT_SEED"] = str(seed)
    env["REPROKIT_STORE"] = str(store.root)
    if replay_of:
        env["REPROKIT_REPLAY_OF"] = m.id
    else:
        env.pop("REPROKIT_REPLAY_OF", None)
    env["REPROKIT_RUN_LOG"] = log
    if parent:
        env["REPROKIT_PARENT"] = parent
    else:
        env.pop("REPROKIT_PARENT", None)
    det = seeds.get("deterministic") or {}
    if isinstance(det, Mapping) and det.get("requested"):
        env["REPROKIT_DETERMINISTIC"] = "1"
    return env


def _plan(m: Manifest, source: str, params: Mapping[str, Any]) -> tuple[list[str], dict, str]:
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
        return [sys.executable, "-c", _BOOTSTRAP], {"REPROKIT_REPLAY_SPEC": json.dumps(spec)}, cwd
    if kind == "script":
        rel = entry.get("file_rel")
        if not rel:
            raise NotReplayable(m.id, "the script is not inside the recorded tree")
        argv = list(entry.get("argv") or [])
        return [sys.executable, os.path.join(source, *rel.split("/")), *argv[1:]], {}, cwd
    if kind == "command":
        return list(entry.get("argv") or []), {}, cwd
    raise NotReplayable(m.id, f"runs of kind {kind!r} cannot be re-executed")


def _check_replayable(m: Manifest, overrides: Mapping[str, Any]) -> dict[str, Any]:
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
    env_extra: Mapping[str, str] | None = None,
    stdout: Any = None,
    python: str | None = None,
    verified: bool = True,
) -> tuple[int, list[Manifest], str]:
    """Run ``m`` again from ``source``; (exit code, runs its process sealed, cwd).

    ``python`` replaces this interpreter for function and script runs (a fresh virtualenv).
    ``verified``: ``source`` was checked to be the recorded tree, so the re-executed runs carry
    the recorded code identity instead of a snapshot of a temporary folder.
    """
    argv, extra, cwd = _plan(m, source, params)
    if verified:
        extra = dict(extra)
        extra["REPROKIT_REPLAY_CODE"] = json.dumps({"code": dict(m.code), "source": source})
    if python and argv and argv[0] == sys.executable:
        argv = [python, *argv[1:]]
    env = _child_env(m, store, log, parent, replay_of)
    env.update(extra)
    env.update(env_extra or {})
    try:
        proc = subprocess.run(
            argv, cwd=cwd, env=env, stdout=stdout if stdout is not None else sys.stderr
        )
    except OSError as exc:
        raise NotReplayable(m.id, f"cannot start {argv[0]!r}: {exc.strerror}") from None
    return proc.returncode, _new_runs(store, log), cwd


def _new_runs(store: Store, log: str) -> list[Manifest]:
    try:
        with open(log, encoding="utf-8") as fh:
            ids = [line.strip() for line in fh if line.strip()]
    except FileNotFoundError:
        return []
    return [store.load(i) for i in ids]


def counterpart(recorded: Manifest, candidates: list[Manifest]) -> Manifest | None:
    """The re-executed run that corresponds to ``recorded``: same name, same order in its
    process."""
    for r in candidates:
        if r.run.get("name") == recorded.run.get("name") and r.run.get("ordinal") == (
            recorded.run.get("ordinal")
        ):
            return r
    return None


def _siblings(store: Store, m: Manifest) -> list[Manifest]:
    """The recorded runs of the same process at the same nesting level, in order."""
    token = m.run.get("process")
    if not token:
        return [m]
    out = []
    for entry in store.entries():
        other = entry.manifest
        if other is None or other.run.get("process") != token:
            continue
        if other.run.get("parent") == m.run.get("parent"):
            out.append(other)
    return sorted(out, key=lambda x: x.id)


def compare_runs(
    recorded: Manifest, replayed: Manifest | None, store: Store, rtol: float, atol: float
) -> dict[str, Any]:
    """Output-by-output comparison of one recorded run with its re-execution."""
    out: dict[str, Any] = {"recorded": recorded.id, "replayed": replayed.id if replayed else None}
    if replayed is None:
        out["verdict"] = cmp.DIFFERENT
        out["outputs"] = {"run": {"verdict": cmp.MISSING, "detail": "the replay created no run"}}
        return out
    outputs: dict[str, Any] = {}
    ra, rb = recorded.run, replayed.run
    if ra.get("status") != rb.get("status"):
        outputs["status"] = {
            "verdict": cmp.DIFFERENT,
            "detail": f"{ra.get('status')} -> {rb.get('status')}",
        }
    ea, eb = ra.get("error") or {}, rb.get("error") or {}
    if ea or eb:
        same = (ea.get("type"), ea.get("message")) == (eb.get("type"), eb.get("message"))
        outputs["error"] = (
            {"verdict": cmp.IDENTICAL}
            if same
            else {
                "verdict": cmp.DIFFERENT,
                "detail": f"{ea.get('type')}: {ea.get('message')} -> "
                f"{eb.get('type')}: {eb.get('message')}",
            }
        )
    oa, ob = recorded.outputs, replayed.outputs
    if "return" in oa or "return" in ob:
        outputs["return"] = cmp.compare_values(oa.get("return"), ob.get("return"), rtol, atol)
    folder_a, folder_b = store.runs / recorded.id, store.runs / replayed.id
    metrics = cmp.compare_metrics(
        cmp.read_jsonl(folder_a / "metrics.jsonl"),
        cmp.read_jsonl(folder_b / "metrics.jsonl"),
        rtol,
        atol,
    )
    for name, result in metrics.items():
        outputs[f"metric {name}"] = result
    ckpt_a = cmp.read_jsonl(folder_a / "checkpoints.jsonl")
    ckpt_b = cmp.read_jsonl(folder_b / "checkpoints.jsonl")
    if ckpt_a or ckpt_b:
        div = cmp.first_divergence(ckpt_a, ckpt_b, rtol, atol)
        outputs["checkpoints"] = (
            {"verdict": cmp.IDENTICAL, "count": len(ckpt_a)}
            if div is None
            else {"verdict": cmp.DIFFERENT, "first_divergence": div, "count": len(ckpt_a)}
        )
    files = cmp.compare_files(
        list(oa.get("artifacts") or []) + list(oa.get("declared") or []),
        list(ob.get("artifacts") or []) + list(ob.get("declared") or []),
    )
    for path, result in files.items():
        outputs[f"file {path}"] = result
    if "exit_code" in oa or "exit_code" in ob:
        same = oa.get("exit_code") == ob.get("exit_code")
        outputs["exit_code"] = {
            "verdict": cmp.IDENTICAL if same else cmp.DIFFERENT,
            "recorded": oa.get("exit_code"),
            "replayed": ob.get("exit_code"),
        }
    out["outputs"] = outputs
    out["verdict"] = cmp.worst([o["verdict"] for o in outputs.values()])
    return out


# -- causes --------------------------------------------------------------------------------------

_TIMESTAMPED = re.compile(
    r"(19|20)\d\d[-_]?[01]\d[-_]?[0-3]\d|\b1[6-9]\d{8}\b|tfevents|events\.out|\.log$", re.I
)


def explain(
    recorded: list[Manifest],
    replayed: list[Manifest],
    compared: list[dict[str, Any]],
    drift: dict[str, Any],
) -> list[str]:
    """Likely causes of a difference, most likely first, from the two records."""
    causes: list[str] = []
    for comp, a in zip(compared, recorded, strict=False):
        if comp["verdict"] == cmp.IDENTICAL:
            continue
        b = next((r for r in replayed if r.id == comp.get("replayed")), None)
        outputs = comp.get("outputs", {})
        div = (outputs.get("checkpoints") or {}).get("first_divergence")
        seeds_a = set((a.seeds.get("seeded") or {}).keys())
        seeds_b = set((b.seeds.get("seeded") or {}).keys()) if b else seeds_a
        if div is not None:
            where = f"checkpoint {div['index']} ({div.get('name')})"
            if seeds_a == seeds_b:
                causes.append(
                    f"an RNG not under the seed's control (e.g. np.random.default_rng() without a "
                    f"seed, random.SystemRandom, os.urandom, uuid4) or another nondeterministic "
                    f"source: the runs agree until {where} with the same seeds"
                    if div["index"] > 0
                    else f"an RNG not under the seed's control, or nondeterministic input: the "
                    f"runs differ from the first checkpoint ({div.get('name')}) on"
                )
        if seeds_a != seeds_b:
            causes.append(
                "the seeded libraries differ: recorded "
                f"{sorted(seeds_a)}, replayed {sorted(seeds_b)}"
            )
        if a.seeds.get("hash_randomization") and a.seeds.get("pythonhashseed") in (None, "random"):
            causes.append(
                "hash randomization was on in the recorded run (PYTHONHASHSEED unset): iteration "
                "order of sets and str-keyed dicts built from sets may differ"
            )
        torch_hw = a.hardware.get("torch") if isinstance(a.hardware, Mapping) else None
        if isinstance(torch_hw, Mapping) and torch_hw.get("cuda_available"):
            det = torch_hw.get("deterministic_algorithms")
            if not det:
                causes.append(
                    "CUDA without deterministic mode: cuDNN/cuBLAS kernels and atomics (e.g. "
                    "index_add_) may sum in a different order; record with deterministic=True"
                )
        changed_files = [
            k[len("file ") :]
            for k, v in outputs.items()
            if k.startswith("file ") and v["verdict"] != cmp.IDENTICAL
        ]
        timed = [p for p in changed_files if _TIMESTAMPED.search(p)]
        if timed:
            causes.append("outputs that look time-dependent: " + ", ".join(timed))
    if drift.get("packages"):
        imported = [p for p in drift["packages"] if p.get("imported")]
        shown = imported or drift["packages"]
        names = ", ".join(f"{p['name']} {p['recorded']} -> {p['now']}" for p in shown[:5])
        causes.append(f"packages changed since the recording: {names}")
    if drift.get("python"):
        causes.append(f"Python changed: {drift['python']['recorded']} -> {drift['python']['now']}")
    if drift.get("hardware"):
        keys = ", ".join(sorted({d["key"].split(".")[0] for d in drift["hardware"]}))
        causes.append(f"hardware differs ({keys})")
    return list(dict.fromkeys(causes))  # without repeats, in order


# -- the verb ------------------------------------------------------------------------------------


def replay(
    ref: str,
    *,
    store: Store | Path | str | None = None,
    rtol: float = 0.0,
    atol: float = 0.0,
    in_place: bool = False,
    keep: bool = False,
    params: Mapping[str, Any] | None = None,
    on_event: Callable[[str, Any], None] | None = None,
    stdout: Any = None,
    source_dir: str | None = None,
    python: str | None = None,
) -> ReplayReport:
    """Re-execute run ``ref`` from its recorded source and compare every output.

    Raises ``TamperedError`` for a run that fails verification, ``NotReplayable`` when the run
    cannot be re-executed here. ``on_event(kind, data)`` hears "source", "drift" and "running"
    as they happen; ``stdout`` is where the replayed program's output goes (default: stderr).
    """
    if rtol < 0 or atol < 0:
        raise ReprokitError("--rtol and --atol must not be negative")
    st = Store.at(store)
    st.verify(ref)
    m = st.load(ref)
    report = ReplayReport(m.id)
    report.rtol, report.atol = rtol, atol
    replay_params = _check_replayable(m, params or {})
    emit = on_event or (lambda kind, data: None)

    scratch = tempfile.mkdtemp(prefix="reprokit-replay-")
    source = os.path.join(scratch, "source")
    try:
        if source_dir is not None:
            report.source = check_source_dir(m, source_dir, scratch)
            source = source_dir
        elif in_place:
            report.source = _in_place(m, st)
            source = report.source["path"]
        else:
            report.source = rebuild_source(m, st, source, scratch)
            if keep:
                report.source["path"] = source
        emit("source", report.source)
        report.drift = environment_drift(m)
        emit("drift", report.drift)

        recorded = _siblings(st, m) if (m.run.get("entry") or {}).get("kind") == "script" else [m]
        from reprokit._record.run import Run

        record = Run(
            "replay",
            params={"of": m.id, "rtol": rtol, "atol": atol, "in_place": in_place},
            store=st,
            entry={"kind": "replay", "of": m.id, "argv": redact_argv(list(sys.argv))[0]},
            seed=m.seeds.get("seed") if isinstance(m.seeds.get("seed"), int) else None,
        )
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            record.start()
        record._replay_of = m.id
        emit("running", {"cwd": _plan(m, source, replay_params)[2]})
        try:
            code, new, cwd = execute(
                m,
                st,
                source,
                replay_params,
                os.path.join(scratch, "runs.log"),
                parent=record.id,
                stdout=stdout,
                python=python,
                verified=bool(report.source.get("verified")),
            )
        except NotReplayable as exc:
            record.finish("failed", error=exc)
            raise
        report.exit_code = code
        kind = (m.run.get("entry") or {}).get("kind")
        if kind == "command":
            replayed_m = _command_result(m, record, cwd, source, code)
            report.runs = [_compare_command(m, replayed_m, rtol, atol)]
            new = []
        else:
            top = [r for r in new if r.run.get("replay_of") == m.id]
            for rec in recorded:
                report.runs.append(compare_runs(rec, counterpart(rec, top), st, rtol, atol))
        if new:
            # torch and BLAS details exist only where the program imported them: compare the
            # recorded run with its re-execution's record.
            late = environment_drift(
                m, new[0].environment, new[0].hardware, hw_keys=_IMPORT_DEPENDENT
            ).get("hardware")
            if late:
                report.drift.setdefault("hardware", []).extend(late)
        report.verdict = cmp.worst([r["verdict"] for r in report.runs])
        if report.verdict != cmp.IDENTICAL and report.verdict != cmp.WITHIN:
            report.causes = explain(recorded, new, report.runs, report.drift)
        elif report.verdict == cmp.WITHIN:
            report.causes = []
        record._outputs["verdict"] = report.verdict
        record._outputs["compared"] = [
            {"recorded": r["recorded"], "replayed": r["replayed"], "verdict": r["verdict"]}
            for r in report.runs
        ]
        if report.causes:
            record._outputs["causes"] = report.causes
        record.finish("completed", exit_code=code)
        report.replay_id = record.id
        return report
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            shutil.rmtree(os.path.join(scratch, "odb"), ignore_errors=True)


def _in_place(m: Manifest, store: Store) -> dict[str, Any]:
    """Use the current working tree; say how it differs from the recorded one."""
    from reprokit._capture.git import capture_code

    cap = capture_code(os.getcwd())
    root = cap.root or os.getcwd()
    out: dict[str, Any] = {"mode": "in-place", "path": root, "verified": False}
    now = cap.section.get("tree")
    then = m.code.get("tree")
    if now and then and now == then:
        out["verified"] = True
        out["differs"] = []
        return out
    if now and then:
        try:
            raw = git(["diff", "--name-status", "-z", "--no-renames", then, now], root)
            parts = raw.decode("utf-8", "surrogateescape").split("\0")
            out["differs"] = [
                {"change": parts[i], "path": parts[i + 1]}
                for i in range(0, len(parts) - 1, 2)
                if parts[i]
            ]
        except GitError as exc:
            out["differs"] = f"unavailable: {exc}"
    else:
        out["differs"] = "unavailable: the current tree or the recorded one is not a git tree"
    return out


def _command_result(
    m: Manifest, record: Any, cwd: str, source: str, exit_code: int
) -> dict[str, Any]:
    from reprokit._record.run import describe_output

    declared = []
    for out in m.outputs.get("declared") or []:
        rel = out.get("path")
        path = Path(source, *str(rel).split("/")) if rel and not os.path.isabs(rel) else Path(rel)
        if path.exists():
            declared.append(describe_output(path, Path(source)))
        else:
            declared.append({"path": rel, "missing": True})
    record._outputs["declared"] = declared
    return {"exit_code": exit_code, "declared": declared}


def _compare_command(
    m: Manifest, replayed: dict[str, Any], rtol: float, atol: float
) -> dict[str, Any]:
    outputs: dict[str, Any] = {}
    same = m.outputs.get("exit_code") == replayed["exit_code"]
    outputs["exit_code"] = {
        "verdict": cmp.IDENTICAL if same else cmp.DIFFERENT,
        "recorded": m.outputs.get("exit_code"),
        "replayed": replayed["exit_code"],
    }
    files = cmp.compare_files(list(m.outputs.get("declared") or []), replayed["declared"])
    for path, result in files.items():
        outputs[f"file {path}"] = result
    return {
        "recorded": m.id,
        "replayed": None,
        "outputs": outputs,
        "verdict": cmp.worst([o["verdict"] for o in outputs.values()]),
    }
