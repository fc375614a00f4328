"""``reprokit export mlflow``: send runs to an MLflow tracking server."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from reprokit._cli.output import Bar, err, out
from reprokit._model.errors import ReprokitError
from reprokit._verbs.export_mlflow import export_mlflow

EXAMPLE = """\
example:
  reprokit export mlflow --tracking-uri http://127.0.0.1:5000 latest
  reprokit export mlflow --tracking-uri http://mlflow.internal --experiment paper-3 a5c3ca 86285b

Exporting the same run again creates nothing new (it is found by its reprokit.run_id tag).
Credentials: user:password in the URL, or MLFLOW_TRACKING_USERNAME/PASSWORD or
MLFLOW_TRACKING_TOKEN, as MLflow reads them.
"""


def cmd_export_mlflow(args: argparse.Namespace) -> int:
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise ReprokitError("give the MLflow server: --tracking-uri URL (or MLFLOW_TRACKING_URI)")

    bar = Bar(args, "exporting to mlflow", len(args.refs), "run")

    def narrate(result: dict[str, Any]) -> None:
        bar.update(1)
        if args.json:
            return
        if result["created"]:
            what = (
                f"created, {result['params']} params, {result['metric_points']} metric points, "
                + ("manifest uploaded" if result.get("artifact") else "manifest NOT uploaded")
            )
        elif result.get("tags_updated"):
            what = "exported before; tags updated: " + ", ".join(result["tags_updated"])
        else:
            what = "exported before; unchanged"
        out(f"{result['run']} -> mlflow run {result['mlflow_run_id']}: {what}")
        if result.get("artifact_skipped") and not args.quiet:
            err(f"reprokit: {result['artifact_skipped']}")
        sys.stdout.flush()

    with bar:
        report = export_mlflow(
            args.refs,
            uri,
            experiment=args.experiment,
            store=args.store,
            timeout=args.timeout,
            on_run=narrate,
        )
    if args.json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    elif not args.quiet:
        sys.stderr.write(
            f"experiment {report.experiment!r} ({report.experiment_id}) at {report.tracking_uri}\n"
        )
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``export`` and its targets (``mlflow``) to the CLI."""
    p = sub.add_parser(
        "export",
        parents=[common],
        help="send runs to another tool (mlflow)",
        description="Send recorded runs to another tool.",
    )
    targets = p.add_subparsers(dest="target", metavar="TARGET", required=True)
    m = targets.add_parser(
        "mlflow",
        parents=[common],
        help="export runs to an MLflow tracking server over its REST API",
        description="Export runs to an MLflow tracking server over its REST API: params, "
        "metrics with steps and timestamps, tags (run id, code digest, seed, replay verdicts) "
        "and the manifest as an artifact. No mlflow package is needed.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    m.add_argument("refs", nargs="+", metavar="REF", help="runs to export")
    m.add_argument(
        "--tracking-uri",
        metavar="URL",
        help="the MLflow server, http(s)://... (default: $MLFLOW_TRACKING_URI)",
    )
    m.add_argument(
        "--experiment", default="reprokit", help="MLflow experiment, created when missing"
    )
    m.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    m.add_argument("--json", action="store_true", help="one JSON document on stdout")
    m.set_defaults(func=cmd_export_mlflow)
