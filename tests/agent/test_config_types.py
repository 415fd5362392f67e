"""A value of the wrong TOML type in the seal's configuration is refused, naming its key, never converted. Found by a
hostile review: pydantic's lax mode took ``[pir] pin = true`` as GPIO1 (the HAT EEPROM's pin: the PIR watched the
wrong pin and never fired), ``heartbeat_s = true`` as a heartbeat every second and ``[tamper] enabled = "off"`` as a
tamper switch turned off, and ``check-config`` printed OK."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from seal_agent.cli import main
from seal_agent.config import CONFIG_LEAD, load_config
from tests.agent.helpers import SEAL_AGENT, agent_env
from tests.agent.test_config import EXAMPLE, VALID, write

BOOLEAN = "文件中写的是布尔值 true"
OFF = (
    'tamper.enabled: 应为 true 或 false，文件中写的是文字 "off"（TOML 的数字和 true、false 不加引号） / '
    'expected true or false, the file has the string "off" (TOML writes numbers, true and false without quotes)'
)


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        (
            "pin = 17",
            "pin = true",
            f"pir.pin: 应为整数，{BOOLEAN} / expected an integer, the file has the boolean true",
        ),
        (
            "heartbeat_s = 60",
            "heartbeat_s = true",
            f"heartbeat_s: 应为数字，{BOOLEAN} / expected a number, the file has",
        ),
        ("[commands]", '[tamper]\nenabled = "off"\n[commands]', OFF),
        ("port = 1883", "port = true", "mqtt.port: 应为整数，文件中写的是布尔值 true"),
        (
            "[commands]",
            '[tamper]\nenabled = "no"\n[commands]',
            'tamper.enabled: 应为 true 或 false，文件中写的是文字 "no"（',
        ),
        ("heartbeat_s = 60", 'heartbeat_s = "60"', 'heartbeat_s: 应为数字，文件中写的是文字 "60"'),
        ("pin = 17", "pin = 17.0", "pir.pin: 应为整数，文件中写的是小数 17.0"),
        ("keepalive_s = 30", 'keepalive_s = "30"', 'mqtt.keepalive_s: 应为整数，文件中写的是文字 "30"'),
        ('tls_ca_file = ""', "tls_ca_file = 1", "mqtt.tls_ca_file: 应为加引号的路径，文件中写的是整数 1"),
        ("[commands]", "[camera]\nfps = true\n[commands]", "camera.fps: 应为数字，文件中写的是布尔值 true"),
    ],
)
def test_check_config_refuses_a_value_of_another_toml_type_naming_its_key(
    tmp_path: Path, old: str, new: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert VALID.count(old) == 1
    path = write(tmp_path, VALID.replace(old, new))
    assert main(["check-config", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "OK" not in out
    assert f"{CONFIG_LEAD}\n  {said}" in err, err


def test_the_installed_command_refuses_the_review_s_file_with_every_key_named(tmp_path: Path) -> None:
    """The reviewer's file, through the ``seal-agent`` console script: exit status 2, each of the three keys."""
    text = (
        VALID.replace("heartbeat_s = 60", "heartbeat_s = true")
        .replace("pin = 17", "pin = true")
        .replace("[commands]", '[tamper]\nenabled = "off"\npin = 27\n[commands]')
    )
    done = subprocess.run(
        [str(SEAL_AGENT), "check-config", "--config", str(write(tmp_path, text))],
        capture_output=True,
        text=True,
        env=agent_env(),
        check=False,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    for key in ("heartbeat_s: 应为数字", "pir.pin: 应为整数", "tamper.enabled: 应为 true 或 false"):
        assert f"\n  {key}，文件中写的是" in done.stderr, done.stderr


def test_values_of_their_key_s_type_stay_accepted(tmp_path: Path) -> None:
    """A whole number for a key that takes fractions, paths as strings, ``""`` for an unset path."""
    text = VALID.replace("heartbeat_s = 60", "heartbeat_s = 90").replace("[commands]", "[camera]\nfps = 2\n[commands]")
    config = load_config(write(tmp_path, text))
    assert config.heartbeat_s == 90.0 and isinstance(config.heartbeat_s, float)
    assert config.camera.fps == 2.0
    assert config.state_dir == tmp_path / "state" and config.mqtt.password_file == tmp_path / "pw"
    assert config.mqtt.tls_ca_file is None and config.warning.sounds_dir is None
    assert load_config(EXAMPLE).warning.sounds_dir == Path("/opt/court-seal/sounds")  # hardware/agent.example.toml
