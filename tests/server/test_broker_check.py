"""``seal-server broker check``: whether the court's broker runs, takes the court's account and can be reloaded —
what a pid file alone does not say (README, "Run a court server")."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from seal_dev.broker import PrivateBroker
from server.seals.broker_files import SERVER_USERNAME


def _config(tmp_path: Path, broker: PrivateBroker, password: str) -> list[str]:
    password_file = tmp_path / "server-password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    config = tmp_path / "server.toml"
    config.write_text(
        f"""database_url = "sqlite:///{tmp_path / "court.db"}"
snapshot_dir = "{tmp_path / "snapshots"}"
[mqtt]
port = {broker.port}
password_file = "{password_file}"
[broker]
password_file = "{broker.password_file}"
acl_file = "{broker.acl_file}"
pid_file = "{broker.pid_file}"
""",
        encoding="utf-8",
    )
    return ["broker", "check", "--config", str(config)]


def test_a_running_broker_that_takes_the_court_s_account_is_ok(
    broker: PrivateBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from server.cli import main

    check = _config(tmp_path, broker, broker.users[SERVER_USERNAME])
    assert main(check) == 0
    out = capsys.readouterr().out
    assert f"127.0.0.1:{broker.port}: ok, the account {SERVER_USERNAME} logged in" in out
    assert f"Mosquitto pid {broker.pid_file.read_text().strip()}" in out


def test_a_stopped_broker_is_reported_with_exit_status_1(
    broker: PrivateBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from server.cli import main

    check = _config(tmp_path, broker, broker.users[SERVER_USERNAME])
    pid = broker.pid_file.read_text()
    broker.stop()
    broker.pid_file.write_text(pid)  # as `mosquitto -d` that died leaves it
    assert main(check) == 1
    assert f"127.0.0.1:{broker.port}: not running or not reachable" in capsys.readouterr().out


def test_a_broker_refusing_the_account_or_not_named_by_the_pid_file_is_not_ok(
    broker: PrivateBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from server.cli import main

    check = _config(tmp_path, broker, "not-the-password")
    assert main(check) == 1
    assert f"refused the account {SERVER_USERNAME}: Not authorized" in capsys.readouterr().out
    check = _config(tmp_path, broker, broker.users[SERVER_USERNAME])
    other = subprocess.Popen(["sleep", "1000"])
    try:
        broker.pid_file.write_text(f"{other.pid}\n")  # not the broker: account changes could not reload it
        assert main(check) == 1
        out = capsys.readouterr().out
        assert "ok, the account" in out and f"process {other.pid} is not Mosquitto" in out
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
