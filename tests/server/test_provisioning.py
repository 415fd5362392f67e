"""MQTT accounts from the database → Mosquitto files → a real broker that enforces them."""

from __future__ import annotations

import getpass
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from seal_dev.broker import PrivateBroker
from seal_protocol import event_topic
from server.core.db import SessionFactory, session_scope
from server.errors import AlreadyExists
from server.seals.broker_files import SERVER_USERNAME
from server.seals.models import AccountKind, MqttAccount
from server.seals.provisioning import create_account, disable_account, rotate_password, write_broker_files

OS_USER = f"cli:{getpass.getuser()}"  # the actor of the audit entries of a command run by this user


class Client:
    """A paho MQTT v5 client that records its CONNACK and each PUBACK's reason code."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.connack: ReasonCode | None = None
        self.pubacks: dict[int, ReasonCode] = {}
        self._cond = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(self, _c: object, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        with self._cond:
            self.connack = rc
            self._cond.notify_all()

    def _on_publish(self, _c: object, _u: object, mid: int, rc: ReasonCode, _p: object) -> None:
        with self._cond:
            self.pubacks[mid] = rc
            self._cond.notify_all()

    def wait_connack(self) -> ReasonCode:
        with self._cond:
            assert self._cond.wait_for(lambda: self.connack is not None, 10)
            assert self.connack is not None
            return self.connack

    def publish(self, topic: str) -> ReasonCode:
        info = self.client.publish(topic, b"{}", qos=1)
        with self._cond:
            assert self._cond.wait_for(lambda: info.mid in self.pubacks, 10)
            return self.pubacks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def provisioned(tmp_path: Path, session_factory: SessionFactory) -> Iterator[tuple[PrivateBroker, dict[str, str]]]:
    broker = PrivateBroker(tmp_path / "broker", manage_accounts=False)
    with session_scope(session_factory) as session:
        passwords = {
            SERVER_USERNAME: create_account(session, username=SERVER_USERNAME, kind=AccountKind.SERVER).password,
            "seal-a": create_account(session, username="seal-a", kind=AccountKind.SEAL).password,
            "seal-b": create_account(session, username="seal-b", kind=AccountKind.SEAL).password,
        }
        assert write_broker_files(session, password_file=broker.password_file, acl_file=broker.acl_file) == 3
    broker.start()
    try:
        yield broker, passwords
    finally:
        broker.stop()


def test_database_holds_hashes_only_and_files_are_private(
    provisioned: tuple[PrivateBroker, dict[str, str]], session_factory: SessionFactory
) -> None:
    broker, passwords = provisioned
    with session_scope(session_factory) as session:
        stored = {a.username: a.password_hash for a in session.query(MqttAccount)}
    assert all(h.startswith("$7$") and passwords[u] not in h for u, h in stored.items())
    assert passwords["seal-a"] not in broker.password_file.read_text()
    assert broker.password_file.stat().st_mode & 0o007 == 0


def test_hashes_have_mosquitto_s_own_rounds_and_the_broker_takes_them(
    provisioned: tuple[PrivateBroker, dict[str, str]],
) -> None:
    """Every CONNECT naming an account costs the broker one hash on its only thread, before authentication: at
    20,000 rounds anyone knowing ``court-server`` stalled it with wrong passwords. The passwords are random (192
    bits): 101 rounds, Mosquitto's own, are enough."""
    broker, passwords = provisioned
    lines = broker.password_file.read_text().splitlines()
    assert {line.split(":", 1)[0] for line in lines} == set(passwords)
    assert all(line.split(":", 1)[1].startswith("$7$101$") for line in lines)
    for username in (SERVER_USERNAME, "seal-a"):
        client = Client(broker.port, username, passwords[username])
        try:
            assert not client.wait_connack().is_failure
        finally:
            client.close()


def test_broker_enforces_accounts_and_each_seal_s_own_topics(
    provisioned: tuple[PrivateBroker, dict[str, str]], session_factory: SessionFactory
) -> None:
    broker, passwords = provisioned
    seal_a = Client(broker.port, "seal-a", passwords["seal-a"])
    try:
        assert not seal_a.wait_connack().is_failure
        assert not seal_a.publish(event_topic("seal-a")).is_failure
        refused = seal_a.publish(event_topic("seal-b"))
        assert refused.is_failure and "authori" in str(refused).lower()
    finally:
        seal_a.close()

    wrong = Client(broker.port, "seal-b", passwords["seal-a"])
    try:
        assert wrong.wait_connack().is_failure
    finally:
        wrong.close()

    with session_scope(session_factory) as session:
        with pytest.raises(AlreadyExists):
            create_account(session, username="seal-a", kind=AccountKind.SEAL)
        new_b = rotate_password(session, username="seal-b").password
        disable_account(session, username="seal-a")
        write_broker_files(session, password_file=broker.password_file, acl_file=broker.acl_file)
    broker.reload()

    old_b = Client(broker.port, "seal-b", passwords["seal-b"])
    fresh_b = Client(broker.port, "seal-b", new_b)
    gone_a = Client(broker.port, "seal-a", passwords["seal-a"])
    try:
        assert old_b.wait_connack().is_failure
        assert not fresh_b.wait_connack().is_failure
        assert gone_a.wait_connack().is_failure
    finally:
        for client in (old_b, fresh_b, gone_a):
            client.close()


def test_reserved_and_invalid_seal_names(session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as session:
        with pytest.raises(AlreadyExists, match="reserved"):
            create_account(session, username=SERVER_USERNAME, kind=AccountKind.SEAL)
        with pytest.raises(ValueError, match="invalid device id"):
            create_account(session, username="Seal/A", kind=AccountKind.SEAL)


def test_cli_provisions_the_server_and_a_seal_into_a_running_broker(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from seal_protocol.signing import generate_signing_key, public_key_b64
    from server.cli import main

    broker = PrivateBroker(tmp_path / "broker", manage_accounts=False)
    config = tmp_path / "server.toml"
    for store in ("snapshots", "removal-proofs"):  # the stores' directories, as `seal-server init` makes them
        (tmp_path / store).mkdir(parents=True, exist_ok=True)
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
    assert main(["broker", "server-account", *base]) == 0
    assert "absent" in capsys.readouterr().out  # no broker yet: the files wait for it
    broker.start()
    try:
        assert main(["case", "add", "(2021)苏0214执1234号", "--court", "无锡市新吴区人民法院", *base]) == 0
        seal_password = tmp_path / "seal-a.password"
        key = public_key_b64(generate_signing_key())
        assert (
            main(
                [
                    "seal",
                    "add",
                    "seal-a",
                    "--case",
                    "(2021)苏0214执1234号",
                    "--public-key",
                    key,
                    "--mqtt-password-file",
                    str(seal_password),
                    *base,
                ]
            )
            == 0
        )
        out = capsys.readouterr().out
        assert "reloaded" in out and seal_password.read_text().strip() not in out
        assert seal_password.stat().st_mode & 0o077 == 0

        server = Client(broker.port, SERVER_USERNAME, (tmp_path / "server-password").read_text().strip())
        seal = Client(broker.port, "seal-a", seal_password.read_text().strip())
        try:
            assert not server.wait_connack().is_failure
            assert not seal.wait_connack().is_failure
            assert not seal.publish(event_topic("seal-a")).is_failure
        finally:
            server.close()
            seal.close()

        # A second `seal add` keeps the password; `rotate-password` replaces it and the old one stops working.
        old = seal_password.read_text().strip()
        assert main(["seal", "rotate-password", "seal-a", "--mqtt-password-file", str(seal_password), *base]) == 0
        stale = Client(broker.port, "seal-a", old)
        try:
            assert stale.wait_connack().is_failure
        finally:
            stale.close()
    finally:
        broker.stop()


def test_cli_actions_are_audited(tmp_path: Path, database_url: str) -> None:
    from sqlalchemy import select

    from seal_protocol.signing import generate_signing_key, public_key_b64
    from server.audit.models import AuditEntry
    from server.cli import main
    from server.core.db import make_engine, make_session_factory

    config = tmp_path / "server.toml"
    config.write_text(
        f'database_url = "{database_url}"\nsnapshot_dir = "{tmp_path}"\n'
        f'[mqtt]\npassword_file = "{tmp_path / "server-password"}"\n',
        encoding="utf-8",
    )
    base = ["--config", str(config)]
    key = public_key_b64(generate_signing_key())
    assert main(["init-db", *base]) == 0
    assert main(["broker", "server-account", *base]) == 0
    assert main(["case", "add", "(2021)苏0214执1234号", "--court", "无锡市新吴区人民法院", *base]) == 0
    assert (
        main(
            [
                "seal",
                "add",
                "seal-a",
                "--case",
                "(2021)苏0214执1234号",
                "--public-key",
                key,
                "--mqtt-password-file",
                str(tmp_path / "a.pw"),
                *base,
            ]
        )
        == 0
    )
    assert main(["seal", "rotate-password", "seal-a", "--mqtt-password-file", str(tmp_path / "a.pw"), *base]) == 0
    assert main(["seal", "rotate-password", "seal-nobody", *base]) == 1
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id))
            trail = [(e.actor, e.action, e.target, e.case_no) for e in entries]
    finally:
        engine.dispose()
    assert trail == [
        (OS_USER, "mqtt.server_account", SERVER_USERNAME, None),
        (OS_USER, "court.create", "苏0214", None),
        (OS_USER, "case.create", "(2021)苏0214执1234号", "(2021)苏0214执1234号"),
        (OS_USER, "case.status", "(2021)苏0214执1234号", "(2021)苏0214执1234号"),  # sealed by its first seal
        (OS_USER, "seal.register", "seal-a", "(2021)苏0214执1234号"),
        (OS_USER, "mqtt.create_account", "seal-a", "(2021)苏0214执1234号"),  # a seal of the case
        (OS_USER, "mqtt.rotate_password", "seal-a", "(2021)苏0214执1234号"),
    ]


def test_a_seal_registered_through_the_api_gets_an_account_the_broker_accepts(
    tmp_path: Path, database_url: str, session_factory: SessionFactory
) -> None:
    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from seal_protocol.signing import generate_signing_key, public_key_b64
    from server.app import create_app
    from server.audit.models import AuditEntry
    from server.auth.access import Role
    from server.config import BrokerFilesSettings
    from tests.server.auth_helpers import add_user, bearer, make_settings

    broker = PrivateBroker(tmp_path / "broker", manage_accounts=False)
    files = BrokerFilesSettings(password_file=broker.password_file, acl_file=broker.acl_file, pid_file=broker.pid_file)
    settings = make_settings(database_url, tmp_path).model_copy(update={"broker": files})
    add_user(session_factory, "clerk", Role.CLERK)
    clerk = bearer(session_factory, "clerk")
    body = {"device_id": "seal-api", "public_key": public_key_b64(generate_signing_key())}
    with TestClient(create_app(settings, with_ingest=False)) as client:
        registered = client.post("/api/seals", json=body, headers=clerk)
        assert registered.status_code == 201
        password = registered.json()["mqtt_password"]
        with session_scope(session_factory) as session:
            assert session.get(MqttAccount, "seal-api") is not None
        broker.start()  # it reads the files the API wrote
        try:
            seal = Client(broker.port, "seal-api", password)
            try:
                assert not seal.wait_connack().is_failure
                assert not seal.publish(event_topic("seal-api")).is_failure
            finally:
                seal.close()

            rotated = client.post("/api/seals/seal-api/mqtt-password", headers=clerk)
            assert rotated.status_code == 200
            assert rotated.json()["username"] == "seal-api"
            new_password = rotated.json()["mqtt_password"]
            stale, fresh = Client(broker.port, "seal-api", password), Client(broker.port, "seal-api", new_password)
            try:
                assert stale.wait_connack().is_failure
                assert not fresh.wait_connack().is_failure
            finally:
                stale.close()
                fresh.close()
        finally:
            broker.stop()
        assert client.post("/api/seals/seal-nobody/mqtt-password", headers=clerk).status_code == 404
    with session_scope(session_factory) as session:
        trail = [
            (e.actor, e.action, e.target)
            for e in session.scalars(select(AuditEntry).where(AuditEntry.target == "seal-api").order_by(AuditEntry.id))
        ]
    # the same entries as `seal add` and `seal rotate-password` (test_cli_actions_are_audited), by the clerk
    assert trail == [
        ("clerk", "seal.register", "seal-api"),
        ("clerk", "mqtt.create_account", "seal-api"),
        ("clerk", "mqtt.rotate_password", "seal-api"),
    ]


def test_the_api_registers_a_seal_even_if_the_broker_files_cannot_be_written(
    tmp_path: Path, database_url: str, session_factory: SessionFactory
) -> None:
    from fastapi.testclient import TestClient

    from seal_protocol.signing import generate_signing_key, public_key_b64
    from server.app import create_app
    from server.auth.access import Role
    from server.config import BrokerFilesSettings
    from tests.server.auth_helpers import add_user, bearer, make_settings

    (tmp_path / "not-a-dir").write_text("")
    files = BrokerFilesSettings(
        password_file=tmp_path / "not-a-dir" / "passwords", acl_file=tmp_path / "not-a-dir" / "acl"
    )
    settings = make_settings(database_url, tmp_path).model_copy(update={"broker": files})
    add_user(session_factory, "clerk", Role.CLERK)
    body = {"device_id": "seal-api", "public_key": public_key_b64(generate_signing_key())}
    with TestClient(create_app(settings, with_ingest=False)) as client:
        registered = client.post("/api/seals", json=body, headers=bearer(session_factory, "clerk"))
    assert registered.status_code == 201 and registered.json()["mqtt_password"]
    with session_scope(session_factory) as session:
        assert session.get(MqttAccount, "seal-api") is not None
