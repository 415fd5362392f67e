"""Every third-party module a package of the product imports is installed by what its README line installs: the
server by ``pip install '.[server]'``, the seal by ``'.[agent]'``, seal-verify and the wire contract by the base
package. ``make test`` installs every extra at once, so a module missing from one extra (numpy, brought into the
server by the PDF proofs' predictor check, was declared for the agent only) imports fine here and fails on a court's
server at its first command; this test reads the imports and the declared requirements instead.

A module counts as installed when its distribution is among the requirements, or among what they require in turn
(starlette through fastapi)."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
OURS = {"seal_agent", "seal_protocol", "seal_verify", "server", "seal_dev"}

#: Each package of the product, and the extras its installation names.
INSTALLED_WITH = {
    "seal_protocol": (),
    "seal_verify": (),
    "seal_agent": ("agent",),
    "server": ("server",),
}


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def _requirements(extras: tuple[str, ...]) -> set[str]:
    """The distributions ``pip install '.[extras]'`` installs: the project's requirements for those extras and,
    recursively, what each of them requires (without their own extras)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = list(project["dependencies"])
    for extra in extras:
        wanted += project["optional-dependencies"][extra]
    found: set[str] = set()
    while wanted:
        requirement = Requirement(wanted.pop())
        environment = {**default_environment(), "extra": ""}
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        name = _name(requirement.name)
        if name in found:
            continue
        found.add(name)
        try:
            wanted += metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue
    return found


def _imports(package: str) -> dict[str, str]:
    """Top-level modules imported by ``package`` (absolute imports, at any depth of the file) → one file doing so."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.partition(".")[0], str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize("package", sorted(INSTALLED_WITH))
def test_every_module_a_package_imports_is_installed_with_it(package: str) -> None:
    installed = _requirements(INSTALLED_WITH[package])
    distributions = metadata.packages_distributions()
    missing = []
    for module, where in sorted(_imports(package).items()):
        if module in OURS or module in sys.stdlib_module_names or module == "__future__":
            continue
        names = {_name(d) for d in distributions.get(module, [])}
        if not names & installed:
            missing.append(f"{module} ({where}; distribution {sorted(names) or 'unknown'})")
    assert missing == [], f"{package} imports what {INSTALLED_WITH[package] or 'the base package'} does not install"


def test_the_server_needs_numpy_declared() -> None:
    """The check itself: numpy, which the server imports, is found only through the server extra."""
    assert "numpy" in _imports("server")
    assert "numpy" in _requirements(("server",))
