"""CLI commands about stored runs: ls, show, diff, verify, archive."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any

from reprokit._cli import verifyall
from reprokit._cli.output import (
    Bar,
    FileProgress,
    change,
    duration,
    emit_json,
    err,
    out,
    parser_for,
    print_drift,
    short,
    short_commit,
    store_of,
    tampered,
)
from reprokit._cli.replay import print_replay
from reprokit._model.errors import ManifestError, ReprokitError, TamperedError
from reprokit._model.manifest import Manifest, made_by_reprokit
from reprokit._model.yaml import dump as dump_yaml
from reprokit._store.query import RunQuery
from reprokit._store.store import Store
from reprokit._verbs.archive import (
    DEFAULT_MAX_ARTIFACT,
    ArchiveVerifyReport,
    archive,
    is_archive,
    verify_archive,
)
from reprokit._verbs.archive_inputs import DEFAULT_MAX_INPUT
from reprokit._verbs.compare import compare
from reprokit._verbs.diff import diff
from reprokit._verbs.verify import VerifyReport, verify_run, verify_store


def _note(row: dict[str, Any]) -> str:
    """What a run is when the tool made it: a replay, a seed sweep member, a nested call; and
    how many ranks a distributed run has."""
    ranks = row.get("ranks")
    if ranks:
        text = f"{len(ranks['sealed'])}/{ranks['world_size']} ranks"
        if ranks["missing"]:
            text += " (missing rank " + ", ".join(str(r) for r in ranks["missing"]) + ")"
        if ranks["absent"]:
            text += " (no record from rank " + ", ".join(str(r) for r in ranks["absent"]) + ")"
        rest = _note(dict(row, ranks=None))
        return f"{text}; {rest}" if rest else text
    if row.get("kind") == "replay":
        return f"verdict of replaying {str(row.get('replay_of') or '')[-6:]}"
    if row.get("replay_of"):
        return f"re-execution of {row['replay_of'][-6:]}"
    if row.get("group"):
        return str(row["group"])
    if row.get("parent"):
        return f"inside {row['parent'][-6:]}"
    return ""


def _ledger_digests(store: Any) -> dict[str, str] | None:
    """{run id: manifest sha256} the ledgers vouch for (this store's, and for a remote store the
    remote's as last read); None when a ledger is unreadable."""
    try:
        st = Store.at(store)
        entries = st.ledger_entries() + st.remote_ledger_entries()
        return {rid: digest for _, rid, digest, _ in entries}
    except (TamperedError, OSError):
        return None


def _looks_corrupt(entry: Any, vouched: dict[str, str] | None) -> bool:
    """A sealed manifest ``ls`` must not show as a run: not the one the ledger vouches for, not
    this folder's run, or with fields of the wrong type."""
    import hashlib

    m = entry.manifest
    run, code = m.run, m.code
    if m.id != entry.id or not isinstance(run.get("status"), str):
        return True
    for key in ("name", "started"):
        if run.get(key) is not None and not isinstance(run.get(key), str):
            return True
    if code.get("commit") is not None and not isinstance(code.get("commit"), str):
        return True
    if run.get("duration_s") is not None and not isinstance(run.get("duration_s"), (int, float)):
        return True
    if vouched is not None:
        try:
            raw = (entry.path / "manifest.yaml").read_bytes()
        except OSError:
            return True
        if entry.id not in vouched:  # sealed since the ledger was read?
            vouched.update(_ledger_digests(entry.path.parent.parent) or {})
        if vouched.get(entry.id) != hashlib.sha256(raw).hexdigest():
            return True
    return False


def cmd_ls(args: argparse.Namespace) -> int:
    query = RunQuery.parse(
        name=args.name,
        status=args.status,
        tags=args.tag,
        params=args.param,
        metrics=args.metric,
        since=args.since,
        until=args.until,
        limit=args.n,
        everything=args.all,
    )
    with_all = dataclasses.replace(query, everything=True)
    rows: list[dict[str, Any]] = []
    hidden = 0
    store = store_of(args)
    vouched = _ledger_digests(store)
    for entry in store.entries(head=not query.needs_full):
        if query.limit is not None and len(rows) >= query.limit:
            break
        m = entry.manifest
        if m is not None and _looks_corrupt(entry, vouched):
            entry.state, m = "corrupt", None
        if m is None:
            if query.matches(None, entry.state):
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
        ranks = store.ranks_of(m)
        if ranks is not None:
            ranks = {k: v for k, v in ranks.items() if k != "shards"}
        status = ranks["status"] if ranks else run.get("status")
        if not query.matches(m, status):
            # Said on stderr: how many runs --all would add to this listing.
            hidden += bool(
                not query.everything and made_by_reprokit(run) and with_all.matches(m, status)
            )
            continue
        rows.append(
            {
                "id": m.id,
                "name": run.get("name"),
                "status": status,
                "ranks": ranks,
                "started": run.get("started"),
                "commit": code.get("commit"),
                "dirty": code.get("dirty"),
                "duration_s": run.get("duration_s"),
                "parent": run.get("parent"),
                "replay_of": run.get("replay_of"),
                "group": run.get("group"),
                "kind": (run.get("entry") or {}).get("kind"),
                "tags": list(run.get("tags") or []),
                "note": run.get("note"),
            }
        )
    if args.json:
        emit_json({"schema": 1, "runs": rows})
        return 0
    if not rows:
        filtered = query != RunQuery(everything=query.everything)
        what = "no runs match the filters" if filtered or hidden else "no runs"
        err(f"{what} in {store_of(args).root}")
    else:
        _print_runs(rows)
    if hidden and not args.quiet:
        err(f"({hidden} run(s) reprokit made itself not shown: --all shows them)")
    return 0


def _print_runs(rows: list[dict[str, Any]]) -> None:
    with_tags = any(r.get("tags") for r in rows)
    head = ("ID", "NAME", "STATUS", "STARTED", "COMMIT", "DURATION")
    table = [(*head, *(("TAGS",) if with_tags else ()), "NOTE")]
    for r in rows:
        code = {"commit": r["commit"], "dirty": r["dirty"]} if r["commit"] or r["dirty"] else None
        started = (r["started"] or "-")[:19].replace("T", " ")
        notes = [n for n in (short(r.get("note") or "", 40), _note(r)) if n]
        table.append(
            (
                r["id"],
                r["name"] or "-",
                r["status"],
                started,
                short_commit(code) if code else "-",
                duration(r["duration_s"]),
                *((",".join(r.get("tags") or []) or "-",) if with_tags else ()),
                "; ".join(notes),
            )
        )
    widths = [max(len(str(row[i])) for row in table) for i in range(len(table[0]))]
    for row in table:
        out("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def cmd_show(args: argparse.Namespace) -> int:
    store = store_of(args)
    m = store.load(args.ref)
    entry = store.entry(store.resolve(args.ref), head=False)
    if entry.manifest is not None and _looks_corrupt(entry, _ledger_digests(store)):
        raise ManifestError(
            f"run {entry.id} is corrupt: its manifest is not the one sealed in the ledger, or "
            f"holds fields of the wrong type (reprokit verify {entry.id} says more)"
        )
    if args.json:
        emit_json(m.to_dict())
        return 0
    if args.yaml:
        out((store.runs / m.id / "manifest.yaml").read_text("utf-8"))
        return 0
    print_manifest(m, store)
    return 0


def print_manifest(m: Manifest, store: Store) -> None:
    """One run's manifest, readable: the run, its code and seed, params and outputs."""
    run, code = m.run, m.code
    lines = [
        f"run       {m.id}  ({run.get('name') or '-'})",
        f"status    {run.get('status')}",
        f"started   {run.get('started')}   duration {duration(run.get('duration_s'))}",
        f"entry     {_entry_text(run.get('entry') or {})}",
        f"code      {short_commit(code)}  branch {code.get('branch') or '-'}  "
        f"digest {code.get('digest', '-')}",
        f"seed      {m.seeds.get('seed')}  replayable {run.get('replayable')}",
    ]
    if run.get("parent"):
        lines.append(f"parent    {run['parent']}")
    if run.get("tags"):
        lines.append(f"tags      {', '.join(str(t) for t in run['tags'])}")
    if run.get("note"):
        lines.append(f"note      {run['note']}")
    console = m.outputs.get("console")
    if isinstance(console, dict):
        cut = f"; {console['truncated']}" if console.get("truncated") else ""
        lines.append(
            f"console   {console.get('file')} in the run folder ({console.get('bytes')} bytes "
            f"of output{cut}): {store.folder_of(m) / str(console.get('file'))}"
        )
    lines.extend(_rank_lines(m, store))
    if run.get("error"):
        error = run["error"]
        lines.append(f"error     {error.get('type')}: {error.get('message')}")
    for reason in run.get("not_replayable_because") or []:
        lines.append(f"not replayable: {reason}")
    out("\n".join(lines))
    for title, value in (("params", m.params), ("outputs", m.outputs)):
        if value:
            out(f"\n{title}:")
            out("".join(f"  {line}\n" for line in dump_yaml(dict(value)).splitlines()))


def _rank_lines(m: Manifest, store: Store) -> list[str]:
    """A distributed run's ranks: how many sealed, and each rank's status and host."""
    ranks = store.ranks_of(m)
    if ranks is None:
        return []
    run = m.run
    group = run.get("ranks") or {}
    lines = [
        f"ranks     {len(ranks['sealed'])} of {ranks['world_size']} recorded "
        f"({group.get('launcher')}, job {group.get('job')}"
        + (f", backend {group['backend']}" if group.get("backend") else "")
        + f"); status of the whole run: {ranks['status']}"
    ]
    mine = run.get("rank") or {}
    lines.append(f"  rank 0    {run.get('status')}  host {mine.get('host')}  pid {run.get('pid')}")
    by_rank = {int(s.id.rsplit("-", 1)[1]): s for s in ranks["shards"]}
    for r in range(1, ranks["world_size"]):
        shard = by_rank.get(r)
        if shard is None or shard.manifest is None:
            state = shard.state if shard is not None else "no record (not called there?)"
            lines.append(f"  rank {r:<4} {state}")
            continue
        srun = shard.manifest.run
        host = (srun.get("rank") or {}).get("host")
        lines.append(f"  rank {r:<4} {srun.get('status')}  host {host}  pid {srun.get('pid')}")
    return lines


def _entry_text(entry: dict) -> str:
    if entry.get("kind") == "function":
        return f"{entry.get('module')}.{entry.get('qualname')}"
    if entry.get("kind") == "notebook":
        cells = entry.get("cells") or []
        return f"notebook {entry.get('notebook') or '(file unknown)'}, {len(cells)} cells"
    argv = entry.get("argv") or []
    return " ".join(str(a) for a in argv)


def cmd_compare(args: argparse.Namespace) -> int:
    report = compare(args.refs, store=args.store)
    if args.json:
        emit_json(report.to_dict())
        return 0
    if args.csv:
        import csv
        import sys

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["section", "key", *report.runs, "differs"])
        for row in report.rows:
            cells = ["" if v is None else _cell(v) for v in row["values"]]
            writer.writerow([row["section"], row["key"], *cells, int(row["differs"])])
        return 0
    table = [("", "", *report.runs)]
    for row in report.rows:
        mark = "*" if row["differs"] else ""
        cells = ["-" if v is None else short(_cell(v), 30) for v in row["values"]]
        table.append((mark, f"{row['section']} {row['key']}", *cells))
    widths = [max(len(str(r[i])) for r in table) for i in range(len(table[0]))]
    for r in table:
        out("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if not args.quiet:
        err(f"{len(report.differing)} of {len(report.rows)} rows differ (marked *)")
    return 0


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return value if isinstance(value, str) else json.dumps(value, default=str)


def cmd_diff(args: argparse.Namespace) -> int:
    report = diff(args.a, args.b, store=args.store)
    if args.json:
        emit_json(report.to_dict())
        return 0
    out(f"--- {report.a}\n+++ {report.b}")
    for section, content in report.sections.items():
        if not content:
            out(f"{section}: same")
            continue
        out(f"{section}:")
        if isinstance(content, list):
            for item in content:
                out(f"  {item['key']}: {change(item['a'], item['b'])}")
        elif section == "packages":
            for item in content.get("added", []):
                out(f"  + {item['name']} {item['version']}")
            for item in content.get("removed", []):
                out(f"  - {item['name']} {item['version']}")
            for item in content.get("changed", []):
                out(f"  ~ {item['name']} {item['a']} -> {item['b']}")
        elif section == "code":
            for item in content.get("fields", []):
                out(f"  {item['key']}: {short(item['a'])} -> {short(item['b'])}")
            files = content.get("files")
            if isinstance(files, list):
                for f in files:
                    out(f"  {f['change']:>9}  {f['path']}")
            elif files:
                out(f"  files: {files}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    if args.all or args.head:
        if args.ref:
            raise ReprokitError("--all and --head check the whole store: give no run")
        if args.all and not args.head and store_of(args).remote is not None:
            # A remote store's runs are vouched for by the remote's ledger: run by run.
            return verifyall.cmd_verify_all(args)
        try:
            whole = verify_store(args.store, head=args.head)
        except TamperedError as exc:
            return tampered(args, exc, {"store": str(args.store or "")})
        if args.json:
            emit_json(whole.to_dict())
            return 0
        checked = f"; published head {whole.head_checked} found" if whole.head_checked else ""
        out(
            f"intact: store {whole.store}: {whole.runs} sealed run(s), all present and "
            f"verified; ledger {whole.ledger_lines} lines, head {whole.ledger_head}{checked}"
        )
        if whole.unsealed and not args.quiet:
            err(f"not sealed (running or killed): {len(whole.unsealed)} run folder(s)")
        return 0
    if not args.ref:
        raise ReprokitError("verify needs a run, an archive file, or --all")
    if is_archive(args.ref):
        return cmd_verify_archive(args)
    if args.ref.endswith((".tar.gz", ".tgz", ".zip")) or os.sep in args.ref:
        raise ReprokitError(f"no such archive file: {args.ref}")
    if args.replay or args.venv or args.allowed_signers or args.no_sandbox or args.trust:
        raise ReprokitError(
            "--replay, --venv, --allowed-signers, --no-sandbox and --trust apply to archives; "
            "for a run use reprokit replay"
        )

    try:
        report = verify_run(args.ref, store=args.store)
    except TamperedError as exc:
        return tampered(args, exc, {"run": exc.run_id})
    if args.json:
        emit_json(report.to_dict())
    else:
        print_verified(report)
    return 0


def cmd_verify_archive(args: argparse.Namespace) -> int:
    bar = Bar(args, f"verifying {os.path.basename(args.ref)}")

    def narrate(kind: str, data: Any) -> None:
        nonlocal bar
        if kind == "verified":
            bar.close()
            if args.replay:
                bar = Bar(args, "replaying", total=len(data.runs), unit="run")
        elif kind == "replayed":
            bar.update(1)
        if args.quiet:
            return
        if kind == "verified":
            err(f"intact: {data.members} members, {len(data.runs)} run(s) verify")
        elif kind == "venv":
            err(f"venv: {data}")
        elif kind == "sandbox":
            err(f"sandbox: {data}")
        elif kind == "note":
            err(f"note: {data}")
        elif kind == "replaying":
            err(f"replaying {data} ...")
            if not str(data).endswith("at once"):
                bar.pause()  # the replayed program owns the terminal

    try:
        report = verify_archive(
            args.ref,
            replay=args.replay,
            venv=args.venv,
            rtol=args.rtol,
            atol=args.atol,
            on_event=narrate,
            data_root=args.data_root,
            allowed_signers=args.allowed_signers,
            sandbox=not args.no_sandbox,
            trust=args.trust,
            jobs=getattr(args, "jobs", 1) or 1,
        )
    except TamperedError as exc:
        return tampered(args, exc, {"archive": args.ref})
    finally:
        bar.close()
    code = _archive_code(report)
    if args.json:
        emit_json(report.to_dict())
        return code
    signed = f"; signed by {report.signed_by}" if report.signed_by else ""
    if not args.replay:
        out(f"intact: {args.ref} ({report.members} members, {len(report.runs)} runs{signed})")
        out(f"sha256 {report.sha256}  (compare with the digest the paper cites)")
        return 0
    out(f"sha256 {report.sha256}{signed}")
    for r in report.replays:
        extra = f" ({r['reason']})" if r.get("reason") else ""
        out(f"{r['run']}: {r['verdict'].replace('_', ' ')}{extra}")
        replayed = r.get("report")
        if replayed is not None:  # the same report replay prints, run by run
            if not args.quiet:
                print_drift(replayed.drift)
            seen = [item["key"] for item in replayed.drift.get("hardware") or []]
            print_replay(replayed, seen, args.quiet)
    good = sum(r["verdict"] in ("identical", "within_tolerance") for r in report.replays)
    out(f"{good} of {len(report.replays)} runs reproduced")
    return code


def _archive_code(report: ArchiveVerifyReport) -> int:
    """0 every run reproduced; 1 some run differs (or the archive is not intact); 2 none
    differs but some could not be replayed or judged (an input missing, an undetermined
    comparison): "could not tell" is not a verdict of difference."""

    def in_doubt(r: dict[str, Any]) -> bool:  # the replay wrote (or tried) into its inputs
        return r.get("report") is not None and bool(r["report"].inputs_problem)

    if report.ok and not any(in_doubt(r) for r in report.replays):
        return 0
    verdicts = {r["verdict"] for r in report.replays if not in_doubt(r)}
    undecided = verdicts <= {"identical", "within_tolerance", "undetermined", "not replayable"}
    return 2 if report.intact and undecided else 1


def cmd_archive(args: argparse.Namespace) -> int:
    packing = FileProgress(args)
    try:
        with Bar(args, f"archiving to {os.path.basename(args.output)}", unit="file"):
            report = _archive(args, packing)
    finally:
        packing.close()
    return _archive_done(args, report)


def _archive(args: argparse.Namespace, packing: FileProgress) -> Any:
    return archive(
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
        progress=packing,
        with_inputs=args.with_inputs,
        max_input_size=args.max_input_size or DEFAULT_MAX_INPUT,
        sign=args.sign,
    )


def _archive_done(args: argparse.Namespace, report: Any) -> int:
    if args.json:
        emit_json(report.to_dict())
        return 0
    out(
        f"wrote {report.path}: {len(report.runs)} run(s), {report.members} files, "
        f"{report.size} bytes"
    )
    out(f"sha256 {report.sha256}  (the root digest: cite it to pin this archive)")
    if report.signature:
        out(f"signed: {report.signature}")
    if report.wheel is None:
        err(f"reprokit: the archive carries no reprokit wheel: {report.wheel_note}")
    for item in report.large:
        err(
            f"reprokit: not included (over --max-artifact-size): {item['path']} "
            f"({item['size']} bytes, sha256 {item['sha256'][:16]})"
        )
    for item in report.missing:
        err(
            f"reprokit: {item['path']} (run {item['run']}) changed or vanished since it was "
            "recorded: listed by its sha256, not included (log_artifact(path, copy=True) keeps "
            "a copy in the run)"
        )
    left = [r for r in report.inputs if not r["included"]]
    if left and not args.quiet:
        err(f"reprokit: {len(left)} input(s) not included; REPRODUCE.md lists what to fetch:")
        for row in left[:10]:
            err(f"  {row['path']} ({row['why']})")
    return 0


def print_verified(report: VerifyReport) -> None:
    out(
        f"intact: {report.run_id} ({report.files} files, {report.objects} objects; "
        f"manifest sha256 {report.manifest_sha256[:16]}, ledger head {report.ledger_head[:16]})"
    )


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = parser_for(
        sub, common, "ls", "list runs, newest first",
        "List the store's runs, newest first: id, name, status, start, commit, duration, "
        "tags and notes. Filters compose; the runs reprokit made itself (replays, audit "
        "executions, seed sweeps) are listed only with --all.",
        "reprokit ls\nreprokit ls --name train --param lr=0.1 --metric 'loss<0.5' -n 5\n"
        "reprokit ls --tag baseline --since 2d --status completed\nreprokit ls --all --json",
    )  # fmt: skip
    p.add_argument("--name", help="only runs of this name")
    p.add_argument(
        "--status", help="only runs with this status (completed, failed, interrupted, ...)"
    )
    p.add_argument(
        "--tag", action="append", default=[], metavar="T", help="only runs tagged T (repeatable)"
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="K=V",
        help="only runs whose param K equals V, compared typed (lr=0.1 matches the float "
        "0.1; opt.lr for nested params) (repeatable)",
    )
    p.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="'K<V'",
        help="only runs whose metric K's last value satisfies the comparison (<, <=, >, >=, "
        "==) (repeatable)",
    )
    p.add_argument(
        "--since", metavar="WHEN", help="started at or after: 2026-11-27, an ISO time (UTC), 2h"
    )
    p.add_argument("--until", metavar="WHEN", help="started before (a date: before its end)")
    p.add_argument("-n", type=int, metavar="N", help="the newest N runs that match")
    p.add_argument(
        "--all",
        action="store_true",
        help="also the runs reprokit made itself (replays, audit executions, seed sweeps)",
    )
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(func=cmd_ls)

    p = parser_for(
        sub, common, "show", "show one run's manifest",
        "Show one run's manifest: the run, its code, seed, params and outputs.",
        "reprokit show latest\nreprokit show 20261127-1201 --json",
    )  # fmt: skip
    p.add_argument("ref", help="run id, unique prefix or suffix, or 'latest'")
    p.add_argument("--json", action="store_true", help="the whole manifest as JSON")
    p.add_argument("--yaml", action="store_true", help="the manifest file as written")
    p.set_defaults(func=cmd_show)

    p = parser_for(
        sub, common, "compare", "several runs side by side: params, results, verdicts",
        "Show two or more runs side by side: name, status, commit and seed; every param; each "
        "metric's last value and the return value's numbers; the replay verdicts recorded "
        "for them. Rows whose values differ are marked *.",
        "reprokit compare train@1 train@2 train@3\nreprokit compare a3f1 b7c2 --csv > runs.csv",
    )  # fmt: skip
    p.add_argument("refs", nargs="+", metavar="REF", help="the runs (two or more)")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="one JSON document on stdout")
    shape.add_argument("--csv", action="store_true", help="CSV on stdout: one row per value")
    p.set_defaults(func=cmd_compare)

    p = parser_for(
        sub, common, "diff", "what differs between two runs",
        "What differs between two runs: code (file by file), params, seeds, packages, "
        "environment, hardware and outputs.",
        "reprokit diff a3f1 b7c2",
    )  # fmt: skip
    p.add_argument("a", help="the first run")
    p.add_argument("b", help="the second run")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(func=cmd_diff)

    p = parser_for(
        sub, common, "verify", "check a run or an archive against its digests (exit 1 if tampered)",
        "Check that a sealed run (or every run in an archive file) still matches its digests; "
        "with --replay, also replay every run of an archive. Exit 1 if anything was tampered "
        "with.",
        "reprokit verify latest\nreprokit verify paper.tar.gz --replay\n"
        "reprokit verify --all --head 8e514da0eba4544c",
    )  # fmt: skip
    p.add_argument("ref", nargs="?", help="a run, or an archive file (.tar.gz, .zip)")
    p.add_argument(
        "--all",
        action="store_true",
        help="check the whole store against its ledger: every sealed run present and intact, "
        "nothing added, nothing deleted",
    )
    p.add_argument(
        "--head",
        metavar="H",
        help="with --all: a ledger head printed earlier (e.g. published with a paper) must "
        "still be in the chain; catches a rolled-back or rewritten ledger",
    )
    p.add_argument(
        "--allowed-signers",
        metavar="FILE",
        help="archives: require a valid FILE.sig by a key in this allowed-signers file "
        "(ssh-keygen -Y verify, git's format)",
    )
    p.add_argument("--replay", action="store_true", help="archives: replay every run too")
    p.add_argument(
        "-j", "--jobs", type=int, default=1, metavar="N", help="archives: replays at once"
    )
    p.add_argument(
        "--no-sandbox",
        action="store_true",
        help="archives: replay WITHOUT bubblewrap. The archive's code then runs with your "
        "rights: it can read your files, use the network and write anywhere you can",
    )
    p.add_argument(
        "--trust",
        action="store_true",
        help="archives: where no sandbox is available, replay anyway (you trust the archive)",
    )
    p.add_argument(
        "--venv",
        action="store_true",
        help="archives: replay inside a fresh virtualenv built from requirements.lock",
    )
    p.add_argument(
        "--data-root",
        metavar="DIR",
        help="archives: where --replay finds inputs not packed in the archive (default: here)",
    )
    p.add_argument("--rtol", type=float, default=0.0, help="archives: relative tolerance")
    p.add_argument("--atol", type=float, default=0.0, help="archives: absolute tolerance")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(func=cmd_verify)

    p = parser_for(
        sub, common, "archive", "pack runs, source, environment and outputs into one file",
        "Pack runs for a paper into one .tar.gz or .zip: the sealed runs, their exact source, "
        "a pinned environment, outputs, REPRODUCE.md and RO-Crate metadata.",
        "reprokit archive latest -o paper.tar.gz\n"
        "reprokit archive --all -o paper.zip --claims claims.yaml",
    )  # fmt: skip
    p.add_argument("refs", nargs="*", metavar="REF", help="the runs to pack")
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
    p.add_argument(
        "--with-inputs",
        action="store_true",
        help="pack the runs' inputs that still match their record (see --max-input-size)",
    )
    p.add_argument(
        "--max-input-size",
        type=int,
        metavar="BYTES",
        help="with --with-inputs: pack inputs up to this size each (default 100 MB)",
    )
    p.add_argument(
        "--sign",
        metavar="KEY",
        help="sign the archive with this SSH private key (ssh-keygen -Y sign, as git does); "
        "writes FILE.sig beside it",
    )
    p.add_argument("--rtol", type=float, default=0.0, help="tolerance stated in REPRODUCE.md")
    p.add_argument("--atol", type=float, default=0.0, help="tolerance stated in REPRODUCE.md")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(func=cmd_archive)
