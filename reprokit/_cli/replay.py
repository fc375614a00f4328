"""CLI commands that execute runs again: replay, check, seeds."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from reprokit._cli import many
from reprokit._cli.output import (
    Bar,
    emit_json,
    err,
    fmt_ci,
    out,
    output_line,
    param_value,
    parser_for,
    print_drift,
    print_inputs,
    short,
)
from reprokit._model.errors import ReprokitError
from reprokit._verbs.audit import check, parse_seeds, seeds
from reprokit._verbs.replay import ReplayReport, replay


def cmd_replay(args: argparse.Namespace) -> int:
    if many.wanted(args):
        return many.cmd_replay_many(args)
    if not args.refs:
        raise ReprokitError("replay needs a run (REF), several, --all or --name N")
    args.ref = args.refs[0]
    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ReprokitError(f"--param expects NAME=VALUE, got {item!r}")
        params[key] = param_value(value)

    seen_drift: list[str] = []
    narrate = narrator(args.quiet, seen_drift)
    phases = {"source": "checking inputs and environment", "drift": "starting the program"}

    with Bar(args, f"replay {args.ref}: verifying, rebuilding the source", 3, "step") as bar:

        def heard(kind: str, data: Any) -> None:
            narrate(kind, data)
            if kind in phases:
                bar.update(1, desc=f"replay {args.ref}: {phases[kind]}")
            elif kind == "running":
                bar.update(1)
                bar.pause()  # the replayed program owns the terminal

        report = replay(
            args.ref,
            store=args.store,
            rtol=args.rtol,
            atol=args.atol,
            in_place=args.in_place,
            keep=args.keep,
            params=params,
            on_event=heard,
            data_root=args.data_root,
            full_hash=args.full_hash,
            sandbox=many.sandbox_choice(args),
            trust=args.trust,
        )
    code = 0 if report.identical else 2 if report.undetermined else 1
    if args.json:
        _late_drift(report, seen_drift, args.quiet)
        emit_json(report.to_dict())
    else:
        print_replay(report, seen_drift, args.quiet)
    if report.undetermined:
        # Neither "same" nor "different" is proven: exit 2 with the reason, never a guess.
        err(f"reprokit: replay: cannot tell within the tolerance: {report.undetermined}")
    if report.inputs_problem:
        # The replay wrote into (or was stopped writing into) its data: never a plain verdict.
        err(f"reprokit: replay: {report.inputs_problem}")
        code = 2
    return code


def narrator(quiet: bool, seen_drift: list[str]) -> Callable[[str, Any], None]:
    """What replay says while it works (source, drift, where it runs), on stderr."""

    def narrate(kind: str, data: Any) -> None:
        if quiet:
            return
        if kind == "source":
            if data.get("mode") == "in-place":
                differs = data.get("differs")
                err(f"source: the current tree in {data['path']} (--in-place)")
                if isinstance(differs, list) and differs:
                    err(f"  differs from the recorded tree in {len(differs)} file(s):")
                    for d in differs[:20]:
                        err(f"    {d['change']} {d['path']}")
                elif isinstance(differs, list):
                    err("  identical to the recorded tree")
                else:
                    err(f"  {differs}")
            else:
                what = data.get("tree") or data.get("digest")
                err(f"source: rebuilt from the {data['mode']} ({what}), digest verified")
                if data.get("excluded"):
                    absent = ", ".join(data["excluded"][:20])
                    err(f"  not captured (secret files): {absent} (absent from the rebuilt tree)")
                if data.get("path"):
                    err(f"  kept in {data['path']}")
        elif kind == "sandbox":
            err(f"sandbox: {data}")
        elif kind == "inputs":
            print_inputs(data)
        elif kind == "drift":
            seen_drift.extend(item["key"] for item in data.get("hardware") or [])
            print_drift(data)
        elif kind == "running":
            for name, change in (data.get("changed_params") or {}).items():
                err(
                    f"param {name} changed for this replay: {change['recorded']!r} -> "
                    f"{change['replayed']!r}"
                )
            err(f"running in {data['cwd']}")

    return narrate


def _late_drift(report: ReplayReport, seen_drift: list[str], quiet: bool) -> None:
    late = [d for d in report.drift.get("hardware") or [] if d["key"] not in seen_drift]
    if late and not quiet:
        # torch and BLAS are described only by a process that imported them: the re-executed
        # run's record, so this part of the drift is known only after it ran.
        err("drift seen by the re-executed run:")
        for item in late:
            err(f"  hardware {item['key']}: {short(item['a'])} -> {short(item['b'])}")


def print_replay(report: ReplayReport, seen_drift: list[str], quiet: bool) -> None:
    """The verdict, output by output, and the likely causes."""
    _late_drift(report, seen_drift, quiet)
    label = report.verdict.replace("_", " ")
    out(f"verdict: {label} (run {report.run_id}, replay {report.replay_id})")
    for run in report.runs:
        if len(report.runs) > 1:
            who = f"child {run['child']}" if run.get("child") else "run"
            out(f" {who} {run['recorded']} -> {run['replayed']}: {run['verdict']}")
        for name, result in run.get("outputs", {}).items():
            out(output_line(name, result))
    compared = {name for run in report.runs for name in run.get("outputs", {})}
    if compared == {"exit_code"} and len(report.runs) == 1:
        # "identical" then vouches for the exit code alone: say so where it is read.
        err(
            "note: only the exit code was compared: the command declared no outputs (--output) "
            "and made no tracked runs, and its console output is not compared"
        )
    div = report.first_divergence
    if div and not report.identical:
        out(f"first divergence: {div['where']}, checkpoint #{div['index']} ({div.get('name')})")
    if report.causes:
        out("likely causes, most likely first:")
        for i, cause in enumerate(report.causes, 1):
            out(f"  {i}. {cause}")


def _split_command(args: argparse.Namespace) -> tuple[str | None, list[str] | None]:
    command = list(args.cmd) if args.cmd else None
    if command:
        if args.ref is not None:
            raise ReprokitError("check takes a run or a command after --, not both")
        return None, command
    if args.ref is None:
        raise ReprokitError("check needs a run (reprokit check REF) or a command after --")
    return args.ref, None


def executions(bar: Bar, what: str) -> Callable[[str, Any], None]:
    """``on_event`` for the verbs that execute a run several times: a step of ``bar`` per
    execution, the bar paused while the program owns the terminal."""

    def heard(kind: str, data: Any) -> None:
        if kind == "executing":
            bar.update(0, desc=f"{what} {data}")
            bar.pause()
        elif kind == "executed":
            bar.update(1)

    return heard


def cmd_check(args: argparse.Namespace) -> int:
    ref, command = _split_command(args)
    with Bar(args, "check", args.n, "execution") as bar:
        step = executions(bar, "check: execution")
        report = check(
            ref,
            command=command,
            n=args.n,
            outputs=args.output,
            seed=args.seed,
            store=args.store,
            on_event=lambda kind, i: step(kind, i + 1),
            sandbox=many.sandbox_choice(args),
            trust=args.trust,
        )
    code = 0 if report.deterministic else 1
    if args.json:
        emit_json(report.to_dict())
        return code
    verdict = "deterministic" if report.deterministic else "NOT deterministic"
    out(f"{verdict}: {report.n} executions of {report.target} with seed {report.seed}")
    for name, result in report.outputs.items():
        shown = dict(result)
        if shown["verdict"] == "identical":
            shown["verdict"] = "agree"
        out(output_line(name, shown))
    if report.first_divergence:
        d = report.first_divergence
        out(f"first divergence: checkpoint #{d['index']} ({d.get('name')}) of {d.get('run')}")
    if report.suspects:
        out("suspects, most likely first:")
        for i, cause in enumerate(report.suspects, 1):
            out(f"  {i}. {cause}")
    return code


def cmd_seeds(args: argparse.Namespace) -> int:
    seed_list = parse_seeds(args.seeds) if args.seeds else None
    total = len(seed_list) if seed_list else args.n if args.n is not None else 10
    with Bar(args, "seeds", total, "seed") as bar:
        report = seeds(
            args.ref,
            n=args.n,
            seed_list=seed_list,
            claims=args.claim,
            store=args.store,
            on_event=executions(bar, "seeds: seed"),
            sandbox=many.sandbox_choice(args),
            trust=args.trust,
        )
    # A sweep in which nothing varied, or that did not vary a claimed result, cannot support or
    # refute the claim: exit 2, said loudly.
    code = 2 if report.refused else 0 if report.robust else 1
    if args.json:
        emit_json(report.to_dict())
        if report.nothing_varied:
            err(f"reprokit: seeds: NOTHING VARIED: {report.nothing_varied}")
        elif report.refused:
            err(f"reprokit: seeds: no robustness claim: {report.refused}")
        return code
    out(f"{report.target} under {len(report.seeds)} seeds (group {report.group})")
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
                fmt_ci(s.get("ci95")),
                "-" if s.get("cv") is None else f"{s['cv']:.3g}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        out("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if report.nothing_varied:
        for claim in report.claims:
            out(f"claim {claim}: undetermined (the seeds did not vary the executions)")
        err(f"reprokit: seeds: NOTHING VARIED, no robustness claim: {report.nothing_varied}")
        return code
    for name, why in report.unvaried.items():
        if not any(c.rsplit(" ", 2)[0] == name for c in report.claims):
            out(f"note: {why}")
    for claim, j in report.claims.items():
        if j["verdict"] == "undetermined":
            out(f"claim {claim}: undetermined ({j['reason']})")
            continue
        note = "; spread larger than the margin" if j["spread_exceeds_margin"] else ""
        out(
            f"claim {claim}: {j['verdict']} ({j['seeds_failing']} of {len(report.seeds)} seeds "
            f"fail; 95% CI {'holds' if j['ci_holds'] else 'does not hold'}{note})"
        )
    if report.refused:
        err(f"reprokit: seeds: no robustness claim: {report.refused}")
    return code


def add_sandbox_options(p: argparse.ArgumentParser) -> None:
    """--sandbox, --no-sandbox and --trust: where a recorded run's code runs."""
    p.add_argument(
        "--sandbox",
        action="store_true",
        help="run inside bubblewrap: no network, the host read-only, writes only in the "
        "replay's folders (the default for runs recorded on another machine)",
    )
    p.add_argument(
        "--no-sandbox",
        action="store_true",
        help="never use the sandbox, even for a run recorded on another machine: its code "
        "runs with your rights and can read, change or send anything you can (at your risk)",
    )
    p.add_argument(
        "--trust",
        action="store_true",
        help="a run recorded on another machine, where no sandbox is available: replay it "
        "anyway, without one (you trust its code)",
    )


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = parser_for(
        sub, common, "replay",
        "re-execute a run from its recorded source and compare (exit 1 if it differs)",
        "Rebuild the run's recorded source in a temporary folder, re-execute it with the "
        "recorded params, seeds and numerics environment, and compare every output. Exit 0 "
        "identical, 1 different, 2 when it cannot be replayed here (the reason is said).",
        "reprokit replay latest\nreprokit replay a3f1 --rtol 1e-6 --json",
    )  # fmt: skip
    p.add_argument(
        "refs", nargs="*", metavar="REF", help="one run, or several (see -j); 'latest' works"
    )
    many.add_options(p)
    p.add_argument("--rtol", type=float, default=0.0, help="relative tolerance for numbers")
    p.add_argument("--atol", type=float, default=0.0, help="absolute tolerance for numbers")
    p.add_argument("--in-place", action="store_true", help="run the current tree instead")
    p.add_argument("--keep", action="store_true", help="keep the rebuilt tree and say where")
    p.add_argument(
        "--data-root",
        metavar="DIR",
        help="look for inputs recorded at relative paths below DIR (default: the repository "
        "the replay runs in)",
    )
    p.add_argument(
        "--full-hash",
        action="store_true",
        help="check inputs by reading every byte (default: trust the stat cache, like git)",
    )
    add_sandbox_options(p)
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="supply a param again (e.g. one redacted when recorded)",
    )
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(func=cmd_replay)

    p = parser_for(
        sub, common, "check",
        "determinism audit: execute a run or command N times (exit 1 if they disagree)",
        "Execute a run (or any command) N times with identical seeds and say, output by "
        "output, whether the executions agree, where they first diverged and what is likely "
        "to blame.",
        "reprokit check latest\nreprokit check -n 3 -- python train.py --epochs 2",
    )  # fmt: skip
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
    add_sandbox_options(p)
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(func=cmd_check, cmd=None)  # the command: what follows "--" (see app.py)

    p = parser_for(
        sub, common, "seeds",
        "seed robustness: re-execute a run under N seeds and summarise each result",
        "Re-execute a run under N different seeds and report, per result, mean, std, min, "
        "max and a 95 % confidence interval; --claim states a result the seeds must support.",
        "reprokit seeds latest -n 5\nreprokit seeds a3f1 --seeds 0-9 --claim 'acc>=0.9'",
    )  # fmt: skip
    p.add_argument("ref", help="run id, unique prefix or suffix, or 'latest'")
    p.add_argument("-n", type=int, default=None, help="number of seeds, 0..N-1 (default 10)")
    p.add_argument("--seeds", help="explicit seeds: 0-9 or 1,5,9")
    p.add_argument(
        "--claim",
        action="append",
        default=[],
        metavar="NAME>=VALUE",
        help="a result you claim; exit 1 if the seeds do not support it",
    )
    add_sandbox_options(p)
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(func=cmd_seeds)
