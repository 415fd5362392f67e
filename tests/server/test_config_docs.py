"""The settings the README and docs/ name are the server's real ones: a renamed, removed or misspelt key in the text,
or a new key the README does not name, fails here instead of in an administrator's hands."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest
from pydantic import BaseModel

from seal_agent.config import AgentConfig
from server.config import Settings, parse_settings
from tests.agent.helpers import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: What any file needs besides the keys a document's example sets.
REQUIRED = {"database_url": "sqlite:///court.db", "snapshot_dir": "snapshots", "mqtt": {"password_file": "pw"}}


def sections(model: type[BaseModel]) -> dict[str, set[str]]:
    """``{section: its keys}`` of a settings model; top-level keys under ``""``."""
    result: dict[str, set[str]] = {"": set()}
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            result[name] = set(kind.model_fields)
        else:
            result[""].add(name)
    return result


def test_every_section_and_key_a_document_names_is_a_setting() -> None:
    server, agent = sections(Settings), sections(AgentConfig)
    named = [
        (path.name, section, key)
        for path in DOCS
        for section, key in re.findall(r"`\[(\w+)\]\s+(\w+)", path.read_text(encoding="utf-8"))
    ]
    assert len(named) > 40, named  # the pattern still finds what the documents write
    unknown = [n for n in named if n[2] not in server.get(n[1], set()) | agent.get(n[1], set())]
    assert not unknown, f"(document, section, key) that neither the server nor the seal has: {unknown}"


def test_the_readme_names_every_setting_of_the_server() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("\n## Configuration\n")
    configuration = readme[start : readme.index("\n## ", start + 1)]
    missing = [f"[{section}]" for section in sections(Settings) if section and f"`[{section}]`" not in configuration]
    missing += [key for keys in sections(Settings).values() for key in keys if not re.search(rf"\b{key}\b", readme)]
    assert not missing, f"settings the README does not name: {missing}"


def test_the_readme_s_list_of_the_seal_s_keys_is_the_seal_s() -> None:
    """The README says agent.example.toml documents every key and lists them: the list had left out heartbeat_s,
    [sensors] and [delivery]."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    listed = re.search(r"agent\.example\.toml\) documents every key \(([^)]*)\)", readme)
    assert listed, "the README no longer lists the seal's keys"
    names = set(re.findall(r"`([^`]+)`", listed.group(1)))
    agent = sections(AgentConfig)
    assert names == agent[""] | {f"[{section}]" for section in agent if section}


def deploy_examples() -> list[str]:
    text = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    return re.findall(r"^```toml\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in extra.items():
        result[key] = merged(result[key], value) if isinstance(value, dict) and key in result else value
    return result


@pytest.mark.parametrize("example", deploy_examples(), ids=lambda block: block.split("\n", 1)[0])
def test_the_deploy_guides_examples_are_valid_settings(example: str) -> None:
    parse_settings(merged(REQUIRED, tomllib.loads(example)), env={})  # raises ConfigError naming a refused key


def test_the_deploy_guide_has_its_examples() -> None:
    assert [block.split("\n", 1)[0] for block in deploy_examples()] == ["[http]", "[mqtt]", "[ingest]", "[storage]"]
