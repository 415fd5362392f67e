"""What the README's reader met as a raw traceback or a silent success (a review that followed it literally): each is
now one line, Chinese first, and exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.cli import main
from tests.server.test_cli import write_config

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "ports",
    [
        ["--mqtt-port", "28999", "--mqtt-tls-port", "28999"],
        ["--mqtt-port", "28997", "--http-port", "28997"],
        ["--http-port", "28996", "--mqtt-tls-port", "28996"],
    ],
)
def test_init_refuses_two_listeners_on_one_port(
    tmp_path: Path, ports: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Mosquitto failed at its start ("Address already in use") on the two `listener 28999` lines init wrote."""
    assert main(["init", str(tmp_path / "court"), *ports]) == 2
    err = capsys.readouterr().err
    assert f"都是端口 {ports[1]}" in err and f"are both port {ports[1]}" in err
    assert err.index("都是端口") < err.index("are both port")
    assert not (tmp_path / "court").exists()  # nothing written


def test_init_refuses_a_port_kept_from_the_court_that_one_given_now_equals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    court = tmp_path / "court"
    assert main(["init", str(court), "--mqtt-tls-port", "28995"]) == 0
    conf = (court / "mosquitto.conf").read_text()
    assert main(["init", str(court), "--force", "--http-port", "28995"]) == 2
    assert "--http-port and --mqtt-tls-port are both port 28995" in capsys.readouterr().err
    assert (court / "mosquitto.conf").read_text() == conf


@pytest.mark.parametrize(("mqtt_host", "refused"), [("127.0.0.1", True), ("localhost", True), ("10.0.0.9", False)])
def test_check_config_refuses_the_api_on_the_port_of_the_broker_on_this_machine(
    tmp_path: Path, mqtt_host: str, refused: bool, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'court.db'}", mqtt_port=28997, http_port=28997)
    text = config.read_text().replace(
        'host = "127.0.0.1"\nport = 28997\nusername', f'host = "{mqtt_host}"\nport = 28997\nusername'
    )
    if mqtt_host == "10.0.0.9":
        text = text.replace('tls_ca_file = ""', 'tls_ca_file = ""\nallow_plaintext = true')
    config.write_text(text)
    assert main(["check-config", "--config", str(config)]) == (2 if refused else 0)
    said = capsys.readouterr()
    assert ("[http] port and [mqtt] port are both 28997" in said.err) is refused
    assert ("ok" in said.out) is not refused


@pytest.mark.parametrize("parent", ["a file", "read-only"])
def test_init_in_a_directory_it_cannot_make_says_so_in_one_line(
    tmp_path: Path, parent: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A PermissionError's traceback, before (a directory where the account may not write)."""
    where = tmp_path / "parent"
    if parent == "a file":
        where.write_text("not a directory\n")
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes in a read-only directory")
        where.mkdir(mode=0o500)
    assert main(["init", str(where / "court")]) == 2
    err = capsys.readouterr().err
    assert f"无法写入 {where / 'court'}" in err and f"cannot write {where / 'court'}" in err
    assert len([line for line in err.splitlines() if " ERROR " in line]) == 1, err


def test_user_add_with_no_terminal_and_no_input_points_at_password_stdin(tmp_path: Path) -> None:
    """getpass with no terminal reads stdin; at its end it raised EOFError, a traceback."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'court.db'}")
    assert run_cli(["init-db", "--config", str(config)]).returncode == 0
    result = run_cli(["user", "add", "chen", "--role", "clerk", "--config", str(config)])
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "EOFError" not in result.stderr
    assert "无法读取密码" in result.stderr and "--password-stdin" in result.stderr


def run_cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    """``seal-server ARGS`` in a process of its own with no terminal (a new session) and stdin at its end."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        start_new_session=True,
        timeout=120,
        check=False,
    )
