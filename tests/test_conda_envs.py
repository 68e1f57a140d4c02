"""Conda environments (`snakemake --sdm conda`): every rule's `conda:` file exists, parses, and names
every third-party package that the rule's script imports, directly or through the scalinglab modules
it imports (found statically with ast, lazy imports inside functions included)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml
from workflow_helpers import REPO

SRC = REPO / "src"

# import name -> the names a conda or pip dependency may carry for it
PACKAGE_NAMES = {
    "torch": {"pytorch", "torch", "pytorch-cpu", "pytorch-gpu"},
    "torchvision": {"torchvision"},
    "sklearn": {"scikit-learn"},
    "skdim": {"scikit-dimension"},
    "yaml": {"pyyaml"},
    "PIL": {"pillow"},
    "google": {"protobuf"},
    "mpl_toolkits": {"matplotlib"},
}


def rules() -> list[tuple[str, Path, Path | None, Path | None]]:
    """(rule, rule file, conda file or None, script or None) of every rule, read from the rule files;
    `conda:` and `script:` paths are relative to the rule file, as Snakemake resolves them."""
    found = []
    for smk in [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]:
        blocks = re.split(r"^(?:local)?rule (\w+):", smk.read_text(), flags=re.M)
        for name, body in zip(blocks[1::2], blocks[2::2]):
            body = re.split(r"^\S", body, maxsplit=1, flags=re.M)[0]  # up to the next top-level line
            paths = {}
            for key in ("conda", "script"):
                match = re.search(rf"^\s+{key}:\s*\n?\s*[\"']([^\"']+)[\"']", body, flags=re.M)
                paths[key] = (smk.parent / match.group(1)).resolve() if match else None
            found.append((name, smk, paths["conda"], paths["script"]))
    return found


def module_file(module: str) -> Path | None:
    """The source file of a scalinglab module (a package's __init__.py for a package)."""
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imports_of(path: Path) -> set[str]:
    """Fully qualified names of every module that a file imports, anywhere in it."""
    names = set()
    package = ".".join(path.relative_to(SRC).with_suffix("").parts[:-1]) if SRC in path.parents else ""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(part for part in [*parent, node.module or ""] if part)
            else:
                base = node.module or ""
            names.add(base)
            # `from scalinglab.laws.implicit_bias import figures` imports the module ...implicit_bias.figures
            names.update(f"{base}.{alias.name}" for alias in node.names if module_file(f"{base}.{alias.name}"))
    return names


def third_party_imports(script: Path) -> dict[str, str]:
    """Top-level third-party import names of a script and of every scalinglab module it reaches,
    mapped to the file that imports it first."""
    found: dict[str, str] = {}
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in sorted(imports_of(path)):
            top = name.split(".")[0]
            if top == "scalinglab":
                parts = name.split(".")
                for i in range(1, len(parts) + 1):  # the package's __init__ and every module on the way
                    file = module_file(".".join(parts[:i]))
                    if file:
                        todo.append(file)
            elif top and top not in sys.stdlib_module_names and top != "__future__":
                found.setdefault(top, str(path.relative_to(REPO)))
    return found


def dependency_names(env: dict) -> set[str]:
    """Lower-case package names of an environment's conda and pip dependencies."""
    names = set()

    def name_of(spec: str) -> str:
        spec = spec.split("::")[-1]  # channel::package
        return re.split(r"[\s=<>!~\[;]", spec.strip(), maxsplit=1)[0].lower()

    for dep in env.get("dependencies") or []:
        if isinstance(dep, str):
            names.add(name_of(dep))
        elif isinstance(dep, dict):
            names.update(name_of(spec) for spec in dep.get("pip") or [] if not spec.startswith("-"))
    return names


def missing_packages(env: dict, imports: dict[str, str]) -> list[str]:
    """Import names whose package the environment does not name, with the file that imports it."""
    names = dependency_names(env)
    return [
        f"{module} (imported by {where})"
        for module, where in sorted(imports.items())
        if not PACKAGE_NAMES.get(module, {module.lower(), module.lower().replace("_", "-")}) & names
    ]


RULES = rules()
SCRIPT_RULES = [(name, smk, conda, script) for name, smk, conda, script in RULES if script is not None]


def test_rule_files_are_found():
    names = {name for name, *_ in RULES}
    assert {"all", "teacher", "train_teacher_student", "fit_teacher_student", "perceptron_sweep"} <= names
    assert len(SCRIPT_RULES) >= 10


@pytest.mark.parametrize("name, smk, conda, script", SCRIPT_RULES, ids=[rule[0] for rule in SCRIPT_RULES])
def test_each_rules_env_names_what_its_code_imports(name, smk, conda, script):
    assert script.exists(), f"rule {name}: no script {script}"
    assert conda is not None, f"rule {name} in {smk.name} has no conda: directive"
    assert conda.exists(), f"rule {name}: no conda file {conda}"
    env = yaml.safe_load(conda.read_text())
    assert isinstance(env, dict) and env.get("dependencies"), f"{conda.name}: no dependencies"
    assert env.get("channels"), f"{conda.name}: no channels"
    imports = third_party_imports(script)
    assert missing_packages(env, imports) == [], f"rule {name}: {conda.name} lacks packages"
    # the scripts import the package itself: the env installs it from the repository
    pips = [spec for dep in env["dependencies"] if isinstance(dep, dict) for spec in dep.get("pip") or []]
    assert any(re.fullmatch(r"-e \.\./?|\.\./?", spec.strip()) for spec in pips), (
        f"{conda.name} does not install scalinglab"
    )
    python = [dep for dep in env["dependencies"] if isinstance(dep, str) and name_is(dep, "python")]
    assert python, f"{conda.name} pins no python"


def name_is(spec: str, name: str) -> bool:
    return re.split(r"[\s=<>!~]", spec, maxsplit=1)[0].lower() == name


def test_the_check_can_fail():
    """The analysis sees a lazy import deep in the package, and a missing or renamed package."""
    imports = third_party_imports(REPO / "workflow" / "scripts" / "prepare_dataset.py")
    assert {"torch", "torchvision", "sklearn", "numpy"} <= set(imports)  # sklearn: imported inside digits()
    env = {"channels": ["conda-forge"], "dependencies": ["python=3.11", "pytorch=2.*", "numpy", {"pip": ["-e ../"]}]}
    missing = missing_packages(env, {"torch": "a", "numpy": "b", "sklearn": "c", "yaml": "d"})
    assert missing == ["sklearn (imported by c)", "yaml (imported by d)"]
    env["dependencies"] += ["conda-forge::scikit-learn>=1.5", {"pip": ["PyYAML==6.0"]}]
    assert missing_packages(env, {"sklearn": "c", "yaml": "d"}) == []


def test_from_package_imports_are_followed():
    """`from scalinglab.laws.implicit_bias import figures` inside a function reaches figures.py and so
    matplotlib."""
    imports = imports_of(SRC / "scalinglab" / "perceptron" / "stage.py")
    assert "scalinglab.laws.implicit_bias.figures" in imports
    assert "matplotlib" in third_party_imports(REPO / "workflow" / "scripts" / "analyse_perceptron.py")
