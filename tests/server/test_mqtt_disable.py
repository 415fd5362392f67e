"""Disabling a seal's MQTT account (`seal-server seal disable`, `POST /api/seals/{device_id}/mqtt-disable`): the
broker, reloaded with the rewritten files, refuses the seal; a new password enables it again."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select

from seal_dev.broker import PrivateBroker
from seal_protocol.signing import generate_signing_key, public_key_b64
from server.audit.models import AuditEntry
from server.core.db import SessionFactory, session_scope
from server.seals.models import MqttAccount
from tests.server.test_provisioning import Client


def _connects(broker: PrivateBroker, username: str, password: str) -> bool:
    client = Client(broker.port, username, password)
    try:
        return not client.wait_connack().is_failure
    finally:
        client.close()


def test_a_clerk_disables_a_seal_s_account_through_the_api(
    tmp_path: Path, database_url: str, session_factory: SessionFactory
) -> None:
    from fastapi.testclient import TestClient

    from server.app import create_app
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
        password = client.post("/api/seals", json=body, headers=clerk).json()["mqtt_password"]
        broker.start()
        try:
            assert _connects(broker, "seal-api", password)
            connected = Client(broker.port, "seal-api", password)
            try:
                assert not connected.wait_connack().is_failure
                assert client.post("/api/seals/seal-api/mqtt-disable", headers=clerk).status_code == 204
                assert not _connects(broker, "seal-api", password)
                deadline = time.monotonic() + 10
                while connected.client.is_connected() and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert not connected.client.is_connected()  # the broker's reload dropped it
            finally:
                connected.close()
            assert client.post("/api/seals/seal-api/mqtt-disable", headers=clerk).status_code == 204  # again: no-op
            assert client.post("/api/seals/seal-nobody/mqtt-disable", headers=clerk).status_code == 404
            # A new password enables the account again; the old one stays refused.
            answer = client.post("/api/seals/seal-api/mqtt-password", headers=clerk).json()
            rotated = answer["mqtt_password"]
            assert answer["in_force"] is True
            assert _connects(broker, "seal-api", rotated) and not _connects(broker, "seal-api", password)
        finally:
            broker.stop()
    with session_scope(session_factory) as session:
        account = session.get(MqttAccount, "seal-api")
        assert account is not None and not account.disabled
        query = select(AuditEntry).where(AuditEntry.target == "seal-api").order_by(AuditEntry.id)
        trail = [(e.actor, e.action) for e in session.scalars(query)]
    assert trail == [
        ("clerk", "seal.register"),
        ("clerk", "mqtt.create_account"),
        ("clerk", "mqtt.disable_account"),  # once: the second request changed nothing
        ("clerk", "mqtt.rotate_password"),
    ]


def test_the_cli_disables_a_seal_s_account(
    tmp_path: Path, database_url: str, session_factory: SessionFactory, capsys: pytest.CaptureFixture[str]
) -> None:
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
    case = "(2021)苏0214执1234号"
    seal_password = tmp_path / "seal-a.password"
    assert main(["init-db", *base]) == 0
    assert main(["case", "add", case, "--court", "无锡市新吴区人民法院", *base]) == 0
    key = public_key_b64(generate_signing_key())
    add = ["seal", "add", "seal-a", "--case", case, "--public-key", key, "--mqtt-password-file", str(seal_password)]
    assert main([*add, *base]) == 0
    broker.start()
    try:
        password = seal_password.read_text().strip()
        assert _connects(broker, "seal-a", password)
        capsys.readouterr()
        assert main(["seal", "disable", "seal-a", *base]) == 0
        out = capsys.readouterr().out
        assert "MQTT account seal-a disabled" in out and "(0 accounts)" in out and "reloaded" in out
        assert not _connects(broker, "seal-a", password)
        assert main(["seal", "disable", "seal-a", *base]) == 0
        assert "was disabled already" in capsys.readouterr().out
        assert main(["seal", "disable", "seal-nobody", *base]) == 1
    finally:
        broker.stop()
    with session_scope(session_factory) as session:
        actions = list(session.scalars(select(AuditEntry.action).where(AuditEntry.target == "seal-a")))
    assert actions.count("mqtt.disable_account") == 1


def test_a_disabling_the_broker_does_not_take_is_not_answered_as_done(
    tmp_path: Path, database_url: str, session_factory: SessionFactory
) -> None:
    """The account is disabled in the database, but the broker's files cannot be written (their directory is a
    file): the answer is 503 saying so, not 204 (a stolen password still works at the broker)."""
    from fastapi.testclient import TestClient

    from server.app import create_app
    from server.auth.access import Role
    from server.config import BrokerFilesSettings
    from tests.server.auth_helpers import add_user, bearer, make_settings

    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the broker's directory should be")
    files = BrokerFilesSettings(password_file=blocked / "passwd", acl_file=blocked / "acl")
    settings = make_settings(database_url, tmp_path).model_copy(update={"broker": files})
    add_user(session_factory, "clerk", Role.CLERK)
    clerk = bearer(session_factory, "clerk")
    body = {"device_id": "seal-api", "public_key": public_key_b64(generate_signing_key())}
    with TestClient(create_app(settings, with_ingest=False)) as client:
        assert client.post("/api/seals", json=body, headers=clerk).status_code == 201
        refused = client.post("/api/seals/seal-api/mqtt-disable", headers=clerk)
        with session_scope(session_factory) as session:
            account = session.get(MqttAccount, "seal-api")
            assert account is not None and account.disabled  # stored: `broker write-files` puts it in force
        rotated = client.post("/api/seals/seal-api/mqtt-password", headers=clerk)  # shown once: answered anyway
    assert refused.status_code == 503, refused.text
    assert "seal-server broker write-files" in refused.json()["detail"]
    assert rotated.status_code == 200 and rotated.json()["in_force"] is False  # the old password still works
