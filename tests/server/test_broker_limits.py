"""The court's broker against outsiders (a hostile review, on Mosquitto 2.0.11): the seals' TLS listener holds a bounded
number of connections, so that sockets that never send a byte cannot take the descriptors the court's own clients need
on the local listener, and no session is kept for ever. A real Mosquitto runs the generated configuration, with TLS
files made for the test: Mosquitto refuses to start on an option it does not know. The password hashes are not
stretched (tests/server/test_provisioning.py), so no weak password is adopted."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from seal_agent.mqtt import DEFAULT_SESSION_EXPIRY_S
from seal_dev.broker import PrivateBroker, free_port
from server.cli import main
from server.config import MqttSettings
from server.seals.broker_config import PERSISTENT_CLIENT_EXPIRATION, TLS_MAX_CONNECTIONS, TlsListener
from server.seals.broker_files import SERVER_USERNAME
from tests.agent.tls_files import write_broker_tls
from tests.server.mqtt_helpers import seal_login

PASSWORD = "a-seal-s-password-of-32-characters"
#: A bound small enough to reach in a test, and descriptors for the broker few enough to run out of without it.
SMALL_BOUND, FEW_FILES = 16, 64
WAIT_S = 30.0


def tls_listener(directory: Path, **bound: int) -> TlsListener:
    cafile, certfile, keyfile = write_broker_tls(directory)
    return TlsListener(cafile, certfile, keyfile, port=free_port(), **bound)


def idle_socket(port: int) -> socket.socket:
    """A connection to ``port`` of 127.0.0.1 that sends nothing, non-blocking."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    sock.setblocking(False)
    return sock


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the broker closed ``sock`` (nothing is ever sent on it)."""
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def test_the_generated_configuration_runs_with_its_tls_listener(tmp_path: Path) -> None:
    tls = tls_listener(tmp_path / "tls")
    broker = PrivateBroker(tmp_path / "broker", users={"seal-a": PASSWORD}, tls=tls)
    lines = broker.config.render().splitlines()
    # a listener's options follow its listener line
    assert lines.index(f"listener {tls.port}") < lines.index(f"max_connections {TLS_MAX_CONNECTIONS}")
    assert f"persistent_client_expiration {PERSISTENT_CLIENT_EXPIRATION}" in lines
    with broker:
        with seal_login(tls.port, "seal-a", PASSWORD, host="localhost", ca_file=tls.cafile):
            pass
        with seal_login(broker.port, "seal-a", PASSWORD):
            pass


def test_sessions_expire_after_the_court_s_and_the_seals_own_expiry() -> None:
    """``persistent_client_expiration`` shortens any session that asks for longer (Mosquitto 2.0's
    ``session_expiry__add`` takes the smaller): never the court's, nor a seal's."""
    match = re.fullmatch(r"(\d+)d", PERSISTENT_CLIENT_EXPIRATION)
    assert match is not None
    cap_s = int(match.group(1)) * 24 * 3600
    assert cap_s > MqttSettings.model_fields["session_expiry_s"].default
    assert cap_s > DEFAULT_SESSION_EXPIRY_S


@pytest.fixture
def court(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["init", str(tmp_path / "court")]) == 0
    return tmp_path / "court"


@pytest.mark.parametrize("length", [16, 31])
def test_the_server_account_refuses_a_weak_password_put_in_its_file(
    court: Path, length: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """The broker's hashes are not stretched: a password chosen by hand must be as strong as init's (32 characters
    of 64), or none is adopted; 16 characters were enough before."""
    config = ["--config", str(court / "server.toml")]
    password_file = court / "court-server.mqtt-password"
    password_file.write_text("x" * length + "\n")
    assert main(["init-db", *config]) == 0
    capsys.readouterr()
    assert main(["broker", "server-account", *config]) == 2
    err = capsys.readouterr().err
    assert f"MQTT 账号 {SERVER_USERNAME} 的密码太短（{length} 个字符，至少 32 个）" in err
    assert f"the MQTT password of {SERVER_USERNAME!r} is too short ({length} characters, at least 32)" in err
    assert err.index("密码太短") < err.index("too short") and str(password_file) in err
    assert not (court / "mosquitto.passwd").exists()  # no account made
    # Without the file the command makes a random password and writes it there.
    password_file.unlink()
    assert main(["broker", "server-account", *config]) == 0
    assert len(password_file.read_text().strip()) >= 32


@pytest.fixture
def crowded_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    tls = tls_listener(tmp_path / "tls", max_connections=SMALL_BOUND)
    users = {"seal-a": PASSWORD, SERVER_USERNAME: PASSWORD}
    broker = PrivateBroker(tmp_path / "broker", users=users, tls=tls, open_files=FEW_FILES)
    with broker:
        yield broker


def test_idle_sockets_leave_the_local_listener_its_descriptors(crowded_broker: PrivateBroker) -> None:
    """The review: 1,100 sockets that sent nothing took every descriptor of a broker with systemd's 1,024, and the
    court's own clients could no longer connect. Here twice the broker's descriptors: those past the TLS listener's
    bound are closed at once, and the local listener still takes the court's client."""
    tls = crowded_broker.tls
    assert tls is not None
    with ExitStack() as stack:
        seal = stack.enter_context(seal_login(tls.port, "seal-a", PASSWORD, host="localhost", ca_file=tls.cafile))
        idle = [stack.enter_context(idle_socket(tls.port)) for _ in range(2 * FEW_FILES)]
        # Every socket past the bound (the seal holds one place) is closed by the broker, none of the others.
        deadline = time.monotonic() + WAIT_S
        while sum(map(closed_by_peer, idle)) < len(idle) - (SMALL_BOUND - 1) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sum(map(closed_by_peer, idle)) == len(idle) - (SMALL_BOUND - 1)
        with seal_login(crowded_broker.port, SERVER_USERNAME, PASSWORD, timeout=WAIT_S):
            pass  # the court's side: its clients connect on the local listener
        assert seal.client.is_connected()
    assert "max_connections exceeded" in crowded_broker.log_path.read_text()
