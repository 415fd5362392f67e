"""Every ``seal-server`` command line in the README's "Run a court server" and "Upgrade a court server" blocks is one
the installed CLI takes (parsed, not run): a reader who follows the README literally meets no unknown command."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from server.cli import _parser

README = Path(__file__).resolve().parents[1] / "README.md"
S = ["--config", "court/server.toml"]


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n{title}\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _commands(section: str) -> list[list[str]]:
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.split(r"\s(?:\|\||&&|;)\s|\s+#", line)[0].strip()  # the command before any || or comment
            if not line.startswith(".venv/bin/seal-server "):
                continue
            line = line.replace("<key from the Pi>", "KEY")
            words = [w for w in shlex.split(line)[1:] if w != "$S"]
            commands.append([*words, *S] if "$S" in line else words)
    return commands


@pytest.mark.parametrize("title", ["## Run a court server", "### Upgrade a court server"])
def test_the_readme_s_seal_server_commands_exist(title: str) -> None:
    commands = _commands(_section(title))
    assert commands, title
    for words in commands:
        try:
            _parser().parse_args(words)
        except SystemExit as exc:  # argparse's refusal of an unknown command or option
            pytest.fail(f"README ({title}): seal-server {' '.join(words)} is refused by the CLI ({exc})")


def test_the_upgrade_runs_the_migrations_and_checks_the_broker() -> None:
    upgrade = [" ".join(words[:2]) for words in _commands(_section("### Upgrade a court server"))]
    for step in ("init court", "check-config --config", "init-db --config", "broker write-files", "broker check"):
        assert step in upgrade, (step, upgrade)
