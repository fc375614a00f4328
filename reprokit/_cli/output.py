"""Printing for the CLI: stdout carries data only, stderr the narration; shared formats."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from reprokit._reexec.inputs import input_causes
from reprokit._store.store import Store


def out(text: str = "") -> None:
    with _bars_cleared():
        sys.stdout.write(text + ("\n" if not text.endswith("\n") else ""))


def err(text: str) -> None:
    with _bars_cleared():
        sys.stderr.write(text.rstrip("\n") + "\n")


# -- progress bars -------------------------------------------------------------------------------

_SHOWN: list[Bar] = []  # the bars on the terminal now


class _Cleared:
    """Takes the bars off the terminal while a line is written, and puts them back."""

    def __enter__(self) -> None:
        for bar in _SHOWN:
            if not bar.paused:
                bar.tqdm.clear()
        if _SHOWN:
            sys.stdout.flush()

    def __exit__(self, *exc: object) -> None:
        if _SHOWN:
            sys.stdout.flush()
            sys.stderr.flush()
        for bar in _SHOWN:
            if not bar.paused:
                bar.tqdm.refresh()


def _bars_cleared() -> _Cleared:
    return _Cleared()


class Bar:
    """A progress bar (tqdm) on stderr, only when stderr is a terminal and ``-q`` was not
    given; otherwise every method does nothing. Lines written with :func:`out` and
    :func:`err` while it shows go above it.

    ``pause()`` takes it off the screen while a program reprokit started owns the terminal;
    the next ``update`` brings it back.
    """

    def __init__(
        self,
        args: argparse.Namespace,
        desc: str,
        total: int | None = None,
        unit: str = "it",
        bytes_: bool = False,
    ) -> None:
        self.tqdm: Any = None
        self.paused = False
        if getattr(args, "quiet", False) or not sys.stderr.isatty():
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        tqdm.monitor_interval = 0  # no thread redrawing a paused bar
        self.tqdm = tqdm(
            total=total,
            desc=desc,
            unit="B" if bytes_ else unit,
            unit_scale=bytes_,
            leave=False,
            file=sys.stderr,
            miniters=1,
            dynamic_ncols=True,
        )
        _SHOWN.append(self)

    def update(self, n: int = 1, desc: str | None = None) -> None:
        if self.tqdm is None:
            return
        self.paused = False
        if desc is not None:
            self.tqdm.set_description_str(desc, refresh=False)
        self.tqdm.update(n)
        if not n:
            self.tqdm.refresh()

    def pause(self) -> None:
        if self.tqdm is not None and not self.paused:
            self.tqdm.clear()
            sys.stderr.flush()
            self.paused = True

    def close(self) -> None:
        if self.tqdm is not None:
            if self in _SHOWN:
                _SHOWN.remove(self)
            self.tqdm.close()
            self.tqdm = None

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def emit_json(data: Any) -> None:
    out(json.dumps(data, indent=2, sort_keys=False, default=str))


def store_of(args: argparse.Namespace) -> Any:
    return Store.at(args.store)


def short_commit(code: Any) -> str:
    if not isinstance(code, dict):
        return "-"
    commit = code.get("commit")
    text = commit[:8] if isinstance(commit, str) else code.get("kind", "-")
    return text + ("+dirty" if code.get("dirty") else "")


def duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    return f"{seconds / 60:.1f}m"


def short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def change(a: Any, b: Any) -> str:
    """``a -> b`` for a value that changed; when both read the same (the text "0.2" and the
    number 0.2), both are shown as JSON so the difference can be seen."""
    left, right = short(a), short(b)
    if left == right:
        left, right = (json.dumps(v, default=str)[:60] for v in (a, b))
    return f"{left} -> {right}"


def fmt_num(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def output_line(name: str, result: dict[str, Any]) -> str:
    verdict = result["verdict"].replace("_", " ")
    bits = []
    if "max_abs" in result:
        bits.append(f"max abs {fmt_num(result['max_abs'])}, max rel {fmt_num(result['max_rel'])}")
    if "max_abs_at_least" in result and "max_abs" not in result:
        bits.append(f"max abs at least {fmt_num(result['max_abs_at_least'])}")
    if result.get("mode") == "summary":
        bits.append("compared by summary statistics")
    if "first_step" in result:
        bits.append(f"first at step {result['first_step']}")
    div = result.get("first_divergence")
    if div:
        text = f"first divergence at #{div['index']} ({div.get('name')})"
        if "max_abs" in div:
            text += f", max abs {fmt_num(div['max_abs'])}"
        elif "max_abs_at_least" in div:
            text += f", max abs at least {fmt_num(div['max_abs_at_least'])} (by summaries)"
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


def print_drift(drift: dict[str, Any]) -> None:
    if not drift:
        err("drift: none (same python, packages, hardware and numerics variables)")
        return
    err("drift (a warning, not a failure):")
    if "python" in drift:
        err(f"  python {drift['python']['recorded']} -> {drift['python']['now']}")
    for p in (drift.get("packages") or [])[:20]:
        mark = " (imported)" if p.get("imported") else ""
        err(f"  package {p['name']}: {p['recorded'] or '-'} -> {p['now'] or '-'}{mark}")
    if len(drift.get("packages") or []) > 20:
        err(f"  ... {len(drift['packages']) - 20} more packages")
    for item in drift.get("hardware") or []:
        err(f"  hardware {item['key']}: {short(item['a'])} -> {short(item['b'])}")
    for item in drift.get("variables") or []:
        err(f"  variable {item['key']}: {short(item['a'])} -> {short(item['b'])}")
    for line in input_causes(drift.get("inputs") or []):
        err(f"  {line}")


def print_inputs(data: dict[str, Any]) -> None:
    """What replay found of the run's inputs before it started the program."""
    checked, changed = len(data.get("checked") or []), len(data.get("changed") or [])
    text = f"inputs: {checked} unchanged, {changed} changed (data root {data.get('data_root')})"
    if data.get("linked"):
        text += f"; linked into the rebuilt tree: {', '.join(data['linked'][:5])}"
        if len(data["linked"]) > 5:
            text += f" and {len(data['linked']) - 5} more"
    err(text)
    for item in data.get("unchecked") or []:
        err(f"  {item['path']}: not checked ({item['why']})")


def param_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def tampered(args: argparse.Namespace, exc: Any, subject: dict[str, Any]) -> int:
    """Report a failed verification (exit 1): one line on stderr, one document with --json."""
    if args.json:
        emit_json({"schema": 1, **subject, "intact": False, "problem": str(exc), "path": exc.path})
    err(f"tampered: {exc}")
    return 1


class FileProgress:
    """``progress(label, total_bytes)`` for the verbs that pack files: one bar at a time."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.bar: Bar | None = None

    def __call__(self, label: str, total: int) -> Any:
        self.close()
        self.bar = Bar(self.args, label, total, bytes_=True)
        return self.bar.update if self.bar.tqdm is not None else None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def fmt_ci(ci: Any) -> str:
    return "-" if not ci else f"[{ci[0]:.6g}, {ci[1]:.6g}]"


def parser_for(
    sub: argparse._SubParsersAction,
    common: argparse.ArgumentParser,
    name: str,
    help: str,
    description: str,
    examples: str,
) -> argparse.ArgumentParser:
    """A subcommand's parser with its description and examples (shown by ``--help``)."""
    return sub.add_parser(
        name,
        parents=[common],
        help=help,
        description=description,
        epilog="examples:\n" + "".join(f"  {line}\n" for line in examples.strip().splitlines()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
