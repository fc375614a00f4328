"""The layout holds: imports point one way, no cycles, one home for the parent/child protocol."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "reprokit"
ROOT = PACKAGE.parent
# Loaded at the start of every process they serve, within a start-up budget: the pytest plugin
# (every pytest session) and the start-up hook `reprokit run` puts in Python children (<= 5 ms).
# They import the rest of reprokit only when they need it. The package root names lazily.
LAZY_ALLOWED = {
    "reprokit",
    "reprokit.pytest_plugin",
    "reprokit._record.bootstrap",
    "reprokit._record.startup.sitecustomize",
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _internal_imports(path: Path, name: str) -> list[tuple[str, bool]]:
    """(imported reprokit module, at module top?) for every import in ``path``."""
    tree = ast.parse(path.read_text("utf-8"))
    top_level = {id(node) for node in tree.body}
    # `if TYPE_CHECKING:` blocks at the top count as top level (they are annotations only).
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            top_level.update(id(n) for n in node.body)
    found = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            if base == "reprokit" or base.startswith("reprokit."):
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.append((sub if sub in MODULES else base, id(node) in top_level))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("reprokit"):
                    found.append((alias.name, id(node) in top_level))
    return found


MODULES = _modules()


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        deps = set()
        for target, _top in _internal_imports(path, name):
            while target not in MODULES and "." in target:
                target = target.rpartition(".")[0]
            if target != name:
                deps.add(target)
        graph[name] = deps
    return graph


def test_the_import_graph_has_no_cycles():
    graph = _graph()
    # The package root only names things lazily (TYPE_CHECKING imports): leave it out, as
    # Python does at run time.
    graph.pop("reprokit", None)
    for deps in graph.values():
        deps.discard("reprokit")
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == []


def test_internal_imports_are_at_module_top():
    hidden = [
        f"{name} imports {target} inside a function"
        for name, path in MODULES.items()
        if name not in LAZY_ALLOWED
        for target, top in _internal_imports(path, name)
        if not top
    ]
    assert hidden == []


def test_only_the_protocol_spells_reprokit_variables():
    offenders = []
    for name, path in MODULES.items():
        if name == "reprokit._model.protocol":
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            # Named in prose ("$REPROKIT_STORE" in a help text) is fine; used as a key is not.
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and re.search(r"(?<![$\w])REPROKIT_[A-Z_]+", text):
                offenders.append(f"{name}: {text[:60]!r}")
    assert offenders == []


def test_layering_contract_is_kept():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.skip("import-linter is not installed (pip install '.[test]')")
    proc = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "broken" not in proc.stdout.split("Contracts:")[-1].split(",")[0]


def test_every_library_exception_derives_from_reprokit_error():
    import reprokit

    for name in reprokit.__all__:
        value = getattr(reprokit, name)
        if isinstance(value, type) and issubclass(value, Exception) and name != "ReprokitWarning":
            assert issubclass(value, reprokit.ReprokitError), name


def test_reports_are_frozen_and_share_one_json_form():
    import dataclasses

    import reprokit

    reports = [n for n in reprokit.__all__ if n.endswith("Report")]
    assert len(reports) >= 7, reports
    for name in reports:
        cls = getattr(reprokit, name)
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, name
        assert cls.to_dict is reprokit.ReplayReport.to_dict, name  # one shared implementation
    report = reprokit.VerifyReport(
        run_id="r", intact=True, manifest_sha256="m", files=1, objects=0, ledger_head="h"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.intact = False  # type: ignore[misc]
    assert report.to_dict()["schema"] == 1 and report.to_dict()["run"] == "r"
