"""The ``reprokit`` command: parse, call the library, print, map to an exit code.

stdout carries data only (tables, manifests, JSON); narration and errors go to stderr.
Exit codes: 0 success/intact, 1 a verdict of difference (tampered), 2 could not do it,
3 an internal error (a bug).

Each group of subcommands lives in its own module with a ``register(sub, common)`` function;
this module only wires them, parses and maps exceptions to exit codes.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from typing import Any, NoReturn

from reprokit._cli import demo, export, record, remote, replay, report, runs
from reprokit._cli.output import err
from reprokit._model.errors import ArgumentError, ReprokitError, ReprokitWarning
from reprokit._model.version import __version__

# The library names its arguments; the CLI says which flag that was.
_FLAGS = {
    "rtol": "--rtol",
    "atol": "--atol",
    "claims": "--claim",
    "seeds": "--seeds",
    "params": "--param",
    "name": "--name",
    "refs": "REF... (or --all)",
    "n": "-n",
    "metrics": "--metric",
    "since": "--since",
    "until": "--until",
    "status": "--status",
}

# Subcommands that take a command line after ``--`` (everything after it is theirs).
_TAKES_COMMAND = ("run", "check")


class _Parser(argparse.ArgumentParser):
    """argparse with a "did you mean" for mistyped commands and options; exit code 2."""

    def error(self, message: str) -> NoReturn:
        hint = self._suggestion(message)
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}{hint}\n")

    def _suggestion(self, message: str) -> str:
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            options = re.findall(r"'?([\w-]+)'?", choice.group(2))
            close = difflib.get_close_matches(choice.group(1), options, n=1, cutoff=0.5)
            return f" (did you mean {close[0]!r}?)" if close else ""
        unknown = re.search(r"unrecognized arguments: (\S+)", message)
        if unknown:
            word = unknown.group(1).split("=")[0]
            options = _option_strings(self)
            close = difflib.get_close_matches(word, sorted(set(options)), n=1, cutoff=0.6)
            return f" (did you mean {close[0]!r}?)" if close else ""
        return ""


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every option of ``parser`` and of its subcommands (argparse keeps them private)."""
    actions = parser._actions  # noqa: SLF001
    out = [o for a in actions for o in a.option_strings]
    for action in actions:
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for sub in action.choices.values():
                out += _option_strings(sub)
    return out


def _global_options(suppress: bool) -> argparse.ArgumentParser:
    """--store, --debug, -q: accepted before and after the command.

    On the subcommands their defaults are suppressed, so an option given before the command
    is not reset by the subcommand's default.
    """
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {}
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store",
        help="store folder or remote store URL (s3://BUCKET/PREFIX) (default: $REPROKIT_STORE, "
        "else .reprokit at the git repository root or in the current folder)",
        **default,
    )
    common.add_argument("--debug", action="store_true", help="show tracebacks of errors", **default)  # type: ignore[arg-type]
    common.add_argument(
        "-q", "--quiet", action="store_true", help="no narration on stderr", **default
    )  # type: ignore[arg-type]
    return common


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: global options and every subcommand."""
    parser = _Parser(
        prog="reprokit",
        parents=[_global_options(suppress=False)],
        description="Record ML runs as immutable, tamper-evident manifests; replay them and "
        "get a verdict.",
        epilog="run 'reprokit COMMAND --help' for a command's options and examples",
    )
    parser.add_argument("--version", action="version", version=f"reprokit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    common = _global_options(suppress=True)
    for module in (runs, replay, record, demo, export, remote, report):
        module.register(sub, common)
    return parser


def _split_command(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """(options, command) for ``run``/``check``: the command is what follows the first ``--``
    after the subcommand; elsewhere ``--`` is left to argparse."""
    if "--" not in argv:
        return argv, None
    cut = argv.index("--")
    head = argv[:cut]
    if not any(word in _TAKES_COMMAND for word in head):
        return argv, None
    return head, argv[cut + 1 :]


def _narrate_warnings() -> None:
    """Our own warnings read as one line of narration on the command line ("reprokit: warning:
    ..."), not as Python's ``file:line: Category:`` form; any other warning is left as it is."""
    import warnings

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        if isinstance(category, type) and issubclass(category, ReprokitWarning):
            text = str(message).removeprefix("reprokit: ")
            err(f"reprokit: warning: {text}")
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    head, command = _split_command(argv)
    args = parser.parse_args(head)
    if command is not None:
        if args.command not in _TAKES_COMMAND:
            parser.parse_args(argv)  # argparse's own message for a stray "--"
        if args.cmd and args.cmd != ["--"]:
            # `reprokit run python x.py -- y` without a leading --: the whole line is the command
            command = [*(c for c in args.cmd if c != "--"), "--", *command]
        args.cmd = command
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    _narrate_warnings()
    try:
        return int(args.func(args) or 0)
    except ArgumentError as exc:
        flag = _FLAGS.get(exc.argument, exc.argument)
        err(f"reprokit: error: {flag} {exc.problem}")
        return exc.exit_code
    except ReprokitError as exc:
        if args.debug:
            import traceback

            traceback.print_exc()
        err(f"reprokit: error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        err("reprokit: interrupted")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if args.debug:
            import traceback

            traceback.print_exc()
        err(
            f"reprokit: internal error: {type(exc).__name__}: {exc} "
            "(rerun with --debug for the traceback)"
        )
        return 3
