"""A command's ``args`` are refused by the API exactly when the seal protocol refuses them (floats, integers beyond
±(2**53 - 1), keys that are not printable ASCII, nesting deeper than the protocol's bound): a 422 that names
``args``, and nothing stored. They were a 500 from inside the signing, the command half made."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from seal_protocol.commands import CommandAction
from seal_protocol.signing import load_or_create_signing_key
from seal_protocol.wirejson import MAX_DEPTH
from server.app import create_app
from server.auth.access import Role
from server.auth.models import User
from server.commands.models import CourtCommand
from server.commands.service import issue_command_as
from server.core.base import utc_now
from server.core.db import SessionFactory
from server.errors import Invalid
from server.seals.models import Seal
from tests.server.auth_helpers import add_user, bearer, make_settings
from tests.server.ingest_world import Court, make_court

SAFE = 2**53 - 1
REFUSED = [
    '{"x":1.5}',
    '{"x":1.0}',
    '{"x":[0.5]}',
    f'{{"x":{SAFE + 1}}}',
    f'{{"x":{-(SAFE + 1)}}}',
    '{"x":123456789012345678901234567890}',
    '{"\\u952e":1}',  # a key outside printable ASCII
    '{"x":' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}",  # deeper than the protocol nests
]
ADMITTED = ['{"x":1}', f'{{"x":{SAFE},"y":{-SAFE}}}', '{"x":"文本","y":[true,null,{"z":"a"}]}']


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    court = make_court(session_factory, tmp_path)
    add_user(session_factory, "judge", Role.JUDGE, [court.a.case_no])
    return court


@pytest.fixture
def client(database_url: str, court: Court, session_factory: SessionFactory, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(make_settings(database_url, tmp_path), with_ingest=False)
    with TestClient(app, raise_server_exceptions=False) as instance:
        instance.headers.update({**bearer(session_factory, "judge"), "Content-Type": "application/json"})
        yield instance


def _commands(session_factory: SessionFactory) -> int:
    with session_factory() as session:
        return int(session.scalar(select(func.count(CourtCommand.id))) or 0)


def test_args_the_protocol_refuses_are_a_422_naming_args(
    client: TestClient, court: Court, session_factory: SessionFactory
) -> None:
    for args in REFUSED:
        body = f'{{"action":"ping","args":{args}}}'.encode()
        answer = client.post(f"/api/seals/{court.a.device_id}/commands", content=body)
        assert answer.status_code == 422, (args, answer.status_code, answer.text[:200])
        assert [error["loc"] for error in answer.json()["detail"]] == [["body", "args"]], answer.text
    assert _commands(session_factory) == 0


def test_args_the_protocol_admits_are_issued(client: TestClient, court: Court, session_factory: SessionFactory) -> None:
    for args in ADMITTED:
        body = f'{{"action":"ping","args":{args}}}'.encode()
        answer = client.post(f"/api/seals/{court.a.device_id}/commands", content=body)
        assert answer.status_code == 202, (args, answer.text[:200])
    assert _commands(session_factory) == len(ADMITTED)


@pytest.mark.parametrize("args", [{"x": 0.25}, {"x": SAFE + 1}, {"x": {"y": [float("nan")]}}])
def test_the_service_refuses_them_whoever_calls_it(
    court: Court, session_factory: SessionFactory, tmp_path: Path, args: dict[str, object]
) -> None:
    key = load_or_create_signing_key(tmp_path / "court-command.key")
    with session_factory() as session:
        judge = session.scalar(select(User).where(User.username == "judge"))
        seal = session.scalar(select(Seal).where(Seal.device_id == court.a.device_id))
        assert judge is not None and seal is not None
        with pytest.raises(Invalid, match="args"):
            issue_command_as(
                session,
                actor=judge,
                seal=seal,
                action=CommandAction.PING,
                args=args,
                key=key,
                ttl=timedelta(minutes=5),
                now=utc_now(),
            )
    assert _commands(session_factory) == 0
