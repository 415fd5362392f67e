"""The command routes: who may send what, what a fresh command shows (pending, not delivered), and who sees it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from seal_protocol import EventType
from seal_protocol.commands import check_command
from seal_protocol.signing import load_signing_key
from server.app import create_app
from server.auth.access import Role
from server.config import CommandSettings
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.core.metrics import IngestMetrics
from server.ingest.ingestor import Ingestor
from server.seals.registry import add_seal, bind_seal, unbind_seal
from tests.server.auth_helpers import add_user, bearer, make_settings
from tests.server.helpers import CASE_A, CASE_B, SimulatedSeal, message, register


@pytest.fixture
def seal_a() -> SimulatedSeal:
    return SimulatedSeal("seal-a", CASE_A)


@pytest.fixture
def client(
    database_url: str, session_factory: SessionFactory, tmp_path: Path, seal_a: SimulatedSeal
) -> Iterator[TestClient]:
    """Cases A and B with a seal each, a seal in stock; a user of every role on A, a judge on B, a clerk."""
    register(session_factory, seal_a, SimulatedSeal("seal-b", CASE_B))
    with session_scope(session_factory) as session:
        add_seal(session, actor=None, device_id="seal-stock", public_key=SimulatedSeal("seal-stock", CASE_A).public_key)
    for role in Role:
        add_user(session_factory, role.value, role, () if role is Role.CLERK else (CASE_A,))
    add_user(session_factory, "judge-b", Role.JUDGE, (CASE_B,))
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False)) as instance:
        yield instance


def post(client: TestClient, sf: SessionFactory, who: str, device_id: str, body: dict[str, Any]) -> Any:
    return client.post(f"/api/seals/{device_id}/commands", json=body, headers=bearer(sf, who))


def test_a_judge_disarms_and_the_command_is_pending_until_the_seal_answers(
    client: TestClient, session_factory: SessionFactory, tmp_path: Path, seal_a: SimulatedSeal
) -> None:
    response = post(client, session_factory, "judge", "seal-a", {"action": "disarm"})
    assert response.status_code == 202, response.text
    command = response.json()
    assert command["state"] == "pending" and command["delivered"] is False
    assert command["broker_accepted_at"] is None and command["answered_at"] is None
    assert (command["device_id"], command["case_no"], command["issued_by"]) == ("seal-a", CASE_A, "judge")
    signed = check_command(
        command["command"].encode(),
        device_id="seal-a",
        case_no=CASE_A,
        server_key=load_signing_key(tmp_path / "court-command.key").verify_key,
        last_accepted_id=0,
        now=utc_now(),
    )
    assert (signed.command_id, signed.action.value) == (command["command_id"], "disarm")

    url = f"/api/commands/{command['command_id']}"
    assert client.get(url, headers=bearer(session_factory, "creditor")).json()["state"] == "pending"
    audit = client.get("/api/audit?action=command.issue", headers=bearer(session_factory, "clerk")).json()
    [entry] = audit["entries"]
    assert (entry["actor"], entry["target"], entry["details"]["command_id"]) == ("judge", "seal-a", signed.command_id)

    # The seal's signed ack arrives through the ingest: now, and only now, it is delivered.
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    ack = {"command_id": signed.command_id, "action": "disarm", "result": "disarmed"}
    ingestor.ingest([message(seal_a.event_topic, seal_a.event(EventType.COMMAND_ACK, ack))])
    shown = client.get(url, headers=bearer(session_factory, "officer")).json()
    assert (shown["state"], shown["delivered"], shown["result"]["result"]) == ("acknowledged", True, "disarmed")
    assert shown["answer_seq"] == seal_a.seq


@pytest.mark.parametrize(
    ("who", "action", "status"),
    [
        ("officer", "disarm", 403),
        ("officer", "arm", 403),
        ("officer", "test_warning", 202),
        ("officer", "snapshot", 202),
        ("creditor", "ping", 403),
        ("debtor", "ping", 403),
        ("debtor", "disarm", 403),
        ("clerk", "arm", 403),  # the clerk administers; whether a seal guards is the judge's to decide
        ("clerk", "disarm", 403),
        ("clerk", "test_warning", 202),
        ("judge-b", "disarm", 404),  # another case's seal does not exist for you
    ],
)
def test_who_may_send_what(
    client: TestClient, session_factory: SessionFactory, who: str, action: str, status: int
) -> None:
    response = post(client, session_factory, who, "seal-a", {"action": action})
    assert response.status_code == status, response.text


def test_refusals(client: TestClient, session_factory: SessionFactory) -> None:
    stock = post(client, session_factory, "clerk", "seal-stock", {"action": "ping"})
    assert stock.status_code == 409 and "bound to no case" in stock.json()["detail"]
    assert post(client, session_factory, "clerk", "seal-a", {"action": "self_destruct"}).status_code == 422
    huge = {"action": "ping", "args": {"note": "x" * 3000}}
    assert post(client, session_factory, "clerk", "seal-a", huge).status_code == 422
    assert post(client, session_factory, "clerk", "no-such-seal", {"action": "ping"}).status_code == 404
    assert client.get("/api/commands/999999", headers=bearer(session_factory, "clerk")).status_code == 404


@pytest.mark.parametrize("key_file", [None, "missing.key"])
def test_without_the_court_key_commands_are_unavailable(
    database_url: str, session_factory: SessionFactory, tmp_path: Path, key_file: str | None
) -> None:
    register(session_factory, SimulatedSeal("seal-a", CASE_A))
    add_user(session_factory, "clerk", Role.CLERK)
    settings = make_settings(database_url, tmp_path).model_copy(
        update={"commands": CommandSettings(signing_key_file=tmp_path / key_file if key_file else None)}
    )
    with TestClient(create_app(settings, with_ingest=False)) as client:
        response = post(client, session_factory, "clerk", "seal-a", {"action": "ping"})
        listed = client.get("/api/seals/seal-a/commands", headers=bearer(session_factory, "clerk"))
    assert response.status_code == 503
    assert "seal-server court-key" in response.json()["detail"]
    assert listed.json() == []  # nothing was stored


def test_a_seal_moved_to_another_case_shows_each_case_its_own_commands(
    client: TestClient, session_factory: SessionFactory
) -> None:
    first = post(client, session_factory, "judge", "seal-a", {"action": "ping"}).json()["command_id"]
    with session_scope(session_factory) as session:
        unbind_seal(session, actor=None, device_id="seal-a")
        bind_seal(session, actor=None, device_id="seal-a", case_no=CASE_B)
    second = post(client, session_factory, "judge-b", "seal-a", {"action": "ping"}).json()["command_id"]
    assert second > first

    def listed(who: str) -> list[int]:
        response = client.get("/api/seals/seal-a/commands", headers=bearer(session_factory, who))
        return [c["command_id"] for c in response.json()] if response.status_code == 200 else []

    assert listed("clerk") == [second, first]  # newest first
    assert listed("judge-b") == [second]
    assert listed("judge") == []  # the seal is no longer on A's case: 404
    assert client.get(f"/api/commands/{first}", headers=bearer(session_factory, "judge-b")).status_code == 404
