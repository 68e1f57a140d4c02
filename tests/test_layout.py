"""The package's layout holds: imports flow one way (experiments -> laws, datasets -> core), no
module imports itself back through others, no module passes 450 lines, and the grid modules that the
rule files import at parse time stay free of heavy packages."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from workflow_helpers import REPO

SRC = REPO / "src"
PACKAGE = SRC / "scalinglab"
EXPERIMENTS = {"teacher_student", "images", "perceptron", "deep_nets", "joint", "random_features"}
SHARED = {"core", "laws", "datasets", "dimension"}
# subpackage -> the subpackages it may import (besides itself)
ALLOWED = {
    "core": set(),
    "laws": {"core"},
    "datasets": {"core"},
    "dimension": {"core", "datasets"},
    **{name: {"core", "laws", "datasets", "dimension"} for name in EXPERIMENTS},
    "cli": SHARED | EXPERIMENTS,
    "report": {"core"},  # reads the experiments' fit files, imports none of them
}
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: Path) -> set[str]:
    """The scalinglab modules a file imports anywhere in it (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(name for name in names if name in MODULES and name != "scalinglab")
    return found


GRAPH = {name: imported_modules(path) - {name} for name, path in MODULES.items()}


def subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and MODULES[module].name == "__init__.py") else None


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if not state.get(nxt) and (cycle := visit(nxt, stack)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if not state.get(node) and (cycle := visit(node, [])):
            return cycle
    return None


def test_the_checks_can_fail():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert subpackage("scalinglab.laws.joint.fit") == "laws" and subpackage("scalinglab.core") == "core"
    assert "scalinglab.core.io" in GRAPH["scalinglab.teacher_student.stage"]  # lazy imports are seen too


def test_no_import_cycle():
    assert find_cycle(GRAPH) is None


@pytest.mark.parametrize("module", sorted(m for m in MODULES if subpackage(m)))
def test_imports_flow_one_way(module):
    """Experiments never import each other; the shared floors never import an experiment. The one
    reading across: teacher_student and images put d-hat beside 4/alpha through dimension.table."""
    home = subpackage(module)
    for target in GRAPH[module]:
        other = subpackage(target)
        if other is None or other == home:
            continue
        assert other in ALLOWED[home], f"{module} imports {target}: {home} may import only {sorted(ALLOWED[home])}"
        if home in EXPERIMENTS and other == "dimension":
            assert target == "scalinglab.dimension.table", f"{module} imports {target}; read the table instead"


def test_the_top_level_holds_only_the_package_face():
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_over_450_lines(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it along the seam between its jobs"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.endswith(".grid")))
def test_grid_modules_import_nothing_heavy(module):
    """The rule files import the grids while Snakemake parses them: torch there would cost every
    `snakemake` call seconds."""
    tree = ast.parse(MODULES[module].read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top == "__future__" or name == "scalinglab.core.config", (
                    f"{module} imports {name}"
                )


def test_every_experiment_has_one_folder_and_one_rule_file():
    rules = {path.stem for path in (REPO / "workflow" / "rules").glob("*.smk")}
    for experiment in EXPERIMENTS | {"dimension"}:
        assert (PACKAGE / experiment / "__init__.py").exists(), experiment
        assert experiment in rules, f"no workflow/rules/{experiment}.smk"
    assert rules - EXPERIMENTS - {"dimension"} == {"common", "datasets", "summary"}
