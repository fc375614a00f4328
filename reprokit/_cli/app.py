"""The ``reprokit`` command: parse, call the library, print, map to an exit code.

stdout carries data only (tables, manifests, JSON); narration and errors go to stderr.
Exit codes: 0 success/intact, 1 a verdict of difference (tampered), 2 could not do it,
3 an internal error (a bug).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from reprokit._api import verify
from reprokit._capture.git import git
from reprokit._cli import many, remote, verifyall
from reprokit._model.errors import GitError, ReprokitError, TamperedError
from reprokit._model.version import __version__
from reprokit._model.yaml import dump as dump_yaml
from reprokit._record.command import record_command
from reprokit._store.store import Store
from reprokit._verbs.archive import DEFAULT_MAX_ARTIFACT, archive, is_archive, verify_archive
from reprokit._verbs.audit import check, parse_seeds, seeds
from reprokit._verbs.diff import diff
from reprokit._verbs.replay import replay
from reprokit._verbs.templates import templates_dir


def _out(text: str = "") -> None:
    sys.stdout.write(text + ("\n" if not text.endswith("\n") else ""))


def _err(text: str) -> None:
    sys.stderr.write(text.rstrip("\n") + "\n")


def _json(data: Any) -> None:
    _out(json.dumps(data, indent=2, sort_keys=False, default=str))


def _store(args: argparse.Namespace) -> Any:
    return Store.at(args.store)


# -- ls ------------------------------------------------------------------------------------------


def _short_commit(code: Any) -> str:
    if not isinstance(code, dict):
        return "-"
    commit = code.get("commit")
    text = commit[:8] if isinstance(commit, str) else code.get("kind", "-")
    return text + ("+dirty" if code.get("dirty") else "")


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    return f"{seconds / 60:.1f}m"


def _note(row: dict[str, Any]) -> str:
    """What a run is when the tool made it: a replay, a seed sweep member, a nested call."""
    if row.get("kind") == "replay":
        return f"verdict of replaying {str(row.get('replay_of') or '')[-6:]}"
    if row.get("replay_of"):
        return f"re-execution of {row['replay_of'][-6:]}"
    if row.get("group"):
        return str(row["group"])
    if row.get("parent"):
        return f"inside {row['parent'][-6:]}"
    return ""


def cmd_ls(args: argparse.Namespace) -> int:
    rows = []
    for entry in _store(args).entries(head=True):
        m = entry.manifest
        if m is None:
            rows.append(
                {
                    "id": entry.id,
                    "name": None,
                    "status": entry.state,
                    "started": None,
                    "commit": None,
                    "dirty": None,
                    "duration_s": None,
                }
            )
            continue
        run, code = m.run, m.code
        rows.append(
            {
                "id": m.id,
                "name": run.get("name"),
                "status": run.get("status"),
                "started": run.get("started"),
                "commit": code.get("commit"),
                "dirty": code.get("dirty"),
                "duration_s": run.get("duration_s"),
                "parent": run.get("parent"),
                "replay_of": run.get("replay_of"),
                "group": run.get("group"),
                "kind": (run.get("entry") or {}).get("kind"),
            }
        )
    if args.json:
        _json({"schema": 1, "runs": rows})
        return 0
    if not rows:
        _err(f"no runs in {_store(args).root}")
        return 0
    table = [("ID", "NAME", "STATUS", "STARTED", "COMMIT", "DURATION", "NOTE")]
    for r in rows:
        code = {"commit": r["commit"], "dirty": r["dirty"]} if r["commit"] or r["dirty"] else None
        started = (r["started"] or "-")[:19].replace("T", " ")
        table.append(
            (
                r["id"],
                r["name"] or "-",
                r["status"],
                started,
                _short_commit(code) if code else "-",
                _duration(r["duration_s"]),
                _note(r),
            )
        )
    widths = [max(len(str(row[i])) for row in table) for i in range(len(table[0]))]
    for row in table:
        _out("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


# -- show ----------------------------------------------------------------------------------------


def cmd_show(args: argparse.Namespace) -> int:
    store = _store(args)
    m = store.load(args.ref)
    if args.json:
        _json(m.to_dict())
        return 0
    if args.yaml:
        _out((store.runs / m.id / "manifest.yaml").read_text("utf-8"))
        return 0
    run, code = m.run, m.code
    lines = [
        f"run       {m.id}  ({run.get('name') or '-'})",
        f"status    {run.get('status')}",
        f"started   {run.get('started')}   duration {_duration(run.get('duration_s'))}",
        f"entry     {_entry_text(run.get('entry') or {})}",
        f"code      {_short_commit(code)}  branch {code.get('branch') or '-'}  "
        f"digest {code.get('digest', '-')}",
        f"seed      {m.seeds.get('seed')}  replayable {run.get('replayable')}",
    ]
    if run.get("parent"):
        lines.append(f"parent    {run['parent']}")
    if run.get("error"):
        err = run["error"]
        lines.append(f"error     {err.get('type')}: {err.get('message')}")
    for reason in run.get("not_replayable_because") or []:
        lines.append(f"not replayable: {reason}")
    _out("\n".join(lines))
    for title, value in (("params", m.params), ("outputs", m.outputs)):
        if value:
            _out(f"\n{title}:")
            _out("".join(f"  {line}\n" for line in dump_yaml(dict(value)).splitlines()))
    return 0


def _entry_text(entry: dict) -> str:
    if entry.get("kind") == "function":
        return f"{entry.get('module')}.{entry.get('qualname')}"
    argv = entry.get("argv") or []
    return " ".join(str(a) for a in argv)


# -- diff ----------------------------------------------------------------------------------------


def cmd_diff(args: argparse.Namespace) -> int:
    report = diff(args.a, args.b, store=args.store)
    if args.json:
        _json(report.to_dict())
        return 0
    _out(f"--- {report.a}\n+++ {report.b}")
    for section, content in report.sections.items():
        if not content:
            _out(f"{section}: same")
            continue
        _out(f"{section}:")
        if isinstance(content, list):
            for item in content:
                _out(f"  {item['key']}: {_short(item['a'])} -> {_short(item['b'])}")
        elif section == "packages":
            for item in content.get("added", []):
                _out(f"  + {item['name']} {item['version']}")
            for item in content.get("removed", []):
                _out(f"  - {item['name']} {item['version']}")
            for item in content.get("changed", []):
                _out(f"  ~ {item['name']} {item['a']} -> {item['b']}")
        elif section == "code":
            for item in content.get("fields", []):
                _out(f"  {item['key']}: {_short(item['a'])} -> {_short(item['b'])}")
            files = content.get("files")
            if isinstance(files, list):
                for f in files:
                    _out(f"  {f['change']:>9}  {f['path']}")
            elif files:
                _out(f"  files: {files}")
    return 0


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- verify --------------------------------------------------------------------------------------


def _progress(args: argparse.Namespace) -> Any:
    """A tqdm bar factory when stderr is a terminal (and not --quiet), else None."""
    if args.quiet or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None

    def start(label: str, total: int) -> Any:
        bar = tqdm(total=total, unit="B", unit_scale=True, desc=label, leave=False)
        return bar.update

    return start


def cmd_archive(args: argparse.Namespace) -> int:
    report = archive(
        args.refs,
        args.output,
        store=args.store,
        all_runs=args.all,
        name=args.name,
        claims=args.claims,
        max_artifact_size=args.max_artifact_size or DEFAULT_MAX_ARTIFACT,
        with_history=args.with_history,
        rtol=args.rtol,
        atol=args.atol,
        progress=_progress(args),
    )
    if args.json:
        _json(report.to_dict())
        return 0
    _out(
        f"wrote {report.path}: {len(report.runs)} run(s), {report.members} files, "
        f"{report.size} bytes"
    )
    for item in report.large:
        _err(
            f"reprokit: not included (over --max-artifact-size): {item['path']} "
            f"({item['size']} bytes, sha256 {item['sha256'][:16]})"
        )
    for item in report.missing:
        _err(
            f"reprokit: {item['path']} (run {item['run']}) changed or vanished since it was "
            "recorded: listed by its sha256, not included (log_artifact(path, copy=True) keeps "
            "a copy in the run)"
        )
    return 0


def _tampered(args: argparse.Namespace, exc: Any, subject: dict[str, Any]) -> int:
    """Report a failed verification (exit 1): one line on stderr, one document with --json."""
    if args.json:
        _json({"schema": 1, **subject, "intact": False, "problem": str(exc), "path": exc.path})
    _err(f"tampered: {exc}")
    return 1


def cmd_verify_archive(args: argparse.Namespace) -> int:

    def narrate(kind: str, data: Any) -> None:
        if args.quiet:
            return
        if kind == "verified":
            _err(f"intact: {data.members} members, {len(data.runs)} run(s) verify")
        elif kind == "venv":
            _err(f"venv: {data}")
        elif kind == "replaying":
            _err(f"replaying {data} ...")

    try:
        report = verify_archive(
            args.ref,
            replay=args.replay,
            venv=args.venv,
            rtol=args.rtol,
            atol=args.atol,
            on_event=narrate,
            jobs=getattr(args, "jobs", 1),
        )
    except TamperedError as exc:
        return _tampered(args, exc, {"archive": args.ref})
    if args.json:
        _json(report.to_dict())
        return 0 if report.ok else 1
    if not args.replay:
        _out(f"intact: {args.ref} ({report.members} members, {len(report.runs)} runs)")
        return 0
    for r in report.replays:
        extra = f" ({r['reason']})" if r.get("reason") else ""
        _out(f"{r['run']}: {r['verdict'].replace('_', ' ')}{extra}")
    good = sum(r["verdict"] in ("identical", "within_tolerance") for r in report.replays)
    _out(f"{good} of {len(report.replays)} runs reproduced")
    return 0 if report.ok else 1


def cmd_verify(args: argparse.Namespace) -> int:
    if getattr(args, "all", False):
        return verifyall.cmd_verify_all(args)
    if args.ref is None:
        raise ReprokitError("name a run or an archive, or pass --all")
    if is_archive(args.ref):
        return cmd_verify_archive(args)
    if args.ref.endswith((".tar.gz", ".tgz", ".zip")) or os.sep in args.ref:
        raise ReprokitError(f"no such archive file: {args.ref}")
    if args.replay or args.venv:
        raise ReprokitError("--replay and --venv apply to archives; for a run use reprokit replay")

    try:
        report = verify(args.ref, store=args.store)
    except TamperedError as exc:
        return _tampered(args, exc, {"run": exc.run_id})
    if args.json:
        _json(report.to_dict())
    else:
        _out(
            f"intact: {report.run_id} ({report.files} files, {report.objects} objects; "
            f"manifest sha256 {report.manifest_sha256[:16]}, ledger head {report.ledger_head[:16]})"
        )
    return 0


# -- replay -------------------------------------------------------------------------------------


def _param_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _fmt_num(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def _describe_output(name: str, result: dict[str, Any]) -> str:
    verdict = result["verdict"].replace("_", " ")
    bits = []
    if "max_abs" in result:
        bits.append(f"max abs {_fmt_num(result['max_abs'])}, max rel {_fmt_num(result['max_rel'])}")
    if result.get("mode") == "summary":
        bits.append("compared by summary statistics")
    if "first_step" in result:
        bits.append(f"first at step {result['first_step']}")
    div = result.get("first_divergence")
    if div:
        text = f"first divergence at #{div['index']} ({div.get('name')})"
        if "max_abs" in div:
            text += f", max abs {_fmt_num(div['max_abs'])}"
        bits.append(text)
    if "recorded_sha256" in result:
        bits.append(
            f"sha256 {str(result['recorded_sha256'])[:12]} -> {str(result['replayed_sha256'])[:12]}"
        )
    if "recorded" in result and "replayed" in result and name == "exit_code":
        bits.append(f"{result['recorded']} -> {result['replayed']}")
    if result.get("detail"):
        bits.append(str(result["detail"]))
    return f"  {name:<28} {verdict:<16} {'; '.join(bits)}".rstrip()


def _print_drift(drift: dict[str, Any]) -> None:
    if not drift:
        _err("drift: none (same python, packages, hardware and numerics variables)")
        return
    _err("drift (a warning, not a failure):")
    if "python" in drift:
        _err(f"  python {drift['python']['recorded']} -> {drift['python']['now']}")
    for p in (drift.get("packages") or [])[:20]:
        mark = " (imported)" if p.get("imported") else ""
        _err(f"  package {p['name']}: {p['recorded'] or '-'} -> {p['now'] or '-'}{mark}")
    if len(drift.get("packages") or []) > 20:
        _err(f"  ... {len(drift['packages']) - 20} more packages")
    for item in drift.get("hardware") or []:
        _err(f"  hardware {item['key']}: {_short(item['a'])} -> {_short(item['b'])}")
    for item in drift.get("variables") or []:
        _err(f"  variable {item['key']}: {_short(item['a'])} -> {_short(item['b'])}")


def cmd_replay(args: argparse.Namespace) -> int:
    if many.wanted(args):
        return many.cmd_replay_many(args)
    if getattr(args, "refs", None):
        args.ref = args.refs[0]
    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ReprokitError(f"--param expects NAME=VALUE, got {item!r}")
        params[key] = _param_value(value)

    seen_drift: list[str] = []

    def narrate(kind: str, data: Any) -> None:
        if args.quiet:
            return
        if kind == "source":
            if data.get("mode") == "in-place":
                differs = data.get("differs")
                _err(f"source: the current tree in {data['path']} (--in-place)")
                if isinstance(differs, list) and differs:
                    _err(f"  differs from the recorded tree in {len(differs)} file(s):")
                    for d in differs[:20]:
                        _err(f"    {d['change']} {d['path']}")
                elif isinstance(differs, list):
                    _err("  identical to the recorded tree")
                else:
                    _err(f"  {differs}")
            else:
                what = data.get("tree") or data.get("digest")
                _err(f"source: rebuilt from the {data['mode']} ({what}), digest verified")
                if data.get("path"):
                    _err(f"  kept in {data['path']}")
        elif kind == "drift":
            seen_drift.extend(item["key"] for item in data.get("hardware") or [])
            _print_drift(data)
        elif kind == "running":
            _err(f"running in {data['cwd']}")

    report = replay(
        args.ref,
        store=args.store,
        rtol=args.rtol,
        atol=args.atol,
        in_place=args.in_place,
        keep=args.keep,
        params=params,
        on_event=narrate,
    )
    late = [d for d in report.drift.get("hardware") or [] if d["key"] not in seen_drift]
    if late and not args.quiet:
        # torch and BLAS are described only by a process that imported them: the re-executed
        # run's record, so this part of the drift is known only after it ran.
        _err("drift seen by the re-executed run:")
        for item in late:
            _err(f"  hardware {item['key']}: {_short(item['a'])} -> {_short(item['b'])}")
    code = 0 if report.identical else 1
    if args.json:
        _json(report.to_dict())
        return code
    label = report.verdict.replace("_", " ")
    _out(f"verdict: {label} (run {report.run_id}, replay {report.replay_id})")
    for run in report.runs:
        if len(report.runs) > 1:
            _out(f" run {run['recorded']} -> {run['replayed']}: {run['verdict']}")
        for name, result in run.get("outputs", {}).items():
            _out(_describe_output(name, result))
    if report.causes:
        _out("likely causes, most likely first:")
        for i, cause in enumerate(report.causes, 1):
            _out(f"  {i}. {cause}")
    return code


# -- check and seeds ----------------------------------------------------------------------------


def _split_command(args: argparse.Namespace) -> tuple[str | None, list[str] | None]:
    command = getattr(args, "command_argv", None)
    if command is not None:
        if args.ref is not None:
            raise ReprokitError("check takes a run or a command after --, not both")
        return None, command
    if args.ref is None:
        raise ReprokitError("check needs a run (reprokit check REF) or a command after --")
    return args.ref, None


def cmd_check(args: argparse.Namespace) -> int:
    ref, command = _split_command(args)
    report = check(
        ref, command=command, n=args.n, outputs=args.output, seed=args.seed, store=args.store
    )
    code = 0 if report.deterministic else 1
    if args.json:
        _json(report.to_dict())
        return code
    verdict = "deterministic" if report.deterministic else "NOT deterministic"
    _out(f"{verdict}: {report.n} executions of {report.target} with seed {report.seed}")
    for name, result in report.outputs.items():
        shown = dict(result)
        if shown["verdict"] == "identical":
            shown["verdict"] = "agree"
        _out(_describe_output(name, shown))
    if report.first_divergence:
        d = report.first_divergence
        _out(f"first divergence: checkpoint #{d['index']} ({d.get('name')}) of {d.get('run')}")
    if report.suspects:
        _out("suspects, most likely first:")
        for i, cause in enumerate(report.suspects, 1):
            _out(f"  {i}. {cause}")
    return code


def _fmt_ci(ci: Any) -> str:
    return "-" if not ci else f"[{ci[0]:.6g}, {ci[1]:.6g}]"


def cmd_seeds(args: argparse.Namespace) -> int:
    seed_list = parse_seeds(args.seeds) if args.seeds else None
    report = seeds(args.ref, n=args.n, seed_list=seed_list, claims=args.claim, store=args.store)
    code = 0 if report.robust else 1
    if args.json:
        _json(report.to_dict())
        return code
    _out(f"{report.target} under {len(report.seeds)} seeds (group {report.group})")
    header = ("RESULT", "MEAN", "STD", "MIN", "MAX", "95% CI", "CV")
    rows = [header]
    for name, s in report.results.items():
        rows.append(
            (
                name,
                f"{s.get('mean', float('nan')):.6g}",
                "-" if s.get("std") is None else f"{s['std']:.3g}",
                f"{s.get('min', float('nan')):.6g}",
                f"{s.get('max', float('nan')):.6g}",
                _fmt_ci(s.get("ci95")),
                "-" if s.get("cv") is None else f"{s['cv']:.3g}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        _out("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for claim, j in report.claims.items():
        note = "; spread larger than the margin" if j["spread_exceeds_margin"] else ""
        _out(
            f"claim {claim}: {j['verdict']} ({j['seeds_failing']} of {len(report.seeds)} seeds "
            f"fail; 95% CI {'holds' if j['ci_holds'] else 'does not hold'}{note})"
        )
    return code


# -- run -----------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise ReprokitError(
            "nothing to run: give a command after --, e.g. reprokit run -- python train.py"
        )
    result = record_command(
        command,
        name=args.name,
        seed=args.seed,
        deterministic=args.deterministic,
        store=args.store,
        outputs=args.output,
        # With --json, stdout carries our one document: the command's output goes to stderr.
        stdout=sys.stderr if args.json else None,
    )
    for message in result.warnings:
        _err(message)
    code, status = result.exit_code, result.status
    if args.json:
        _json({"schema": 1, "run": result.run_id, "status": status, "exit_code": code})
    elif not args.quiet and result.run_id:
        _err(f"reprokit: recorded run {result.run_id} ({status}, exit code {code})")
    if code < 0 and -code in (signal.SIGINT, signal.SIGTERM):
        # The child died of a signal: so do we, as a shell expects of a wrapper.
        sys.stdout.flush()
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return 128 - code if code < 0 else code


# -- demo ----------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    if shutil.which("git") is None:
        raise ReprokitError("the demo needs git, which is not on PATH")
    folder = Path(tempfile.mkdtemp(prefix="reprokit-demo-"))
    shutil.copyfile(templates_dir() / "demo" / "train.py", folder / "train.py")
    env_id = {
        "GIT_AUTHOR_NAME": "demo",
        "GIT_AUTHOR_EMAIL": "demo@example.com",
        "GIT_COMMITTER_NAME": "demo",
        "GIT_COMMITTER_EMAIL": "demo@example.com",
    }
    try:
        git(["init", "-q"], folder)
        git(["add", "train.py"], folder)
        git(
            ["commit", "-q", "-m", "demo: a tiny training loop"],
            folder,
            env={**os.environ, **env_id},
        )
    except GitError as exc:
        raise ReprokitError(f"could not set up the demo repository: {exc}") from None
    # An uncommitted change: the manifest must capture it exactly.
    text = (folder / "train.py").read_text().replace("lr: float = 0.05", "lr: float = 0.1")
    (folder / "train.py").write_text(text)
    _err(f"reprokit demo: example repository in {folder}")
    _err("reprokit demo: running `python train.py` (one tracked call of train())")
    env = {k: v for k, v in os.environ.items() if k != "REPROKIT_STORE"}
    proc = subprocess.run(
        [sys.executable, "train.py"], cwd=folder, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise ReprokitError(
            f"the demo training script failed: {proc.stderr.strip().splitlines()[-1:]}"
        )
    _err(f"reprokit demo: train() returned {proc.stdout.strip()}")
    store = str(folder / ".reprokit")
    ns = argparse.Namespace(
        store=store, json=False, yaml=False, ref="latest", replay=False, venv=False, quiet=False
    )
    if args.json:
        cwd = os.getcwd()
        try:
            os.chdir(folder)
            report = replay("latest", store=store)
        finally:
            os.chdir(cwd)
        _json({"schema": 1, "folder": str(folder), "replay": report.to_dict()})
        return 0 if report.identical else 1
    cmd_show(ns)
    _out("")
    cmd_verify(ns)
    _out("")
    _err("reprokit demo: replaying it from the recorded source (`reprokit replay latest`)")
    cwd = os.getcwd()
    try:
        os.chdir(folder)
        replay_ns = argparse.Namespace(
            store=store, ref="latest", rtol=0.0, atol=0.0, in_place=False, keep=False,
            param=[], json=False, quiet=args.quiet,
        )  # fmt: skip
        code = cmd_replay(replay_ns)
    finally:
        os.chdir(cwd)
    _err(f"reprokit demo: look around with `cd {folder} && reprokit ls`")
    return code


# -- wiring --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store",
        help="store folder or remote store URL (s3://BUCKET/PREFIX) (default: $REPROKIT_STORE, "
        "else .reprokit at the git repository root or in the current folder)",
    )
    common.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    common.add_argument("-q", "--quiet", action="store_true", help="no narration on stderr")

    parser = argparse.ArgumentParser(
        prog="reprokit",
        parents=[common],
        description="Record ML runs as immutable, tamper-evident manifests; check them later.",
    )
    parser.add_argument("--version", action="version", version=f"reprokit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("ls", parents=[common], help="list runs, newest first")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("show", parents=[common], help="show one run's manifest")
    p.add_argument("ref", help="run id, unique prefix or suffix, or 'latest'")
    p.add_argument("--json", action="store_true", help="the whole manifest as JSON")
    p.add_argument("--yaml", action="store_true", help="the manifest file as written")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("diff", parents=[common], help="what differs between two runs")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser(
        "verify",
        parents=[common],
        help="check a run or an archive against its digests (exit 1 if tampered)",
    )
    p.add_argument("ref", nargs="?", help="a run, or an archive file (.tar.gz, .zip)")
    p.add_argument("--all", action="store_true", help="every sealed run of the store")
    p.add_argument("--replay", action="store_true", help="archives: replay every run too")
    p.add_argument(
        "-j", "--jobs", type=int, default=1, metavar="N", help="archives: replays at once"
    )
    p.add_argument(
        "--venv",
        action="store_true",
        help="archives: replay inside a fresh virtualenv built from requirements.lock",
    )
    p.add_argument("--rtol", type=float, default=0.0)
    p.add_argument("--atol", type=float, default=0.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "archive",
        parents=[common],
        help="pack runs, source, environment and outputs into one file for a paper",
    )
    p.add_argument("refs", nargs="*", metavar="REF")
    p.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="the archive: .tar.gz or .zip"
    )
    p.add_argument("--all", action="store_true", help="every sealed run of the store")
    p.add_argument("--name", help="the archive's top folder name")
    p.add_argument("--claims", metavar="YAML", help="map paper claims to runs (REPRODUCE.md)")
    p.add_argument(
        "--max-artifact-size",
        type=int,
        metavar="BYTES",
        help="copy artifacts up to this size (default 100 MB); list larger ones",
    )
    p.add_argument("--with-history", action="store_true", help="add a git bundle of the commits")
    p.add_argument("--rtol", type=float, default=0.0, help="tolerance stated in REPRODUCE.md")
    p.add_argument("--atol", type=float, default=0.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_archive)

    p = sub.add_parser(
        "replay",
        parents=[common],
        help="re-execute a run from its recorded source and compare (exit 1 if it differs)",
    )
    p.add_argument("refs", nargs="*", metavar="REF", help="one run, or several (see -j)")
    many.add_options(p)
    p.add_argument("--rtol", type=float, default=0.0, help="relative tolerance for numbers")
    p.add_argument("--atol", type=float, default=0.0, help="absolute tolerance for numbers")
    p.add_argument("--in-place", action="store_true", help="run the current tree instead")
    p.add_argument("--keep", action="store_true", help="keep the rebuilt tree and say where")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="supply a param again (e.g. one redacted when recorded)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser(
        "check",
        parents=[common],
        help="determinism audit: execute a run or command N times with the same seed (exit 1 "
        "if they disagree)",
    )
    p.add_argument("ref", nargs="?", help="a run, or -- followed by a command")
    p.add_argument("-n", type=int, default=2, help="executions (default 2)")
    p.add_argument("--seed", type=int, help="seed for a command (default: drawn)")
    p.add_argument(
        "--output",
        action="append",
        default=[],
        metavar="PATH",
        help="a file or folder the command writes, compared between executions",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "seeds",
        parents=[common],
        help="seed robustness: re-execute a run under N seeds and summarise each result",
    )
    p.add_argument("ref")
    p.add_argument("-n", type=int, default=None, help="number of seeds, 0..N-1 (default 10)")
    p.add_argument("--seeds", help="explicit seeds: 0-9 or 1,5,9")
    p.add_argument(
        "--claim",
        action="append",
        default=[],
        metavar="NAME>=VALUE",
        help="a result you claim; exit 1 if the seeds do not support it",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_seeds)

    p = sub.add_parser("run", parents=[common], help="record any command as a run: run -- CMD ...")
    p.add_argument("--name", help="run name (default: the command's name)")
    p.add_argument(
        "--seed",
        type=int,
        help="seed (default: drawn); the child gets "
        "PYTHONHASHSEED and REPROKIT_SEED set to it unless already set",
    )
    p.add_argument("--deterministic", action="store_true", help="ask for deterministic mode")
    p.add_argument(
        "--output",
        action="append",
        default=[],
        metavar="PATH",
        help="a file or folder the command writes, hashed when it ends (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="one JSON document: run id, status, exit")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "demo",
        parents=[common],
        help="record a small example run in a temporary repository, show and replay it",
    )
    p.add_argument("--json", action="store_true", help="one JSON document: the replay report")
    p.set_defaults(func=cmd_demo)
    remote.register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    command_argv = None
    if "check" in argv and "--" in argv and argv.index("check") < argv.index("--"):
        # `check -- CMD ...`: everything after -- is the command, whatever it looks like.
        cut = argv.index("--")
        argv, command_argv = argv[:cut], argv[cut + 1 :]
    args = parser.parse_args(argv)
    if command_argv is not None:
        args.command_argv = command_argv
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except ReprokitError as exc:
        if args.debug:
            import traceback

            traceback.print_exc()
        _err(f"reprokit: error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _err("reprokit: interrupted")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if args.debug:
            import traceback

            traceback.print_exc()
        _err(
            f"reprokit: internal error: {type(exc).__name__}: {exc} "
            "(rerun with --debug for the traceback)"
        )
        return 3
