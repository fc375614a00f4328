"""The pytest plugin: reproducibility as a test outcome.

Registered through the ``pytest11`` entry point ``reprokit`` (loaded only where reprokit is
installed). It adds:

- ``@pytest.mark.reproducible(runs=2, rtol=0, atol=0, seed=None)``: the test is executed
  ``runs`` times, each in a fresh ``python -m pytest`` process with the same seed, its tracked
  work recorded as runs in a temporary store (the test body as one run, tracked calls inside it
  as its child runs); the test fails naming the first output or checkpoint that diverged.
- the fixture ``reprokit_run``: a started ``reprokit.Run`` for the test, sealing into a
  temporary store (``failed`` with the traceback when the test fails).
- ``--reprokit-seed=N`` (or ``random``): before every test, ``seed_everything(N)``; tracked
  runs take N; the seed is printed in the header so a failing session can be repeated.

Pytest imports this module at start-up, so it imports nothing of reprokit's recording or verbs
here: those load when a test first needs them (the start-up budget is 20 ms).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from reprokit._model.protocol import ChildProtocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_MARKER = "reproducible"
_SEED_KEY = pytest.StashKey["int | None"]()
_CALL_EXC = pytest.StashKey["BaseException | None"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("reprokit", "reprokit: reproducible runs")
    group.addoption(
        "--reprokit-seed",
        metavar="SEED",
        default=None,
        help="seed random, numpy, torch, ... with SEED before every test, and give it to every "
        "tracked run ('random': draw one; it is printed in the header so a failure can be "
        "repeated)",
    )


def _parse_seed(text: str) -> int:
    if text == "random":
        return int.from_bytes(os.urandom(4), "big")
    try:
        seed = int(text)
    except ValueError:
        seed = -1
    if not 0 <= seed <= 2**32 - 1:
        raise pytest.UsageError(
            f"--reprokit-seed expects an integer in 0..{2**32 - 1} or 'random', got {text!r}"
        )
    return seed


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(runs=2, rtol=0, atol=0, seed=None): execute the test's tracked work `runs` "
        "times in fresh processes with the same seed; fail at the first divergent output or "
        "checkpoint",
    )
    raw = config.getoption("reprokit_seed", None)
    seed = None if raw is None else _parse_seed(str(raw))
    config.stash[_SEED_KEY] = seed
    if seed is not None:
        # Tracked runs in this process and in the processes tests start take the session seed.
        config.add_cleanup(_restore_env(ChildProtocol.from_env().seed))
        ChildProtocol(seed=seed).apply(os.environ)


def _restore_env(previous: int | None) -> Any:
    def restore() -> None:
        ChildProtocol(seed=previous).apply(os.environ, unset=("seed",))

    return restore


def pytest_report_header(config: pytest.Config) -> str | None:
    seed = config.stash.get(_SEED_KEY, None)
    if seed is None:
        return None
    return f"Using --reprokit-seed={seed}"


def session_seed(config: pytest.Config) -> int | None:
    """The seed ``--reprokit-seed`` fixed for this session, or None."""
    return config.stash.get(_SEED_KEY, None)


def pytest_runtest_setup(item: pytest.Item) -> None:
    seed = session_seed(item.config)
    if seed is not None:
        from reprokit._seeding import seed_everything

        seed_everything(seed)


# -- the child side: one execution of a reproducible test ---------------------------------------


def _executing(item: pytest.Item) -> ChildProtocol | None:
    """The protocol, when this process is an execution of ``item`` started by the plugin."""
    told = ChildProtocol.from_env()
    if told.test_execution and told.test_execution == _node_arg(item):
        return told
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    wrap = (
        item.get_closest_marker(_MARKER) is not None
        and "reprokit_run" not in getattr(item, "fixturenames", ())
        and _executing(item) is not None
    )
    run = None
    if wrap:
        from reprokit._record.api import run as new_run

        run = new_run(item.name).start()  # the protocol names the store and the seed
    outcome = yield
    exc = outcome.excinfo[1] if outcome.excinfo else None
    item.stash[_CALL_EXC] = exc
    if run is not None:
        from reprokit._record.run import error_of, status_of

        run.finish(*status_of(exc), error=error_of(exc))


# -- the parent side: execute N times and compare -----------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    marker = pyfuncitem.get_closest_marker(_MARKER)
    if marker is None or _executing(pyfuncitem) is not None:
        return None
    _check_reproducible(pyfuncitem, marker)
    return True


def _node_arg(item: pytest.Item) -> str:
    """The test as a command-line argument that works from any folder."""
    rest = item.nodeid.split("::", 1)[1] if "::" in item.nodeid else ""
    return f"{item.path}::{rest}" if rest else str(item.path)


def _bad_marker(message: str) -> None:
    pytest.fail(message, pytrace=False)


def _options(marker: pytest.Mark) -> tuple[int, float, float, int | None]:
    if marker.args:
        _bad_marker(
            f"@pytest.mark.{_MARKER} takes keyword arguments only: runs=2, rtol=0, atol=0, seed"
        )
    unknown = set(marker.kwargs) - {"runs", "rtol", "atol", "seed"}
    if unknown:
        _bad_marker(
            f"@pytest.mark.{_MARKER} has no argument {sorted(unknown)[0]!r} "
            "(it takes runs, rtol, atol, seed)"
        )
    runs = marker.kwargs.get("runs", 2)
    rtol = marker.kwargs.get("rtol", 0)
    atol = marker.kwargs.get("atol", 0)
    seed = marker.kwargs.get("seed")
    if not isinstance(runs, int) or isinstance(runs, bool) or runs < 2:
        _bad_marker(f"@pytest.mark.{_MARKER}(runs=...) must be at least 2, got {runs!r}")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            _bad_marker(f"@pytest.mark.{_MARKER}({name}=...) must be a number >= 0, got {value!r}")
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2**32 - 1
    ):
        _bad_marker(
            f"@pytest.mark.{_MARKER}(seed=...) must be an integer in 0..{2**32 - 1}, got {seed!r}"
        )
    return runs, float(rtol), float(atol), seed


def _child_argv(item: pytest.Item, junit: str) -> list[str]:
    config = item.config
    argv = [sys.executable, "-m", "pytest", _node_arg(item), "-q", "-p", "no:cacheprovider"]
    argv += ["--rootdir", str(config.rootpath), f"--junitxml={junit}"]
    if config.inipath is not None:
        argv += ["-c", str(config.inipath)]
    argv += _forwarded(list(config.invocation_params.args))
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        argv += ["-p", "reprokit.pytest_plugin"]
    return argv


_FORWARD = ("-p", "-o", "--override-ini", "--import-mode", "--confcutdir", "-W")


def _forwarded(args: list[str]) -> list[str]:
    """The options of this session an execution needs to collect the test the same way:
    plugins (``-p``), ini overrides, the import mode, warning filters."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = str(args[i])
        name, eq, _value = arg.partition("=")
        if name in _FORWARD and not eq and i + 1 < len(args):
            out += [arg, str(args[i + 1])]
            i += 1
        elif name in _FORWARD and eq:
            out.append(arg)
        elif arg[:2] in ("-p", "-o", "-W") and len(arg) > 2 and not arg.startswith("--"):
            out.append(arg)  # -pNAME, -oKEY=VALUE, -WFILTER
        i += 1
    return out


def _outcome(junit: str) -> tuple[str, str]:
    """("passed" | "failed" | "skipped" | "missing", message) of the one test in a JUnit file."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(junit).getroot()
    except (OSError, ET.ParseError):
        return "missing", ""
    for case in root.iter("testcase"):
        for tag in ("failure", "error"):
            node = case.find(tag)
            if node is not None:
                return "failed", (node.get("message") or "").strip()
        node = case.find("skipped")
        if node is not None:
            return "skipped", (node.get("message") or "").strip()
        return "passed", ""
    return "missing", ""


def _check_reproducible(item: pytest.Function, marker: pytest.Mark) -> None:
    from reprokit._model import compare as cmp
    from reprokit._reexec.execute import new_runs
    from reprokit._store.store import Store

    runs, rtol, atol, marker_seed = _options(marker)
    seed = session_seed(item.config)
    if seed is None:
        seed = marker_seed if marker_seed is not None else int.from_bytes(os.urandom(4), "big")
    scratch = tempfile.mkdtemp(prefix="reprokit-pytest-")
    store = Store.at(os.path.join(scratch, "store"))
    keep = True
    try:
        executions = []
        for i in range(runs):
            log = os.path.join(scratch, f"runs{i}.log")
            junit = os.path.join(scratch, f"junit{i}.xml")
            env = ChildProtocol(
                store=str(store.root), seed=seed, run_log=log, test_execution=_node_arg(item)
            ).child_env(unset=("parent", "replay_of", "group", "seed_override"))
            env["PYTHONHASHSEED"] = str(seed)
            proc = subprocess.run(
                _child_argv(item, junit),
                cwd=str(item.config.invocation_params.dir),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
            state, message = _outcome(junit)
            if state == "skipped":
                keep = False
                pytest.skip(message or "skipped in its first execution")
            if state != "passed":
                tail = "\n".join(proc.stdout.splitlines()[-40:])
                pytest.fail(
                    f"execution {i + 1} of {runs} (seed {seed}) did not pass"
                    + (f": {message}" if message else "")
                    + f"\n{tail}\n{_repeat(item, seed)}",
                    pytrace=False,
                )
            executions.append(new_runs(store, log))
        differences = _compare(executions, store, rtol, atol, cmp)
        if not executions[0]:
            item.warn(
                pytest.PytestWarning(
                    f"@pytest.mark.{_MARKER}: the test recorded no run; nothing was compared"
                )
            )
        if differences:
            pytest.fail(
                f"not reproducible: {runs} executions with seed {seed} differ\n"
                + "\n".join(differences)
                + f"\nruns kept in store {store.root}\n{_repeat(item, seed)}",
                pytrace=False,
            )
        keep = False
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)


def _repeat(item: pytest.Item, seed: int) -> str:
    return f"repeat with: pytest '{item.nodeid}' --reprokit-seed={seed}"


def _key(m: Any) -> tuple[Any, Any]:
    return m.run.get("name"), m.run.get("ordinal")


def _compare(executions: list[list[Any]], store: Any, rtol: float, atol: float, cmp: Any) -> list:
    """Lines naming what differs between the first execution and each later one, first
    divergence first."""
    from reprokit._verbs.replay import compare_runs

    lines: list[str] = []
    first = executions[0]
    for i, later in enumerate(executions[1:], start=2):
        by_key = {_key(m): m for m in later}
        unmatched = [m for m in later if _key(m) not in {_key(a) for a in first}]
        divergence = None
        found: list[str] = []
        for a in first:
            b = by_key.get(_key(a))
            label = f"{a.run.get('name')}#{a.run.get('ordinal')}"
            if b is None:
                found.append(f"  {label}: run missing in execution {i}")
                continue
            compared = compare_runs(a, b, store, rtol, atol)
            for name, result in compared["outputs"].items():
                if result["verdict"] in (cmp.IDENTICAL, cmp.WITHIN):
                    continue
                found.append(f"  {label}: {name} {_describe(result)}")
                div = result.get("first_divergence")
                if div and divergence is None:
                    divergence = f"{label} checkpoint #{div['index']} ({div.get('name')})"
                    if "max_abs" in div:
                        divergence += f", max abs {div['max_abs']:.6g}"
        for m in unmatched:
            found.append(f"  {m.run.get('name')}#{m.run.get('ordinal')}: only in execution {i}")
        if found:
            head = f"execution {i} against execution 1:"
            if divergence:
                head += f" first divergence at {divergence}"
            lines.append(head)
            lines.extend(found)
    return lines


def _describe(result: dict[str, Any]) -> str:
    parts = [str(result["verdict"])]
    if "max_abs" in result:
        parts.append(f"max abs {result['max_abs']:.6g}, max rel {result['max_rel']:.6g}")
    if "first_step" in result:
        parts.append(f"first at step {result['first_step']}")
    div = result.get("first_divergence")
    if div:
        parts.append(f"first divergence at #{div['index']} ({div.get('name')})")
    if "detail" in result:
        parts.append(str(result["detail"]))
    if "recorded_value" in result:
        parts.append(f"{result['recorded_value']!r} -> {result['replayed_value']!r}")
    return "; ".join(parts)


# -- the fixture ---------------------------------------------------------------------------------


@pytest.fixture
def reprokit_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A started ``reprokit.Run`` for this test, sealing into a temporary store.

    ``log_metric``, ``checkpoint`` and tracked calls inside the test go to it; it is sealed
    when the test ends (``failed``, with the traceback, when the test failed). Its seed is
    ``--reprokit-seed`` when given, else the ``reproducible`` marker's ``seed``, else drawn.
    """
    from reprokit._record.api import run as new_run
    from reprokit._record.run import error_of, status_of

    item = request.node
    marker = item.get_closest_marker(_MARKER)
    if marker is not None and _executing(item) is None:
        # The parent of a reproducibility check: the test body runs only in the executions.
        yield None
        return
    if _executing(item) is not None:
        run = new_run(item.name)  # the protocol names the store and the seed
    else:
        seed = session_seed(item.config)
        if seed is None and marker is not None:
            seed = marker.kwargs.get("seed")
        run = new_run(item.name, seed=seed, store=tmp_path_factory.mktemp("reprokit-store"))
    run.start()
    item.stash[_RUN_KEY] = run
    yield run
    exc = item.stash.get(_CALL_EXC, None)
    if run.status == "running":
        run.finish(*status_of(exc), error=error_of(exc))


_RUN_KEY = pytest.StashKey["Any"]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    run = item.stash.get(_RUN_KEY, None)
    if run is not None and run.id is not None:
        report.sections.append(
            ("reprokit", f"run {run.id} (seed {run.seed}) in store {run.store.root}")
        )
