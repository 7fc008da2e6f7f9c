"""psi_gym's imports follow the data flow and form no cycle (read from the source with `ast`).

Parts, low to high: a module may import its own part and the parts below it, never one above,
and no part imports the CLI. Function-level (lazy) imports count too: they run sooner or later.
The same order as ``../shared/tools/import_layers.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import psi_gym

ORDER = ["sim", "data", "retarget", "world_model", "rewards", "envs", "agents", "flywheel"]
TOP = {"cli", "showcase", "__init__", "__main__"}  # the top floor: may import every part
ROOT = Path(psi_gym.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in ROOT.rglob("*.py")}


def part(module: str) -> str:
    bits = module.split(".")
    return bits[1] if len(bits) > 1 else "__init__"


def imports(module: str, path: Path) -> set[str]:
    """The psi_gym modules ``module`` imports (``from package import submodule`` counts the submodule)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in MODULES else source)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
    return {name for name in found if name == "psi_gym" or name.startswith("psi_gym.")}


GRAPH = {module: imports(module, path) for module, path in MODULES.items()}


def test_every_module_belongs_to_a_part():
    unknown = sorted({part(module) for module in MODULES} - set(ORDER) - TOP)
    assert not unknown, f"modules outside the layer order {ORDER} and the top floor {sorted(TOP)}: {unknown}"


def test_no_import_runs_up_the_data_flow():
    upward = []
    for module, targets in GRAPH.items():
        source = part(module)
        for target in targets:
            if part(target) == "cli" and source not in TOP:
                upward.append(f"{module} -> {target} (imports the CLI)")
            elif source in ORDER and part(target) in ORDER and ORDER.index(part(target)) > ORDER.index(source):
                upward.append(f"{module} -> {target}")
            elif source in ORDER and part(target) in TOP - {"__init__"}:
                upward.append(f"{module} -> {target} (imports the top floor)")
    assert not upward, "imports that run back up the data flow:\n" + "\n".join(sorted(upward))


def test_no_import_cycle():
    graph = {module: {t for t in targets if t in MODULES and t != module} for module, targets in GRAPH.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_walker_sees_what_it_must(tmp_path):
    # the checks above mean something only if the walker finds lazy, relative and package imports
    assert "psi_gym.world_model.checkpoint" in GRAPH["psi_gym.world_model.model"]  # relative
    assert "psi_gym.rewards.object_state" in GRAPH["psi_gym.rewards.object_tracking"]  # inside a function
    assert "psi_gym.retarget.commands" in GRAPH["psi_gym.cli"]  # `from package import module`
