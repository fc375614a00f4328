"""README.md as data: its sections, fenced code blocks and ``readme-test`` annotations.

``tests/test_readme.py`` executes what this module finds; the convention is described in
README's "Development" section. In short, an HTML comment (invisible on GitHub) before a block

    <!-- readme-test: KEY=VALUE FLAG ... -->

sets options for the next block, and one with a body after its first line

    <!-- readme-test: file=data/train.csv
    x,y
    -->

is a hidden step of its own, done where it stands (write a file, run shell lines).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"

# A block whose first line is "# NAME.EXT" (or "// NAME.EXT") shows a file: it is written there.
FILE_HEADER = re.compile(r"^(?:#|//)\s*([\w.][\w./-]*\.[\w]+|\.[\w.-]+)\s*$")
SHELL_LANGS = {"console", "shell", "bash", "sh", "shell-session"}


@dataclass(frozen=True)
class Item:
    """One fenced block (``kind == "block"``) or one hidden step (``kind == "hidden"``)."""

    kind: str
    line: int  # 1-based README line of the opening fence or comment
    lang: str = ""
    text: str = ""
    options: dict[str, str] = field(default_factory=dict)

    def where(self) -> str:
        what = f"```{self.lang}" if self.kind == "block" else "<!-- readme-test -->"
        return f"README.md:{self.line} ({what})"

    @property
    def file_name(self) -> str | None:
        """Where this block is written instead of being run, if anywhere."""
        if "file" in self.options:
            return self.options["file"]
        first = self.text.split("\n", 1)[0]
        m = FILE_HEADER.match(first)
        return m.group(1) if m and self.kind == "block" else None


@dataclass(frozen=True)
class Section:
    title: str
    line: int
    items: tuple[Item, ...]

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


class ReadmeSyntaxError(ValueError):
    pass


def _parse_options(head: str, line: int) -> dict[str, str]:
    try:
        words = shlex.split(head)
    except ValueError as exc:
        raise ReadmeSyntaxError(f"README.md:{line}: bad readme-test comment: {exc}") from None
    out: dict[str, str] = {}
    for w in words:
        key, sep, value = w.partition("=")
        out[key] = value if sep else ""
    return out


def parse(text: str) -> list[Section]:
    """README's ``##``/``###`` sections in order, each with its blocks and hidden steps."""
    lines = text.split("\n")
    sections: list[Section] = []
    title, start = "(top)", 1
    items: list[Item] = []
    pending: dict[str, str] = {}
    pending_line = 0
    i = 0
    while i < len(lines):
        ln = lines[i]
        heading = re.match(r"^(##|###) (.+)$", ln)
        if heading:
            if pending:
                raise ReadmeSyntaxError(
                    f"README.md:{pending_line}: readme-test options {pending} before a heading, "
                    "not before a code block"
                )
            sections.append(Section(title, start, tuple(items)))
            title, start, items = heading.group(2).strip(), i + 1, []
            i += 1
            continue
        if ln.startswith("<!-- readme-test:"):
            first = i
            body: list[str] = []
            head = ln[len("<!-- readme-test:") :]
            if "-->" in head:
                head = head.split("-->", 1)[0]
            else:
                i += 1
                while i < len(lines) and "-->" not in lines[i]:
                    body.append(lines[i])
                    i += 1
                if i == len(lines):
                    raise ReadmeSyntaxError(f"README.md:{first + 1}: unclosed readme-test comment")
                rest = lines[i].split("-->", 1)[0]
                if rest.strip():
                    body.append(rest)
            opts = _parse_options(head, first + 1)
            if body or "bind" in opts:
                items.append(Item("hidden", first + 1, text="\n".join(body) + "\n", options=opts))
            else:
                if not pending:
                    pending_line = first + 1
                pending.update(opts)
            i += 1
            continue
        fence = re.match(r"^(\s*)(`{3,})\s*([\w+-]*)\s*$", ln)
        if fence:
            indent, ticks, lang = fence.group(1), fence.group(2), fence.group(3).lower()
            first = i
            i += 1
            content: list[str] = []
            while i < len(lines) and not lines[i].lstrip().startswith(ticks):
                ln = lines[i]
                content.append(ln[len(indent) :] if ln.startswith(indent) else ln.lstrip())
                i += 1
            if i == len(lines):
                raise ReadmeSyntaxError(f"README.md:{first + 1}: unclosed code block")
            items.append(Item("block", first + 1, lang, "\n".join(content) + "\n", pending))
            pending = {}
            i += 1
            continue
        i += 1
    sections.append(Section(title, start, tuple(items)))
    return [s for s in sections if s.items]


def sections(path: Path = README) -> list[Section]:
    return parse(path.read_text(encoding="utf-8"))


# --- console transcripts ---------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    line: int  # README line of the "$ ..." line
    command: str
    output: tuple[tuple[int, str], ...]  # (README line, expected output line)
    exit_code: int | None  # from "# exit N" at the end of the command, else None


def transcript(block: Item) -> list[Command]:
    """The ``$ command`` lines of a console block, each with the output lines shown after it."""
    cmds: list[Command] = []
    cur: tuple[int, str, int | None] | None = None
    out: list[tuple[int, str]] = []
    for n, ln in enumerate(block.text.rstrip("\n").split("\n")):
        readme_line = block.line + 1 + n
        if ln.startswith("$ "):
            if cur:
                cmds.append(Command(cur[0], cur[1], tuple(out), cur[2]))
            cmd = ln[2:]
            m = re.search(r"\s#\s*exit\s+(\d+)\s*$", cmd)
            cur = (readme_line, cmd, int(m.group(1)) if m else None)
            out = []
        elif cur is None:
            if ln.strip():
                raise ReadmeSyntaxError(
                    f"README.md:{readme_line}: output before the first '$ ' command"
                )
        else:
            out.append((readme_line, ln))
    if cur:
        cmds.append(Command(cur[0], cur[1], tuple(out), cur[2]))
    return cmds


# --- matching shown output against real output ------------------------------------------------

RUN_ID = r"\d{8}-\d{6}-\d{3}-[0-9a-f]{6}"
# Run-dependent parts of shown output, in the order they are tried: each becomes a pattern that
# any value of its kind matches. This is the one place that says what may differ between the
# README and a run here. Everything else in a shown line must appear as shown.
VOLATILE: tuple[tuple[str, str, str], ...] = (
    ("elision", r"(?:,\s*)?(?:\.\.\.|…)(?:,\s*)?", r".*?"),
    ("run id", RUN_ID, "(?P<idN>" + RUN_ID + ")"),
    (
        "timestamp",
        r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?Z?",
        r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?Z?",
    ),
    ("temporary path", r"/tmp/[^\s,;:)'\"]+", r"/[^\s,;:)'\"]+"),
    ("home path", r"/home/me(?:/[^\s,;:)'\"]*)?", r"/[^\s,;:)'\"]*"),
    ("absolute path", r"(?<![\w.:/])/[\w.-]+(?:/[\w.-]+)+/?", r"/[^\s,;:)'\"]*"),
    ("version", r"\b\d+\.\d+\.\d+(?:[\w.+-]*\w)?", r"\d+(?:\.\d+)+(?:[\w.+-]*\w)?"),
    ("duration", r"\b\d+(?:\.\d+)?(?:ms|s)\b", r"\d+(?:\.\d+)?(?:ms|s)"),
    ("byte count", r"\b\d+(?= bytes\b)", r"\d+"),
    ("hex digest or id", r"\b[0-9a-f]{7,}\b", r"[0-9a-f]+"),
    ("rule (pytest pads it to the width)", r"={3,}|_{3,}", r"(?:=+|_+)"),
    ("run id suffix", r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{6}\b", r"[0-9a-f]{6}"),
)
NUMBER = ("number", r"-?\b\d+(?:\.\d+)?(?:e[-+]?\d+)?\b", r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def line_pattern(
    shown: str, *, numbers: bool = False, bound: dict[str, str] | None = None
) -> tuple[re.Pattern[str], list[str]]:
    """A regex for a shown output line, and the README run ids in it (group ``id0``, ...).

    A README run id already bound to a real one (``bound``) must appear as that real id.
    With ``numbers``, every number may differ too (output of an unseeded example)."""
    kinds = VOLATILE + ((NUMBER,) if numbers else ())
    master = re.compile("|".join(f"(?P<k{i}>{rx})" for i, (_, rx, _) in enumerate(kinds)))
    parts: list[str] = []
    ids: list[str] = []
    pos = 0
    text = shown.strip()
    for m in master.finditer(text):
        parts.append(_literal(text[pos : m.start()]))
        k = int(next(name for name, v in m.groupdict().items() if v is not None)[1:])
        name = kinds[k][0]
        if name == "run id suffix" and bound:
            real = {a[-6:]: b[-6:] for a, b in bound.items()}.get(m.group())
            parts.append(re.escape(real) if real else kinds[k][2])
        elif name == "run id":
            if bound and m.group() in bound:
                parts.append(re.escape(bound[m.group()]))
            else:
                parts.append(kinds[k][2].replace("idN", f"id{len(ids)}"))
                ids.append(m.group())
        else:
            parts.append(kinds[k][2])
        pos = m.end()
    parts.append(_literal(text[pos:]))
    return re.compile("".join(parts)), ids


def _literal(s: str) -> str:
    return (
        r"\s+".join(re.escape(w) for w in re.split(r"\s+", s))
        if s.strip()
        else (r"\s+" if s else "")
    )
