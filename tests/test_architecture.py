"""The package's layout holds: no import circle (imports inside functions included), geometry/ imports no
other cubepose module, and only engine/ (and the edflow dataset classes configs name) imports edflow."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "cubepose"
EDFLOW_ALLOWED = ("cubepose.engine", "cubepose.data.datasets")  # configs name cubepose.data.TrainDataset


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported_names(path: Path, module: str) -> set[str]:
    """Every module an ``import`` or ``from ... import`` anywhere in the file of ``module`` names (functions
    included)."""
    names = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def cubepose_imports(path: Path) -> set[str]:
    """The cubepose modules ``path`` imports (``from a import b`` counts as a.b where b is a module)."""
    return {name for name in imported_names(path, module_name(path)) if name in MODULES} - {module_name(path)}


GRAPH = {name: cubepose_imports(path) for name, path in MODULES.items()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each a circle of imports."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_circle():
    assert import_cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_circle_hidden_inside_a_function(tmp_path):
    graph = dict(GRAPH)
    graph["cubepose.geometry.rotations"] = GRAPH["cubepose.geometry.rotations"] | {"cubepose.evaluation.metrics"}
    cycles = import_cycles(graph)
    assert any({"cubepose.geometry.rotations", "cubepose.evaluation.metrics"} <= set(cycle) for cycle in cycles)
    module = tmp_path / "cubepose" / "late.py"
    module.parent.mkdir()
    module.write_text("def f():\n    from cubepose.evaluation.evaluator import Evaluation\n    return Evaluation\n")
    assert "cubepose.evaluation.evaluator" in imported_names(module, "cubepose.late")


def test_geometry_imports_no_other_cubepose_module():
    outside = {
        name: sorted(target for target in targets if not target.startswith("cubepose.geometry"))
        for name, targets in GRAPH.items()
        if name.startswith("cubepose.geometry")
    }
    assert {name: targets for name, targets in outside.items() if targets} == {}


def test_geometry_runs_in_a_python_with_no_other_cubepose_module_loaded():
    code = (
        "import sys, cubepose.geometry.object, cubepose.geometry.camera, cubepose.geometry.symmetries; "
        "print(sorted(m for m in sys.modules if m.startswith('cubepose.') and not m.startswith('cubepose.geometry')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_only_the_engine_imports_edflow_and_chainer():
    importers = sorted(
        name
        for name, path in MODULES.items()
        if any(imported.split(".")[0] in ("edflow", "chainer") for imported in imported_names(path, name))
        and not name.startswith(EDFLOW_ALLOWED)
    )
    assert importers == []


@pytest.mark.parametrize(
    "entry",
    [
        "cubepose.iterator.Iterator",
        "cubepose.evaluation.unity_metrics",
        "cubepose.evaluation.pose_metrics",
        "cubepose.evaluation.report",
        "cubepose.data.TrainDataset",
        "cubepose.data.ValidationDataset",
        "cubepose.data.TestDataset",
        "cubepose.models.pose_network",
        "cubepose.losses.register_loss",
        "cubepose.config.component_check",
    ],
)
def test_entry_points_named_by_configs_and_old_runs_still_resolve(entry):
    """What configs and the meta.yaml of runs made before the layout changed name, resolved as edflow does."""
    module, attribute = entry.rsplit(".", 1)
    found = getattr(importlib.import_module(module), attribute)
    assert callable(found)
    if entry == "cubepose.evaluation.report":
        from cubepose.engine.callbacks import report

        assert found is report  # the callback, not the html_report module
