"""``reprokit report``: one self-contained HTML page about runs."""

from __future__ import annotations

import argparse

from reprokit._cli.output import emit_json, err, out, parser_for
from reprokit._verbs.report import report


def cmd_report(args: argparse.Namespace) -> int:
    written = report(args.refs, args.output, store=args.store)
    if args.json:
        emit_json(written.to_dict())
        return 0
    extra = f", seed robustness of {', '.join(written.sweeps)}" if written.sweeps else ""
    out(
        f"wrote {written.path}: {len(written.runs)} run(s), {len(written.metrics)} metric "
        f"chart(s), {written.verdicts} verdict(s){extra}"
    )
    if not args.quiet and not written.metrics:
        err("reprokit: these runs logged no metrics: the report has no curves")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``report`` to the CLI."""
    p = parser_for(
        sub, common, "report", "write one self-contained HTML page about runs",
        "Write one HTML page about runs: their params side by side (differences marked), "
        "every metric's curves of all the runs overlaid, the seed robustness of a seed sweep "
        "(mean curve with its 95 % confidence band), the replay and audit verdicts recorded "
        "about them, and where their environments differ. The page has no JavaScript, loads "
        "nothing (a strict Content-Security-Policy) and works offline. A REF may also be the "
        "group a `reprokit seeds` printed: all of that sweep's runs.",
        "reprokit report latest\n"
        "reprokit report a3f1 b7c2 c9d4 -o lr-sweep.html\n"
        "reprokit report seeds-a6229a52 -o robustness.html",
    )  # fmt: skip
    p.add_argument("refs", nargs="+", metavar="REF", help="the runs to show")
    p.add_argument(
        "-o",
        "--output",
        default="report.html",
        metavar="FILE",
        help="the page to write (default: report.html)",
    )
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(func=cmd_report)
