"""The exceptions reprokit raises on purpose.

ReprokitError                 base of everything below
 ├── RunNotFound              no run matches a reference (.ref)
 ├── AmbiguousRun             a prefix matches several runs (.ref, .matches)
 ├── ArgumentError            an argument of a library call is wrong (.argument, .problem)
 ├── ManifestError            a manifest cannot be read: corrupt, hostile, wrong schema (.path)
 ├── StoreError               the store cannot be written or read (.path)
 ├── TamperedError            a sealed run no longer matches its digests (.run_id, .path)
 ├── NotReplayable            a run lacks what re-execution needs (.run_id, .reason)
 ├── UnsafeArchive            an archive member would escape its folder, or it is a bomb (.member)
 └── GitError                 a git command reprokit needed failed (git's own message)

ReprokitWarning (UserWarning)   issued instead of raising into the user's program
"""

from __future__ import annotations

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from pathlib import Path


class ReprokitError(Exception):
    """Base of every error reprokit raises on purpose; the CLI maps it to exit code 2."""

    exit_code = 2


class ArgumentError(ReprokitError):
    """An argument of a library call is wrong; the message names the argument (the CLI names
    its flag instead)."""

    def __init__(self, argument: str, problem: str) -> None:
        super().__init__(f"argument {argument!r} {problem}")
        self.argument = argument
        self.problem = problem


class RunNotFound(ReprokitError):
    def __init__(self, ref: str, store: Path | str | None = None) -> None:
        where = f" in store {store}" if store else ""
        super().__init__(
            f"no run matches {ref!r}{where} (see `reprokit ls`; another store: --store PATH "
            "or $REPROKIT_STORE)"
        )
        self.ref = ref


class AmbiguousRun(ReprokitError):
    def __init__(self, ref: str, matches: list[str]) -> None:
        shown = ", ".join(matches[:8]) + (", ..." if len(matches) > 8 else "")
        super().__init__(f"run {ref!r} is ambiguous: matches {shown}")
        self.ref = ref
        self.matches = matches


class ManifestError(ReprokitError):
    def __init__(self, message: str, path: Path | str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class StoreError(ReprokitError):
    def __init__(self, message: str, path: Path | str | None = None) -> None:
        super().__init__(message)
        self.path = path


class TamperedError(ReprokitError):
    exit_code = 1

    def __init__(self, message: str, run_id: str | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.path = path


class NotReplayable(ReprokitError):
    def __init__(self, run_id: str, reason: str) -> None:
        super().__init__(f"run {run_id} is not replayable: {reason}")
        self.run_id = run_id
        self.reason = reason


class UnsafeArchive(ReprokitError):
    """An archive whose members would escape the target folder, or that is a bomb (.member)."""

    def __init__(self, message: str, member: str | None = None) -> None:
        super().__init__(message)
        self.member = member


class GitError(ReprokitError):
    """A git command failed; carries git's own first line of complaint."""


class ReprokitWarning(UserWarning):
    """Something about a run the user should know: not recorded, not replayable, redacted."""


def warn(message: str, category: type[Warning] = ReprokitWarning) -> None:
    """Issue a reprokit warning pointing at the first line of the user's code on the stack."""
    import os
    import sys
    import warnings

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frame = sys._getframe(0)  # noqa: SLF001  (stacklevel 1 is this function)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    if not message.startswith("reprokit: "):
        message = f"reprokit: {message}"
    warnings.warn(message, category, stacklevel=level)
