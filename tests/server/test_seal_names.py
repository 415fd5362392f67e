"""A seal's device id is its MQTT username, so a seal may never take the name of a broker account that is not a
seal's: the court server's (``court-server``, or whatever ``[mqtt] username`` says), or any account of another kind.
Registering a seal so named, through the API, the command line or the registry, is refused, and no rotation hands
out such an account's password."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from seal_protocol.signing import generate_signing_key, public_key_b64
from server.app import create_app
from server.auth.access import Role
from server.cli import main
from server.config import Settings
from server.core.db import SessionFactory, session_scope
from server.errors import AlreadyExists
from server.seals.broker_files import SERVER_USERNAME
from server.seals.cases import add_case
from server.seals.enrolment import new_seal_password
from server.seals.models import AccountKind, MqttAccount, Seal
from server.seals.provisioning import create_account, seal_account, server_account
from server.seals.registry import add_seal, register_seal
from tests.server.auth_helpers import add_user, bearer, make_settings
from tests.server.test_cli import write_config

CASE = "(2024)苏0214执9号"
CONFIGURED = "court-gateway"  # a court server that logs in under another name than the default


def _key() -> str:
    return public_key_b64(generate_signing_key())


def _hashes(session_factory: SessionFactory) -> dict[str, tuple[str, str]]:
    with session_factory() as session:
        return {a.username: (a.kind, a.password_hash) for a in session.scalars(select(MqttAccount))}


def _seals(session_factory: SessionFactory) -> list[str]:
    with session_factory() as session:
        return list(session.scalars(select(Seal.device_id)))


@pytest.fixture
def world(session_factory: SessionFactory, tmp_path: Path) -> SessionFactory:
    """A case, a clerk, the court server's account (as ``seal-server init`` makes it) and another non-seal one."""
    with session_scope(session_factory) as session:
        add_case(session, actor=None, case_no=CASE, court="无锡市滨湖区人民法院")
        server_account(session, actor=None, password_file=tmp_path / "absent")
        create_account(session, username="bridge-01", kind=AccountKind.SERVER)
    add_user(session_factory, "clerk", Role.CLERK)
    return session_factory


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    settings = make_settings(database_url, tmp_path)
    return settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={"username": CONFIGURED})})


@pytest.fixture
def client(world: SessionFactory, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, with_ingest=False), raise_server_exceptions=False) as instance:
        instance.headers.update(bearer(world, "clerk"))
        yield instance


@pytest.mark.parametrize("device_id", [SERVER_USERNAME, CONFIGURED, "bridge-01"])
def test_the_api_refuses_a_seal_named_as_a_non_seal_account(
    client: TestClient, world: SessionFactory, device_id: str
) -> None:
    before = _hashes(world)
    answer = client.post("/api/seals", json={"device_id": device_id, "public_key": _key()})
    assert answer.status_code == 409, answer.text
    assert "mqtt_password" not in answer.json()
    detail = answer.json()["detail"]
    assert "不能用作封条编号" in detail and " / " in detail and "not a seal's" in detail  # Chinese first, then English
    assert detail.index("不能") < detail.index("not a seal's")
    assert _hashes(world) == before
    assert device_id not in _seals(world)


def test_a_seal_registered_under_the_servers_name_before_is_not_given_its_password(
    client: TestClient, world: SessionFactory
) -> None:
    """A seal row named ``court-server`` (registered before such names were refused): its rotation is refused."""
    with session_scope(world) as session:
        session.add(Seal(device_id=SERVER_USERNAME, public_key=_key(), case_no=None, location=""))
    before = _hashes(world)
    answer = client.post(f"/api/seals/{SERVER_USERNAME}/mqtt-password")
    assert answer.status_code == 409, answer.text
    assert "mqtt_password" not in answer.json()
    assert _hashes(world) == before


def test_an_ordinary_seal_is_still_registered_and_rotated(client: TestClient, world: SessionFactory) -> None:
    registered = client.post("/api/seals", json={"device_id": "seal-0001", "public_key": _key()})
    assert registered.status_code == 201 and registered.json()["mqtt_password"]
    rotated = client.post("/api/seals/seal-0001/mqtt-password")
    assert rotated.status_code == 200 and rotated.json()["mqtt_password"] != registered.json()["mqtt_password"]
    assert _hashes(world)["seal-0001"][0] == AccountKind.SEAL.value


@pytest.mark.parametrize("device_id", [SERVER_USERNAME, "bridge-01"])
def test_the_services_refuse_the_name_whoever_calls_them(world: SessionFactory, device_id: str) -> None:
    before = _hashes(world)
    calls = [
        lambda session: add_seal(session, actor=None, device_id=device_id, public_key=_key()),
        lambda session: register_seal(session, actor=None, device_id=device_id, case_no=CASE, public_key=_key()),
        lambda session: seal_account(session, actor=None, device_id=device_id, rotate=True),
        lambda session: seal_account(session, actor=None, device_id=device_id, rotate=False),
        lambda session: create_account(session, username=device_id, kind=AccountKind.SEAL),
    ]
    for call in calls:
        with world() as session, pytest.raises(AlreadyExists):
            call(session)
    with session_scope(world) as session:
        session.add(Seal(device_id=device_id, public_key=_key(), case_no=None, location=""))
    with world() as session, pytest.raises(AlreadyExists):
        new_seal_password(session, actor=None, device_id=device_id)
    assert _hashes(world) == before


def test_the_command_line_refuses_the_servers_name(
    world: SessionFactory, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    config = write_config(tmp_path, database_url)
    before = _hashes(world)
    for device_id in (SERVER_USERNAME, "bridge-01"):
        add = ["seal", "add", device_id, "--case", CASE, "--public-key", _key(), "--config", str(config)]
        assert main(add) == 1
        assert main(["seal", "rotate-password", device_id, "--config", str(config)]) == 1
    assert _hashes(world) == before
    assert _seals(world) == []
