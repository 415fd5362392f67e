"""The agent's layout shows its architecture: no circle of imports, and its packages depend one way.

Data flows edge → warning → journal → delivery: the devices and the behaviour record into the journal; the journal
imports neither; only the composition root (``runtime``) and the command line see everything.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import seal_agent

ROOT = Path(seal_agent.__file__).resolve().parent

#: For each part of ``seal_agent``, the parts it may import (any import: module level, in a function, for typing).
ALLOWED = {
    "errors": set(),
    "interfaces": set(),
    "journal": {"errors", "interfaces"},
    "behaviour": {"errors", "interfaces", "journal"},
    "devices": {"errors", "interfaces", "journal"},
    "mqtt": {"errors", "interfaces"},
    "config": {"errors", "devices"},
    "simulate": set(),
    "runtime": {"errors", "interfaces", "config", "journal", "behaviour", "devices", "mqtt"},
    "cli": {"errors", "config", "runtime", "simulate", "devices"},
    "__main__": {"cli"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def imports(name: str, *, module_level_only: bool) -> Iterator[str]:
    """The ``seal_agent`` modules that ``name`` imports (outside ``if TYPE_CHECKING:`` if ``module_level_only``)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text("utf-8"))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parents, base] if base else parents)
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:  # a submodule
                    yield f"{base}.{alias.name}"
                elif base in MODULES:
                    yield base


def part(name: str) -> str:
    """``seal_agent.journal.courier`` → ``journal``."""
    return name.split(".")[1] if "." in name else ""


def test_no_circle_of_imports_at_module_level() -> None:
    graph = {name: set(imports(name, module_level_only=True)) - {name} for name in MODULES}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("circle of imports: " + " → ".join([*path[path.index(name) :], name]))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_packages_depend_one_way() -> None:
    wrong = sorted(
        f"{name} imports {target}"
        for name in MODULES
        if part(name)
        for target in set(imports(name, module_level_only=False))
        if part(target) and part(target) != part(name) and part(target) not in ALLOWED[part(name)]
    )
    assert not wrong, wrong
    assert set(ALLOWED) == {part(name) for name in MODULES if part(name)}, "a new part of seal_agent needs a rule"


def test_modules_stay_small() -> None:
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text("utf-8").splitlines())) > 400}
    assert not long, long
