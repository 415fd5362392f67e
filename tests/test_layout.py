"""The layout keeps the architecture: no circle of imports, packages that depend one way, route modules apart.

Read from the source with :mod:`ast` (no import is executed), so a cycle hidden behind a function-level import
counts too.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("seal_protocol", "seal_agent", "server", "seal_dev", "seal_verify")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "versions" not in path.parts:  # the Alembic revisions are data, run by Alembic
                found[module_name(path)] = path
    return found


def imports(path: Path, known: Iterable[str]) -> set[str]:
    """The modules of ours that ``path`` imports, anywhere in it (``from a import b`` may name the module a.b;
    relative imports are resolved against the module's package)."""
    known = set(known)
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parents, base] if base else parents)
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(name for name in names if name in known)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(path, found) - {name} for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(edges.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
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

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def area(module: str) -> str:
    """The package a module belongs to: ``server.ingest.batch`` → ``server.ingest``; loose modules stand alone."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_no_module_imports_itself_through_others() -> None:
    assert cycles(graph()) == []


def test_packages_depend_one_way() -> None:
    areas: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph().items():
        areas[area(module)].update(area(target) for target in targets if area(target) != area(module))
    assert cycles(areas) == []


@pytest.mark.parametrize(
    ("package", "must_not_import"),
    [
        ("seal_protocol", ("seal_agent", "seal_verify", "server", "seal_dev")),
        ("seal_agent", ("server", "seal_dev")),
        ("server", ("seal_agent", "seal_dev")),
        ("seal_verify", ("server", "seal_agent", "seal_dev")),  # the offline verifier needs no server
    ],
)
def test_the_wire_contract_and_the_two_sides_stay_apart(package: str, must_not_import: tuple[str, ...]) -> None:
    wrong = {
        (module, target)
        for module, targets in graph().items()
        if module.split(".")[0] == package
        for target in targets
        if target.split(".")[0] in must_not_import
    }
    assert wrong == set()


def test_the_foundations_import_no_area_above_them() -> None:
    """``server.core`` (tables' base, engines, the MQTT client, the workers' loop) and the audit log sit under every
    area of the server; below them only the configuration, the errors and the wire contract."""
    edges = graph()
    for low in ("server.core", "server.audit"):
        above = {
            target
            for module, targets in edges.items()
            if area(module) == low
            for target in targets
            if area(target) not in (low, "server.core", "server.errors", "server.config")
            and not target.startswith("seal_protocol")
        }
        assert above == set(), low


def test_route_modules_do_not_import_each_other() -> None:
    routes = {
        module_name(path)
        for path in (ROOT / "server" / "api").glob("*.py")
        if path.name != "__init__.py" and "router = " in path.read_text(encoding="utf-8")  # __init__ mounts them
    }
    edges = graph()
    assert {(module, target) for module in routes for target in edges[module] & routes} == set()


#: The seal's parts and what each may import. Data flows edge → warning → journal → delivery: the devices and the
#: behaviour record into the journal, the journal imports neither; only the composition root (``runtime``) and the
#: command line see everything.
AGENT_ALLOWED = {
    "errors": set(),
    "interfaces": set(),
    "journal": {"errors", "interfaces"},
    "behaviour": {"errors", "interfaces", "journal"},
    "devices": {"errors", "interfaces", "journal"},
    "connection_stamps": set(),
    "mqtt": {"errors", "interfaces", "mqtt_commands", "connection_stamps", "mqtt_socket", "mqtt_backoff"},
    "mqtt_backoff": set(),
    "mqtt_commands": {"errors", "interfaces"},
    "mqtt_socket": set(),
    "config_types": set(),
    "config": {"errors", "devices", "config_types"},
    "config_checks": {"errors", "config", "devices"},
    "pin_checks": {"config"},
    "simulate": set(),
    "runtime": {
        "errors",
        "interfaces",
        "config",
        "journal",
        "behaviour",
        "devices",
        "mqtt",
        "connection_stamps",
        "state_checks",
    },
    "state_checks": {"errors", "config", "config_checks", "connection_stamps", "journal"},
    "cli": {"errors", "config", "config_checks", "pin_checks", "runtime", "simulate", "devices", "state_checks"},
    "__main__": {"cli"},
}


def test_the_seal_s_parts_depend_one_way() -> None:
    def part(module: str) -> str:
        return module.split(".")[1] if module.startswith("seal_agent.") else ""

    edges = graph()
    parts = {part(module) for module in edges if part(module)}
    assert parts == set(AGENT_ALLOWED), "a new part of seal_agent needs a rule here"
    wrong = {
        (module, target)
        for module, targets in edges.items()
        if part(module)
        for target in targets
        if part(target) and part(target) != part(module) and part(target) not in AGENT_ALLOWED[part(module)]
    }
    assert wrong == set()


def test_modules_stay_small() -> None:
    """A module past ~400 lines is usually two modules (the Alembic revisions are data and do not count)."""
    long = {name: n for name, path in modules().items() if (n := len(path.read_text("utf-8").splitlines())) > 400}
    assert long == {}


def test_every_table_is_collected_for_the_migrations() -> None:
    """Each package's ``models`` module is imported by the one collector Alembic reads."""
    collector = ROOT / "server" / "migrations" / "metadata.py"
    collected = imports(collector, modules())
    owned = {name for name in modules() if name.startswith("server.") and name.endswith(".models")}
    assert owned <= collected
