"""``seal-server court-key``: the court's command-signing key is made once, kept private, and its public half is
printed for the seals' ``[commands] server_public_key``."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from seal_agent.config import CommandsConfig
from seal_protocol.commands import CommandAction, check_command, encode_command, new_command
from seal_protocol.signing import load_signing_key
from server.cli import main
from server.commands.keys import read_court_key
from server.errors import CommandsUnavailable
from tests.server.test_cli import write_config


def config_with_key(tmp_path: Path, key_file: str) -> Path:
    path = write_config(tmp_path, f"sqlite:///{tmp_path / 'court.db'}")
    path.write_text(path.read_text() + f'[commands]\nsigning_key_file = "{key_file}"\n')
    return path


def test_creates_a_private_key_once_and_prints_its_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "keys" / "court-command.key"
    config = config_with_key(tmp_path, str(key_file))

    assert main(["court-key", "--config", str(config)]) == 0
    first = capsys.readouterr().out
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert main(["court-key", "--config", str(config)]) == 0
    assert capsys.readouterr().out == first  # the same key: never overwritten
    [public_key] = first.splitlines()

    # What is printed is what a seal pins, and it verifies what the server signs with the file's key.
    pinned = CommandsConfig(server_public_key=public_key).verify_key()
    assert pinned is not None
    key = load_signing_key(key_file)
    case_no = "(2021)苏0214执1234号"
    data = encode_command(
        new_command(command_id=1, device_id="seal-1", case_no=case_no, action=CommandAction.PING, key=key)
    )
    now = datetime.now(UTC)
    assert check_command(data, device_id="seal-1", case_no=case_no, server_key=pinned, last_accepted_id=0, now=now)


def test_without_a_key_file_setting_it_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'court.db'}")
    assert main(["court-key", "--config", str(config)]) == 2
    assert capsys.readouterr().out == ""


def test_the_server_reads_only_a_key_that_exists(tmp_path: Path) -> None:
    with pytest.raises(CommandsUnavailable, match="signing_key_file"):
        read_court_key(None)
    missing = tmp_path / "court-command.key"
    with pytest.raises(CommandsUnavailable, match="court-key"):
        read_court_key(missing)
    assert not missing.exists()  # the server never makes a key the seals do not know
    missing.write_text("not a key\n")
    with pytest.raises(CommandsUnavailable, match="not a court signing key"):
        read_court_key(missing)
