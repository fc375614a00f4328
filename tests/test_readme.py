"""README's examples run as shown: every code block is executed or checked (issue #13).

Each README section (``##``/``###``) runs in its own fresh git repository with its own store,
its blocks in order, with the real ``reprokit`` command on ``PATH``. The convention (the
``readme-test`` comments, files shown by a ``# NAME`` first line, how transcripts are matched)
is described in README's "Development" section and parsed in ``tests/readme_blocks.py``.
A failure names the README line of the block, command or output line that did not hold.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import readme_blocks as rb
from tests.conftest import clean_env, git

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = rb.sections()
RUNNABLE = [s for s in SECTIONS if any(i.kind == "block" for i in s.items)]
SKIPPED = [
    (s, i)
    for s in SECTIONS
    for i in s.items
    if i.kind == "block" and ("skip" in i.options or "skip-command" in i.options)
]
SHELL_TIMEOUT = 300
# Warnings a python block may print without showing them: the one every script started
# without PYTHONHASHSEED gets (transcripts show what they mean to; see Sandbox.match).
TOLERATED_WARNINGS = ("hash randomization is on",)


class ReadmeFailure(AssertionError):
    pass


@pytest.fixture(scope="session")
def readme_tools(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A HOME shared by all sections (caches, e.g. the archive's wheel) and a folder of
    commands: ``reprokit``, ``python``, ``pytest`` as this interpreter and this checkout."""
    base = tmp_path_factory.mktemp("readme")
    home, bindir = base / "home", base / "bin"
    home.mkdir()
    bindir.mkdir()
    shims = {
        "python": "",
        "python3": "",
        "reprokit": "-m reprokit",
        "pytest": "-m pytest",
    }
    for name, args in shims.items():
        p = bindir / name
        p.write_text(f'#!/bin/sh\nexec "{sys.executable}" {args} "$@"\n')
        p.chmod(0o755)
    return {"home": home, "bin": bindir}


class Sandbox:
    """One README section's world: a git repository with one commit, a store in it, a HOME."""

    def __init__(self, root: Path, tools: dict[str, Path]) -> None:
        self.repo = root / "project"
        self.repo.mkdir()
        git(self.repo, "init", "-q", "-b", "main")
        (self.repo / "README.md").write_text("an example project\n")
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "-m", "initial")
        env = clean_env()
        env.pop("PYTHONHASHSEED", None)
        env.update(
            HOME=str(tools["home"]),
            XDG_CACHE_HOME=str(tools["home"] / ".cache"),
            PATH=os.pathsep.join(
                [str(tools["bin"]), str(Path(sys.executable).parent), env.get("PATH", "")]
            ),
            PYTHONPATH=os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH")] if p),
            NO_COLOR="1",
            COLUMNS="80",
        )
        self.env = env
        self.bound: dict[str, str] = {}  # README run id -> the real run it stands for
        # A hidden step that starts a server in the background writes its pid here (one a line).
        self.pids = root / "background.pids"
        self.env["READMETEST_PIDS"] = str(self.pids)
        self.prelude = ""

    def close(self) -> None:
        """Stop the background processes the section's hidden steps started."""
        if not self.pids.exists():
            return
        for pid in self.pids.read_text().split():
            try:
                os.killpg(int(pid), signal.SIGTERM)
            except (ProcessLookupError, PermissionError, ValueError):
                pass

    # --- helpers ---------------------------------------------------------------------------

    def substitute(self, text: str) -> str:
        """README run ids (and their 6-character suffixes) replaced by the real ones bound."""
        for shown, real in self.bound.items():
            text = text.replace(shown, real)
            if re.fullmatch(rb.RUN_ID, shown):
                text = re.sub(rf"\b{shown[-6:]}\b", real[-6:], text)
        return text

    def bash(self, script: str, timeout: float = SHELL_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", script],
            cwd=self.repo,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )

    def real_id(self, ref: str) -> str:
        rc, out = self.shell(f"reprokit show {ref} --json 2>/dev/null")
        if rc != 0:
            raise ReadmeFailure(f"cannot resolve run {ref!r}: {out.strip()}")
        return str(json.loads(out)["run"]["id"])

    def write(self, rel: str, text: str) -> None:
        path = self.repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.substitute(text))

    # --- one item --------------------------------------------------------------------------

    def do(self, item: rb.Item) -> None:
        opts = item.options
        if "skip" in opts:
            return
        for need in filter(None, opts.get("requires", "").split(",")):
            why = _missing(need)
            if why:
                pytest.skip(f"{item.where()} needs {need}: {why}")
        if item.kind == "hidden":
            self.hidden(item)
            return
        if item.file_name:
            self.write(item.file_name, item.text)
            validate_data(item, item.text)
        elif item.lang == "python":
            self.python(item)
        elif item.lang in rb.SHELL_LANGS:
            if any(ln.startswith("$ ") for ln in item.text.splitlines()):
                self.console(item)
            elif "run" in opts:
                proc = self.bash(self.substitute(item.text))
                expect(item, proc.returncode == int(opts.get("exit", 0)), proc.stdout)
            else:
                raise ReadmeFailure(
                    f"{item.where()}: a shell block without '$ ' prompts is a script; annotate "
                    "it `<!-- readme-test: run -->` to run it or "
                    '`<!-- readme-test: skip reason="..." -->`'
                )
        else:
            validate_data(item, item.text)
        if "check" in opts:
            check = CHECKS.get(opts["check"])
            if check is None:
                raise ReadmeFailure(
                    f"{item.where()}: unknown check {opts['check']!r}: {sorted(CHECKS)}"
                )
            check(self, item)

    def hidden(self, item: rb.Item) -> None:
        opts = item.options
        if "file" in opts:
            self.write(opts["file"], item.text)
        elif "sh" in opts:
            rc, out = self.shell(self.substitute(item.text))
            expect(item, rc == 0, f"hidden shell step failed:\n{out}")
        elif "prelude" in opts:
            self.prelude = item.text
        elif "bind" in opts and opts["bind"]:
            rc, out = self.shell(self.substitute(item.text))
            expect(item, rc == 0 and bool(out.strip()), out)
            self.bound[opts["bind"]] = out.strip().splitlines()[-1]
        elif "bind" in opts:
            for shown, ref in opts.items():
                if shown != "bind":
                    self.bound[shown] = self.real_id(ref)
        else:
            raise ReadmeFailure(f"{item.where()}: a hidden step needs file=, sh, prelude or bind")

    def python(self, item: rb.Item) -> None:
        script = f"readme_example_{item.line}.py"
        (self.repo / script).write_text(self.prelude + self.substitute(item.text))
        self.prelude = ""
        rc, out = self.shell(f"python {script}")
        want = int(item.options.get("exit", 0))
        expect(item, rc == want, f"exit {rc}, want {want}:\n{out}")
        if want == 0:
            expect(item, "Traceback" not in out, f"printed a traceback:\n{out}")
        warned = [
            ln
            for ln in out.splitlines()
            if "Warning:" in ln and not any(t in ln for t in TOLERATED_WARNINGS)
        ]
        expect(
            item,
            not warned or "warns" in item.options,
            "warned (annotate `warns` if the example means to):\n" + "\n".join(warned),
        )

    def console(self, item: rb.Item) -> None:
        """Each ``$`` line runs in bash in the repository, in order; ``cd`` and ``export``
        carry over to the next line. ``$ echo $?`` shows the previous command's exit code;
        any other command must exit 0 unless its line ends with ``# exit N``."""
        cmds = rb.transcript(item)
        skips = [p for p in item.options.get("skip-command", "").split("|") if p]
        numbers = item.options.get("numbers") == "any"
        problems: list[str] = []
        rc = 0
        for n, c in enumerate(cmds):
            command = c.command.strip()
            if any(command.startswith(p) for p in skips):
                continue
            if command == "echo $?":
                shown = "\n".join(ln for _, ln in c.output).strip()
                if shown != str(rc):
                    problems.append(
                        f"README.md:{c.line}: the command before exited {rc}, "
                        f"the README shows {shown!r}"
                    )
                continue
            if command.endswith("&"):
                raise ReadmeFailure(f"README.md:{c.line}: a background command cannot run here")
            self.show_cat(command, c)
            rc, out = self.shell(self.substitute(c.command))
            nxt = cmds[n + 1].command.strip() if n + 1 < len(cmds) else ""
            want = c.exit_code if c.exit_code is not None else 0
            if nxt != "echo $?" and rc != want:
                problems.append(
                    f"README.md:{c.line}: `{c.command}` exited {rc}, the README implies {want}"
                    f" (show it with `$ echo $?` or `# exit {rc}` if that is right); its "
                    f"output:\n{_indent(out)}"
                )
            problems += self.match(c, out, numbers)
            if problems:
                break  # later commands depend on this one
        if problems:
            raise ReadmeFailure(f"{item.where()}:\n" + "\n".join(problems))

    def show_cat(self, command: str, c: rb.Command) -> None:
        """``$ cat FILE`` of a file the section has not written yet defines the file."""
        m = re.fullmatch(r"cat (\S+)", command)
        if m and not (self.repo / m.group(1)).exists():
            self.write(m.group(1), "\n".join(ln for _, ln in c.output) + "\n")

    def shell(self, command: str) -> tuple[int, str]:
        """Run ``command`` in the section's shell session: variables exported and the folder
        changed to by earlier commands, hidden steps and blocks carry over."""
        state = self.repo.parent / "shell-state"
        script = (
            f'[ -f "{state}" ] && . "{state}"\n'
            f"{{\n{command}\n}} </dev/null\n"
            f'__rk=$?; export -p > "{state}"; echo "cd \\"$PWD\\"" >> "{state}"; exit $__rk\n'
        )
        proc = self.bash(script)
        return proc.returncode, proc.stdout

    def match(self, c: rb.Command, out: str, numbers: bool) -> list[str]:
        """Every shown output line must match a real one; real errors must be shown."""
        real = [ln.strip() for ln in out.splitlines() if ln.strip()]
        problems = []
        matched: set[int] = set()
        for line, shown in c.output:
            if not shown.strip():
                continue
            pattern, ids = rb.line_pattern(shown, numbers=numbers, bound=self.bound)
            # (a real line already matched by an earlier shown line is taken only when no
            # other fits: shown lines that differ only by run id bind to distinct real lines)
            hits = [(i, m) for i, ln in enumerate(real) if (m := pattern.fullmatch(ln))]
            hit = next((h for h in hits if h[0] not in matched), hits[0] if hits else None)
            if hit is None:
                problems.append(
                    f"README.md:{line}: shown output not in the real output:\n    {shown.strip()}"
                )
                continue
            matched.add(hit[0])
            for k, shown_id in enumerate(ids):
                self.bound.setdefault(shown_id, hit[1].group(f"id{k}"))
        unshown = [
            ln
            for i, ln in enumerate(real)
            if i not in matched and (ln.startswith("reprokit: error") or ln.startswith("Traceback"))
        ]
        if unshown:
            problems.append(
                f"README.md:{c.line}: `{c.command}` printed an error the README does not "
                "show:\n    " + "\n    ".join(unshown)
            )
        if problems:
            problems.append(f"real output of `{c.command}` (README.md:{c.line}):\n" + _indent(out))
        return problems


def _missing(need: str) -> str:
    """Why ``need`` (a module, a command, or ``sandbox``: a working bubblewrap) is not
    usable here, or ""."""
    if need == "sandbox":
        from reprokit._reexec.sandbox import available

        return "" if available()[0] else available()[1]
    if shutil.which(need) or importlib.util.find_spec(need):
        return ""
    return "not installed here"


def _indent(text: str) -> str:
    return "\n".join("    | " + ln for ln in text.rstrip("\n").splitlines()[-60:])


def expect(item: rb.Item, ok: bool, why: str) -> None:
    if not ok:
        raise ReadmeFailure(f"{item.where()}: {why[-4000:]}")


def validate_data(item: rb.Item, text: str) -> None:
    """A YAML or JSON block must parse (``…`` stands for an elided digest in examples)."""
    try:
        if item.lang == "yaml":
            yaml.safe_load(text)
        elif item.lang == "json":
            json.loads(text)
    except (yaml.YAMLError, ValueError) as exc:
        raise ReadmeFailure(f"{item.where()}: does not parse as {item.lang}: {exc}") from None


# --- checks named by `check=` ------------------------------------------------------------


def _keys(d: Any, prefix: str = "", depth: int = 2) -> set[str]:
    if not isinstance(d, dict) or depth == 0:
        return set()
    out = set()
    for k, v in d.items():
        out.add(prefix + str(k))
        out |= _keys(v, f"{prefix}{k}.", depth - 1)
    return out


def check_manifest(box: Sandbox, item: rb.Item) -> None:
    """The example manifest parses, has SPEC's sections, and every key it shows (two levels
    deep) is a key a real run's manifest has."""
    shown = yaml.safe_load(item.text)
    spec = [
        "schema",
        "run",
        "code",
        "params",
        "seeds",
        "environment",
        "hardware",
        "outputs",
        "digests",
    ]
    missing = [k for k in spec if k not in shown]
    expect(item, not missing, f"the example manifest lacks SPEC's sections {missing}")
    real = yaml.safe_load(box.bash("reprokit show latest --yaml").stdout)
    extra = sorted(_keys(shown) - _keys(real))
    expect(item, not extra, f"keys shown that a real manifest does not have: {extra}")


def check_store_layout(box: Sandbox, item: rb.Item) -> None:
    """Each path of the layout (``<...>`` for a name) exists in the store after a run."""
    missing = []
    for ln in item.text.splitlines():
        if not ln.strip():
            continue
        path = re.sub(r"<[^>]+>", "*", ln.split()[0])
        if not list(box.repo.glob(path)):
            missing.append(path)
    expect(item, not missing, f"not in a real store: {missing}")


def check_claims(box: Sandbox, item: rb.Item) -> None:
    """Every claim's run resolves, and its ``result`` names a number of that run."""
    import reprokit
    from reprokit._verbs.audit import results_of

    for claim in yaml.safe_load(box.substitute(item.text)):
        m = reprokit.load(str(claim["run"]), store=str(box.repo / ".reprokit"))
        results = results_of(m)
        name = claim.get("result")
        ok = name in results or f"return.{name}" in results
        expect(item, ok, f"claim result {name!r} is not a result of run {m.id}: {sorted(results)}")


def check_reprokitignore(box: Sandbox, item: rb.Item) -> None:
    """A file matching each pattern of the example is left out of a run's code, with the reason."""
    planted = []
    for ln in item.text.splitlines():
        pattern = ln.strip()
        if not pattern or pattern.startswith("#"):
            continue
        rel = pattern + "example.txt" if pattern.endswith("/") else pattern.replace("*", "example")
        box.write(rel, "not for the store\n")
        planted.append(rel)
    script = "import reprokit\nwith reprokit.run('ignored', seed=0):\n    pass\n"
    proc = box.bash(f"python -c {shlex.quote(script)} && reprokit show latest --json")
    expect(item, proc.returncode == 0, proc.stdout)
    manifest = json.loads(proc.stdout[proc.stdout.index("{") :])
    excluded = {e["path"]: e["reason"] for e in manifest["code"].get("excluded", [])}
    wrong = [p for p in planted if ".reprokitignore" not in excluded.get(p, "")]
    expect(item, not wrong, f"captured although the example ignores them: {wrong}; {excluded}")


CHECKS: dict[str, Callable[[Sandbox, rb.Item], None]] = {
    "reprokitignore": check_reprokitignore,
    "manifest": check_manifest,
    "store-layout": check_store_layout,
    "claims": check_claims,
}


# --- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("section", RUNNABLE, ids=[s.slug for s in RUNNABLE])
def test_readme_section_runs_as_shown(
    section: rb.Section, tmp_path: Path, readme_tools: dict[str, Path]
) -> None:
    box = Sandbox(tmp_path, readme_tools)
    failure = None
    try:
        for item in section.items:
            try:
                box.do(item)
            except ReadmeFailure as exc:
                failure = str(exc)
            except subprocess.TimeoutExpired as exc:
                failure = f"{item.where()}: timed out after {exc.timeout} s"
            if failure:
                pytest.fail(f"README section {section.title!r}: {failure}", pytrace=False)
    finally:
        box.close()


@pytest.mark.parametrize("section,item", SKIPPED, ids=[f"line{i.line}" for _, i in SKIPPED])
def test_readme_block_not_run_here(section: rb.Section, item: rb.Item) -> None:
    reason = item.options.get("skip") or item.options.get("reason", "")
    assert reason.strip(), f'{item.where()}: a skip needs a reason (reason="...")'
    if "skip" not in item.options:
        commands = item.options["skip-command"].replace("|", "`, `")
        reason = f"commands starting `{commands}` not run: {reason}"
    pytest.skip(f"{item.where()} in {section.title!r}: {reason}")


def test_every_readme_block_is_seen() -> None:
    """The parser finds every fence README has (a block it missed would silently go unrun)."""
    text = rb.README.read_text(encoding="utf-8")
    fences = sum(1 for ln in text.splitlines() if re.match(r"^\s*```", ln)) // 2
    blocks = [i for s in SECTIONS for i in s.items if i.kind == "block"]
    assert len(blocks) == fences > 20


# --- the matcher itself: a transcript that no longer matches must fail -----------------------


def _block(text: str, lang: str = "console", **options: str) -> rb.Item:
    return rb.Item("block", 1, lang, text, dict(options))


def test_a_shown_line_matches_only_output_that_differs_in_run_dependent_parts() -> None:
    shown = "verdict: identical (run 20261127-130526-257-d0e180, replay 20261127-130529-154-ba8876)"
    pattern, ids = rb.line_pattern(shown)
    assert ids == ["20261127-130526-257-d0e180", "20261127-130529-154-ba8876"]
    assert pattern.fullmatch(
        "verdict: identical (run 20261201-000000-001-abc123, replay 20261201-000001-002-def456)"
    )
    assert not pattern.fullmatch(
        "verdict: different (run 20261201-000000-001-abc123, replay 20261201-000001-002-def456)"
    )
    bound = {"20261127-130526-257-d0e180": "20261201-000000-001-abc123"}
    pattern, _ = rb.line_pattern(shown, bound=bound)
    assert not pattern.fullmatch(
        "verdict: identical (run 20261201-000000-009-999999, replay 20261201-000001-002-def456)"
    )


def test_numbers_must_match_unless_the_block_says_they_vary() -> None:
    shown = "  return                       different        max abs 0.621, max rel 0.431"
    real = "return different max abs 0.5, max rel 0.431"
    assert not rb.line_pattern(shown)[0].fullmatch(real)
    assert rb.line_pattern(shown, numbers=True)[0].fullmatch(real)
    assert rb.line_pattern("final loss 0.2764")[0].fullmatch("final loss 0.2764")
    assert not rb.line_pattern("final loss 0.2764")[0].fullmatch("final loss 0.2765")


def test_annotations_attach_to_the_next_block_and_hidden_steps_stand_alone() -> None:
    text = (
        "## A\n\n<!-- readme-test: numbers=any -->\n```console\n$ true\n```\n"
        "<!-- readme-test: file=x.txt\nhello\n-->\n```python\n# train.py\nprint(1)\n```\n"
    )
    (section,) = rb.parse(text)
    console, hidden, python = section.items
    assert console.options == {"numbers": "any"} and console.line == 4
    assert hidden.kind == "hidden" and hidden.options == {"file": "x.txt"}
    assert hidden.text == "hello\n"
    assert python.file_name == "train.py" and python.options == {}
    (listed,) = rb.parse("## B\n- a list item:\n\n  ```console\n  $ true\n  ```\n")[0].items
    assert listed.lang == "console" and listed.text == "$ true\n"


def test_a_transcript_whose_output_or_exit_code_drifted_fails(
    tmp_path: Path, readme_tools: dict[str, Path]
) -> None:
    box = Sandbox(tmp_path, readme_tools)
    box.do(_block("$ echo hello\nhello\n$ false\n$ echo $?\n1\n"))
    with pytest.raises(ReadmeFailure, match=r"README.md:3: shown output not in the real"):
        box.do(_block("$ echo hello\nhullo\n"))
    with pytest.raises(ReadmeFailure, match=r"`false` exited 1, the README implies 0"):
        box.do(_block("$ false\n"))
    with pytest.raises(ReadmeFailure, match=r"exited 0, the README shows '2'"):
        box.do(_block("$ true\n$ echo $?\n2\n"))
    with pytest.raises(ReadmeFailure, match=r"an error the README does not show"):
        box.do(_block("$ reprokit show nope   # exit 2\n"))


def test_a_python_block_that_raises_or_warns_fails(
    tmp_path: Path, readme_tools: dict[str, Path]
) -> None:
    box = Sandbox(tmp_path, readme_tools)
    box.do(_block("print('fine')\n", "python"))
    with pytest.raises(ReadmeFailure, match="exit 1, want 0"):
        box.do(_block("raise SystemExit(1)\n", "python"))
    with pytest.raises(ReadmeFailure, match="warned"):
        box.do(_block("import warnings\nwarnings.warn('odd')\n", "python"))


def test_file_examples_are_checked_against_a_real_run(
    tmp_path: Path, readme_tools: dict[str, Path]
) -> None:
    box = Sandbox(tmp_path, readme_tools)
    box.do(
        _block(
            "import reprokit\nwith reprokit.run('x', seed=0) as r:\n"
            "    r.log_metric('loss', 0.5)\n",
            "python",
        )
    )
    manifest = (
        "schema: 1\nrun: {id: x, bogus: 1}\ncode: {}\nparams: {}\nseeds: {}\n"
        "environment: {}\nhardware: {}\noutputs: {}\ndigests: {}\n"
    )
    with pytest.raises(ReadmeFailure, match=r"run\.bogus"):
        check_manifest(box, _block(manifest, "yaml"))
    check_manifest(box, _block(manifest.replace("bogus", "name"), "yaml"))
    with pytest.raises(ReadmeFailure, match="not in a real store"):
        check_store_layout(box, _block(".reprokit/runs/<id>/nothing.yaml   what\n", ""))
    check_store_layout(box, _block(".reprokit/runs/<id>/manifest.yaml   the manifest\n", ""))
    box.bound["20261126-231859-765-a5c3ca"] = box.real_id("latest")
    claims = '- claim: "x"\n  run: "20261126-231859-765-a5c3ca"\n  result: {}\n'
    with pytest.raises(ReadmeFailure, match="'loss' is not a result"):
        check_claims(box, _block(claims.format("loss"), "yaml"))
    check_claims(box, _block(claims.format("metric loss"), "yaml"))
    ignore = _block("# .reprokitignore\nprivate/\n", "text")
    with pytest.raises(ReadmeFailure, match="captured although"):
        check_reprokitignore(box, ignore)  # the file itself was never written
    box.do(ignore)
    check_reprokitignore(box, ignore)
