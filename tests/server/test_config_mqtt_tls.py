"""The court server talks plain MQTT only to a broker on its own machine: a broker elsewhere needs ``[mqtt]
tls_ca_file``, or ``allow_plaintext = true`` by name (then a warning at every start), as a seal's own ``[mqtt]``."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.cli import main
from server.config import load_settings
from server.config_mqtt import plaintext_warning

BASE = """\
database_url = "sqlite:///{dir}/court.db"
snapshot_dir = "{dir}/snapshots"
[mqtt]
host = "{host}"
password_file = "{dir}/court-server.mqtt-password"
"""


def write(tmp_path: Path, host: str, extra: str = "") -> Path:
    path = tmp_path / "server.toml"
    path.write_text(BASE.format(dir=tmp_path, host=host) + extra, encoding="utf-8")
    (tmp_path / "court-server.mqtt-password").write_text("a-password\n")  # check-config reads it
    return path


@pytest.mark.parametrize(
    "host", ["mqtt.court.example", "10.0.0.5", "192.168.1.10", "fd00::1", "localhost.example", "::ffff:10.0.0.5"]
)
def test_plain_tcp_to_a_broker_elsewhere_is_refused(
    host: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, host)
    assert main(["check-config", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert "ok" not in captured.out
    assert "mqtt: tls_ca_file is empty, so the court server's MQTT password" in captured.err
    assert f"in plain text to {host}: set tls_ca_file" in captured.err and "allow_plaintext = true" in captured.err
    assert main(["run", "--config", str(path)]) == 2
    assert main(["ingest", "--config", str(path)]) == 2


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.0.1.1",
        "::1",
        "[::1]",
        "::ffff:127.0.0.1",
        "localhost",
        "LOCALHOST",
        "localhost.",
        "::1%lo",
    ],
)
def test_plain_tcp_to_a_broker_on_this_machine_is_accepted_without_a_warning(
    host: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, host)
    assert plaintext_warning(load_settings(path, env={}).mqtt) is None
    assert main(["check-config", "--config", str(path)]) == 0
    assert "PLAIN TCP" not in capsys.readouterr().err


def test_allow_plaintext_lets_it_through_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "mqtt.court.example", "allow_plaintext = true\n")
    assert main(["check-config", "--config", str(path)]) == 0
    captured = capsys.readouterr()
    assert "ok" in captured.out
    assert "mqtt.allow_plaintext: PLAIN TCP to mqtt.court.example:1883" in captured.err


def test_tls_to_a_broker_elsewhere_is_accepted_without_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "mqtt.court.example", f'tls_ca_file = "{tmp_path / "ca.pem"}"\n')
    (tmp_path / "ca.pem").write_text("")  # read by check-config, not parsed
    assert main(["check-config", "--config", str(path)]) == 0
    assert "PLAIN TCP" not in capsys.readouterr().err


def test_the_file_init_writes_passes_check_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["init", "court"]) == 0
    text = (tmp_path / "court" / "server.toml").read_text(encoding="utf-8")
    assert "allow_plaintext = false" in text
    assert main(["check-config", "--config", str(tmp_path / "court" / "server.toml")]) == 0
