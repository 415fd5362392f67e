"""The server signals the process ``[broker] pid_file`` names only when it is this court's Mosquitto: a stale pid file
(a broker that died, a reboot) may name any process by then, which must survive an account change; the change itself
still succeeds, and the operator is told that no broker runs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from seal_dev.broker import PrivateBroker
from seal_protocol.signing import generate_signing_key, public_key_b64
from tests.agent.helpers import wait_until
from tests.server.test_mqtt_disable import _connects

CASE = "(2021)苏0214执1234号"


@pytest.fixture
def court(tmp_path: Path, database_url: str) -> Iterator[tuple[PrivateBroker, list[str]]]:
    from server.cli import main

    broker = PrivateBroker(tmp_path / "broker", manage_accounts=False)
    config = tmp_path / "server.toml"
    config.write_text(
        f"""database_url = "{database_url}"
snapshot_dir = "{tmp_path / "snapshots"}"
[mqtt]
port = {broker.port}
password_file = "{tmp_path / "server-password"}"
[broker]
password_file = "{broker.password_file}"
acl_file = "{broker.acl_file}"
pid_file = "{broker.pid_file}"
""",
        encoding="utf-8",
    )
    base = ["--config", str(config)]
    assert main(["init-db", *base]) == 0
    assert main(["case", "add", CASE, "--court", "无锡市新吴区人民法院", *base]) == 0
    try:
        yield broker, base
    finally:
        broker.stop()


def _add_seal(base: list[str], device_id: str, password_file: Path) -> None:
    from server.cli import main

    key = public_key_b64(generate_signing_key())
    add = ["seal", "add", device_id, "--case", CASE, "--public-key", key, "--mqtt-password-file", str(password_file)]
    assert main([*add, *base]) == 0


def test_a_stale_pid_file_naming_another_program_signals_nothing(
    court: tuple[PrivateBroker, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker, base = court
    victim = subprocess.Popen(["sleep", "1000"])
    try:
        broker.pid_file.write_text(f"{victim.pid}\n")
        capsys.readouterr()
        _add_seal(base, "seal-a", tmp_path / "seal-a.password")  # the change succeeds
        out = capsys.readouterr().out
        assert f"no broker running (stale pid file {broker.pid_file}: process {victim.pid} is not Mosquitto" in out
        assert "start it, the accounts are in the files" in out and "reloaded" not in out
        assert "seal-a:" in broker.password_file.read_text()
        assert victim.poll() is None  # it would have died of SIGHUP
    finally:
        victim.kill()
        victim.wait()


def test_a_pid_file_naming_a_zombie_or_no_process_signals_nothing(
    court: tuple[PrivateBroker, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker, base = court
    dead = subprocess.Popen(["true"])  # not reaped until the end: a zombie meanwhile
    try:
        stat = Path(f"/proc/{dead.pid}/stat")
        assert wait_until(lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "Z", 10)
        broker.pid_file.write_text(f"{dead.pid}\n")
        capsys.readouterr()
        _add_seal(base, "seal-a", tmp_path / "seal-a.password")
        assert f"process {dead.pid} has ended (a zombie)" in capsys.readouterr().out
    finally:
        dead.wait()
    broker.pid_file.write_text(f"{dead.pid}\n")  # reaped: no such process (or one that is not Mosquitto)
    from server.cli import main

    assert main(["seal", "rotate-password", "seal-a", *base, "--mqtt-password-file", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert "no broker running (stale pid file" in out and "reloaded" not in out


def test_a_mosquitto_of_another_configuration_is_not_signalled(
    court: tuple[PrivateBroker, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker, base = court
    with PrivateBroker(tmp_path / "other") as other:
        broker.pid_file.write_text(other.pid_file.read_text())
        capsys.readouterr()
        _add_seal(base, "seal-a", tmp_path / "seal-a.password")
        out = capsys.readouterr().out
        assert "is a Mosquitto of another configuration" in out and "reloaded" not in out
        assert "Reloading config" not in other.log_path.read_text(errors="replace")


def test_the_court_s_own_mosquitto_is_reloaded(
    court: tuple[PrivateBroker, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker, base = court
    _add_seal(base, "seal-a", tmp_path / "seal-a.password")  # the broker's files written
    broker.start()
    capsys.readouterr()
    _add_seal(base, "seal-new", tmp_path / "seal-new.password")  # an account the running broker did not know
    out = capsys.readouterr().out
    assert f"broker (pid {broker.pid_file.read_text().strip()}) reloaded" in out
    assert wait_until(lambda: "Reloading config" in broker.log_path.read_text(errors="replace"), 10)
    assert _connects(broker, "seal-new", (tmp_path / "seal-new.password").read_text().strip())
