"""Hostile inputs: manifests built to execute code, explode or confuse the reader, archives built
to escape their folder or to exhaust the disk, run references that look like paths. Each is
refused with one line (exit 2 on the command line), no traceback, nothing executed and nothing
written outside.
"""

from __future__ import annotations

import io
import os
import resource
import shutil
import stat
import subprocess
import sys
import tarfile
import warnings
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from reprokit._store.store import MANIFEST
from reprokit._verbs.archive import Limits, UnsafeArchive, safe_extract
from tests.conftest import clean_env, cli, make_repo, run_python

pytestmark = pytest.mark.stress

_FIGURES: dict[str, tuple[int, int]] = {}  # family -> (refused, tried), for the total

RECORD = """
import reprokit
with reprokit.run("victim", params={"lr": 0.1}, seed=0) as run:
    run.log_metric("loss", 0.5, step=0)
"""


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("hostile") / "repo")
    proc = run_python(repo, RECORD)
    assert proc.returncode == 0, proc.stderr
    store = repo / ".reprokit"
    [rid] = os.listdir(store / "runs")
    return repo, store, rid


def _one_line_error(proc: subprocess.CompletedProcess[str], code: int = 2) -> str | None:
    """None when ``proc`` failed as documented: exit ``code``, one line on stderr, no traceback."""
    ok = (
        proc.returncode == code
        and proc.stderr.count("\n") == 1
        and proc.stderr.startswith("reprokit: error: ")
        and "Traceback" not in proc.stderr + proc.stdout
    )
    return None if ok else f"exit {proc.returncode}: {proc.stderr.strip()[:300]}"


def _listing(root: Path, skip: tuple[Path, ...] = ()) -> set[str]:
    out = set()
    for dirpath, dirs, files in os.walk(root):
        here = Path(dirpath)
        dirs[:] = [d for d in dirs if here / d not in skip]
        out.update(str(here / n) for n in dirs + files)
    return out


# -- manifests -----------------------------------------------------------------------------------


def _manifests(rid: str, marker: Path) -> dict[str, bytes | int]:
    """Hostile manifest contents by name (an int: a sparse file claiming that many bytes)."""
    run = f"run: {{id: {rid}, status: completed, started: '2026-01-01T00:00:00Z'}}\n"
    ok = "schema: 1\n" + run
    touch = f"['touch {marker}']"
    laughs = "schema: 1\n" + run + "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for i in range(1, 10):
        laughs += f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n"
    cases: dict[str, str | bytes | int] = {
        "python/object/apply tag": f"schema: 1\nrun: !!python/object/apply:os.system {touch}\n",
        "python/object/new tag": (
            f"schema: 1\n{run}x: !!python/object/new:subprocess.Popen [[touch, '{marker}']]\n"
        ),
        "python/name tag": "schema: 1\n" + run + "x: !!python/name:os.system\n",
        "python/module tag": "schema: 1\n" + run + "x: !!python/module:os\n",
        "whole document tagged": f"!!python/object/apply:os.system {touch}\n",
        "local tag": f"schema: 1\n{run}x: !shell 'touch {marker}'\n",
        "billion laughs": laughs,
        "one alias": "schema: 1\nr: &r {id: x}\n" + run + "x: *r\n",
        "merge key": f"schema: 1\nbase: &b {{status: completed}}\nrun:\n  <<: *b\n  id: {rid}\n",
        "schema 2": "schema: 2\n" + run,
        "schema 0": "schema: 0\n" + run,
        "schema as a string": "schema: '1'\n" + run,
        "schema huge": "schema: 99999999999999999999\n" + run,
        "schema missing": run,
        "schema null": "schema: null\n" + run,
        "run missing": "schema: 1\nparams: {lr: 0.1}\n",
        "run a list": "schema: 1\nrun: [1, 2]\n",
        "run.id missing": "schema: 1\nrun: {status: completed, started: x}\n",
        "run.id a number": "schema: 1\nrun: {id: 7, status: completed, started: x}\n",
        "run.status missing": f"schema: 1\nrun: {{id: {rid}, started: x}}\n",
        "run.started missing": f"schema: 1\nrun: {{id: {rid}, status: completed}}\n",
        "not a mapping": "- schema\n- 1\n",
        "a scalar": "just text\n",
        "empty": "",
        "comments only": "# nothing here\n",
        "two documents": ok + "---\n" + ok,
        "broken yaml": "schema: 1\nrun: {id: [\n",
        "not utf-8": b"schema: 1\nrun: {id: \xff\xfe, status: completed, started: x}\n",
        "utf-16": ok.encode("utf-16"),
        "lone surrogate bytes": ok.encode() + b"x: \xed\xa0\x80\n",
        "NUL bytes": ok.encode() + b"x: a\x00b\n",
        "control characters": ok + "x: \x07\x1b[2J\n",
        "deep flow sequences": ok + "x: " + "[" * 100_000 + "]" * 100_000 + "\n",
        "deep flow mappings": ok + "x: " + "{a: " * 50_000 + "1" + "}" * 50_000 + "\n",
        "deep block sequences": ok + "x:\n" + "- " * 50_000 + "x\n",
        "300 MB claimed (sparse)": 300 * 1024 * 1024,
    }
    return {k: v.encode() if isinstance(v, str) else v for k, v in cases.items()}


def _show(store: Path, rid: str, content: bytes | int, cwd: Path, *args: str):
    """Put ``content`` in place of the run's manifest in a copy of ``store``; run show."""
    copy = cwd / "store"
    shutil.copytree(store, copy)
    path = copy / "runs" / rid / MANIFEST
    os.chmod(path, 0o644)
    if isinstance(content, int):
        with open(path, "wb") as fh:
            fh.truncate(content)
    else:
        path.write_bytes(content)
    return cli(cwd, "show", rid, "--store", str(copy), *args)


def test_hostile_manifests_get_exit_2_and_one_line(recorded, tmp_path, figure):
    repo, store, rid = recorded
    marker = tmp_path / "pwned"
    cases = _manifests(rid, marker)

    def one(item: tuple[int, tuple[str, bytes | int]]) -> str | None:
        i, (name, content) = item
        cwd = tmp_path / f"c{i}"
        cwd.mkdir()
        problem = _one_line_error(_show(store, rid, content, cwd))
        return None if problem is None else f"{name}: {problem}"

    with ThreadPoolExecutor(4) as pool:
        problems = [p for p in pool.map(one, enumerate(cases.items())) if p]
    assert not marker.exists(), "a manifest executed code"
    assert not problems, "\n".join(problems)
    refused = len(cases) - len(problems)
    _FIGURES["manifests"] = (refused, len(cases))
    figure("hostile manifests refused / tried", f"{refused} / {len(cases)}")


@pytest.mark.parametrize(
    "value", ["1" * 5000, "2001-13-45", "2001-02-30 10:00:00", "!!float 'abc'"]
)
def test_values_pyyaml_cannot_construct_are_a_manifest_error(recorded, tmp_path, value):
    repo, store, rid = recorded
    content = f"schema: 1\nrun: {{id: {rid}, status: completed, started: x}}\nx: {value}\n"
    assert _one_line_error(_show(store, rid, content.encode(), tmp_path)) is None


@pytest.mark.parametrize(
    "extra",
    ["params: 5\n", "code: 7\n", "seeds: x\n", "outputs: x\n", "run2: 1\nrun_entry: 5\n"],
)
def test_sections_of_the_wrong_type_are_a_manifest_error(recorded, tmp_path, extra):
    repo, store, rid = recorded
    run = f"run: {{id: {rid}, status: completed, started: x}}\n"
    if extra.startswith("run2"):
        run, extra = f"run: {{id: {rid}, status: completed, started: x, entry: 5}}\n", ""
    content = f"schema: 1\n{run}{extra}"
    assert _one_line_error(_show(store, rid, content.encode(), tmp_path)) is None


def test_a_huge_manifest_is_refused_before_it_is_read(recorded, tmp_path):
    repo, store, rid = recorded
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    path = copy / "runs" / rid / MANIFEST
    os.chmod(path, 0o644)
    with open(path, "wb") as fh:
        fh.truncate(2 * 1024**3)  # sparse: no disk used

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1024**3, 1024**3))

    proc = subprocess.run(
        [sys.executable, "-m", "reprokit", "show", rid, "--store", str(copy)],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit,
    )
    assert _one_line_error(proc) is None


# -- run references ------------------------------------------------------------------------------

REFS = [
    ("show", "../x"),
    ("show", "a/b"),
    ("show", ".."),
    ("show", "."),
    ("show", "/etc/passwd"),
    ("show", "latest/.."),
    ("show", "..\\x"),
    ("show", ""),
    ("replay", ".."),
    ("replay", "../x"),
    ("verify", "../x"),
    ("verify", "a/b"),
    ("diff", "../x", "latest"),
    ("archive", "..", "-o", "out.tar.gz"),
    ("check", ".."),
    ("seeds", "../x", "-n", "2"),
]


def test_run_references_that_are_paths_get_exit_2(recorded, tmp_path, figure):
    repo, store, rid = recorded
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    # sealed runs where a path reference would lead if it were followed as a path
    shutil.copytree(copy / "runs" / rid, copy / "x")
    shutil.copytree(copy / "runs" / rid, copy / "runs" / "a" / "b")

    def one(args: tuple[str, ...]) -> str | None:
        problem = _one_line_error(cli(repo, *args, "--store", str(copy)))
        return None if problem is None else f"{args}: {problem}"

    with ThreadPoolExecutor(4) as pool:
        problems = [p for p in pool.map(one, REFS) if p]
    assert not problems, "\n".join(problems)
    assert not (repo / "out.tar.gz").exists()
    _FIGURES["refs"] = (len(REFS), len(REFS))
    figure("path-like run references refused / tried", f"{len(REFS)} / {len(REFS)}")


# -- archives ------------------------------------------------------------------------------------


def _tar(path: Path, entries: list[tuple]) -> Path:
    """entries: (name, data) or (name, data, {TarInfo attribute: value})."""
    with tarfile.open(path, "w:gz") as tf:
        for name, data, *kw in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            for k, v in (kw[0] if kw else {}).items():
                setattr(info, k, v)
            tf.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _zip(path: Path, entries: list[tuple]) -> Path:
    """entries: (name, data) or (name, data, st_mode)."""
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")  # duplicate names are the point
        for name, data, *mode in entries:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (mode[0] if mode else stat.S_IFREG | 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return path


SYM, LNK = tarfile.SYMTYPE, tarfile.LNKTYPE


def _archives(outside: Path) -> dict[str, tuple[Callable[[Path], Path], Limits | None]]:
    """Hostile archives by name: (builder(path) -> path, the limits to extract with)."""
    out = str(outside)
    big = b"\0" * (8 * 1024 * 1024)
    small = Limits(max_members=10, max_bytes=1024 * 1024)
    flood = [(f"p/f{i}", b"") for i in range(50)]
    tar_cases = {
        "dotdot": [("p/ok", b"1"), ("p/../../evil.txt", b"x")],
        "leading dotdot": [("../evil.txt", b"x")],
        "backslash dotdot": [("p\\..\\..\\evil.txt", b"x")],
        "absolute": [(f"{out}/abs-evil.txt", b"x")],
        "drive letter": [("C:/evil.txt", b"x")],
        "symlink absolute": [("p/l", b"", {"type": SYM, "linkname": out})],
        "symlink dotdot": [("p/l", b"", {"type": SYM, "linkname": "../../.."})],
        "write through symlink": [
            ("p/l", b"", {"type": SYM, "linkname": "../../.."}),
            ("p/l/evil.txt", b"x"),
        ],
        "hardlink absolute": [("p/h", b"", {"type": LNK, "linkname": "/etc/passwd"})],
        "hardlink dotdot": [("p/h", b"", {"type": LNK, "linkname": "../../evil.txt"})],
        "char device": [("p/d", b"", {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3})],
        "block device": [("p/b", b"", {"type": tarfile.BLKTYPE, "devmajor": 7, "devminor": 0})],
        "fifo": [("p/f", b"", {"type": tarfile.FIFOTYPE})],
        "duplicate": [("p/a", b"1"), ("p/a", b"2")],
        "duplicate after normalising": [("p/a", b"1"), ("p/./a", b"2")],
        "member flood": flood,
        "size bomb": [("p/zeros", big)],
    }
    zip_cases = {
        "dotdot": [("p/ok", b"1"), ("p/../../evil.txt", b"x")],
        "absolute": [(f"{out}/abs-evil.txt", b"x")],
        "symlink absolute": [("p/l", out.encode(), stat.S_IFLNK | 0o777)],
        "symlink dotdot": [("p/l", b"../../..", stat.S_IFLNK | 0o777)],
        "write through symlink": [
            ("p/l", b"../../..", stat.S_IFLNK | 0o777),
            ("p/l/evil.txt", b"x"),
        ],
        "char device": [("p/d", b"", stat.S_IFCHR | 0o644)],
        "fifo": [("p/f", b"", stat.S_IFIFO | 0o644)],
        "socket": [("p/s", b"", stat.S_IFSOCK | 0o644)],
        "duplicate": [("p/a", b"1"), ("p/a", b"2")],
        "member flood": flood,
        "size bomb": [("p/zeros", big)],
    }
    cases: dict[str, tuple[Callable[[Path], Path], Limits | None]] = {}
    for name, entries in tar_cases.items():
        limits = small if "flood" in name or "bomb" in name else None
        cases[f"tar: {name}"] = (lambda p, e=entries: _tar(p.with_suffix(".tar.gz"), e), limits)
    for name, entries in zip_cases.items():
        limits = small if "flood" in name or "bomb" in name else None
        cases[f"zip: {name}"] = (lambda p, e=entries: _zip(p.with_suffix(".zip"), e), limits)
    return cases


def test_hostile_archives_are_refused_with_nothing_written(tmp_path, figure):
    work = tmp_path / "a" / "b"  # room above the extraction folders for an escape to land in
    work.mkdir(parents=True)
    cases = _archives(tmp_path)
    built = {name: build(work / f"case{i}") for i, (name, (build, _)) in enumerate(cases.items())}
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    before = _listing(tmp_path)
    problems: list[str] = []
    tried = 0
    dests = []
    for i, (name, (_, limits)) in enumerate(cases.items()):
        dest = work / f"dest{i}"
        dests.append(dest)
        tried += 1
        try:
            safe_extract(str(built[name]), str(dest), limits)
        except UnsafeArchive as exc:
            if "\n" in str(exc):
                problems.append(f"{name}: message has several lines")
        except Exception as exc:  # noqa: BLE001 - anything else is a finding
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
        else:
            problems.append(f"{name}: extracted")
        if dest.exists() and any(dest.iterdir()):
            problems.append(f"{name}: wrote into the destination before refusing")

    # the command line, with its default limits (bombs are only bombs under small limits)
    env = clean_env(TMPDIR=str(tmpdir))
    on_cli = [n for n, (_, limits) in cases.items() if limits is None]

    def one(name: str) -> str | None:
        problem = _one_line_error(cli(work, "verify", str(built[name]), env=env))
        return None if problem is None else f"{name} (verify): {problem}"

    with ThreadPoolExecutor(4) as pool:
        problems += [p for p in pool.map(one, on_cli) if p]
    tried += len(on_cli)
    after = _listing(tmp_path, skip=tuple(dests))
    written = after - before - {str(d) for d in dests}
    assert not written, f"written outside: {sorted(written)}"
    assert not list(tmpdir.iterdir())
    assert not problems, "\n".join(problems)
    _FIGURES["archives"] = (tried, tried)
    figure("hostile archives refused / tried", f"{tried} / {tried}")


def _chain(fmt: str, path: Path) -> Path:
    """A link to '.', then a link whose target only escapes once the first link is followed
    (``a/a/a/../../..`` is ``p`` on paper, three levels above ``p`` on disk), then a file
    written through it."""
    if fmt == "zip":
        return _zip(
            path.with_suffix(".zip"),
            [
                ("p/a", b".", stat.S_IFLNK | 0o777),
                ("p/b", b"a/a/a/../../..", stat.S_IFLNK | 0o777),
                ("p/b/escaped.txt", b"x"),
            ],
        )
    return _tar(
        path.with_suffix(".tar.gz"),
        [
            ("p/a", b"", {"type": SYM, "linkname": "."}),
            ("p/b", b"", {"type": SYM, "linkname": "a/a/a/../../.."}),
            ("p/b/escaped.txt", b"x"),
        ],
    )


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_a_symlink_chain_cannot_escape(tmp_path, fmt):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    arc = _chain(fmt, work / "chain")
    try:
        safe_extract(str(arc), str(work / "dest"))
        raised: Exception | None = None
    except Exception as exc:  # noqa: BLE001 - which one is the point
        raised = exc
    escaped = list(tmp_path.rglob("escaped.txt"))
    assert not escaped, f"written outside the destination: {escaped}"
    assert isinstance(raised, UnsafeArchive), repr(raised)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    proc = cli(work, "verify", str(arc), env=clean_env(TMPDIR=str(tmpdir)))
    assert _one_line_error(proc) is None
    assert not list(tmp_path.rglob("escaped.txt"))


def test_hostile_inputs_total(figure):
    """The three families together (after the tests above have run)."""
    if len(_FIGURES) < 3:
        pytest.skip("run with the tests above")
    refused = sum(r for r, _ in _FIGURES.values())
    tried = sum(t for _, t in _FIGURES.values())
    assert refused == tried
    figure("hostile inputs refused / tried", f"{refused} / {tried}")
