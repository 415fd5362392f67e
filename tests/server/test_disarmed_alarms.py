"""An intrusion or tamper of a seal that says it is disarmed (``armed: false``) raises no alarm only while its case's
removal expects the disarm (the case ``lifting``, or ``lifted``), or once the case is ``closed``; on a case whose
seizure stands it raises the alarm of an armed seal, marked ``disarmed_while_sealed``. Through the API and the real
ingest; SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from seal_protocol import EventType
from server.alarms.models import Alarm
from server.app import create_app
from server.core.base import utc_now
from server.core.db import SessionFactory
from server.ingest.results import IngestResult, Outcome
from server.seals.models import Case
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A, CASE_B, message
from tests.server.removal_world import RemovalWorld, make_world
from tests.server.test_ingest_bounds import statements

DISARMED = {"armed": False, "warning": "suppressed_disarmed", "warning_languages": []}


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def send(
    world: RemovalWorld, device_id: str, *events: tuple[EventType, dict[str, Any]], **kw: Any
) -> list[IngestResult]:
    """``device_id``'s next events, signed and ingested as one batch (``kw``: :meth:`SimulatedSeal.event`'s)."""
    seal = world.seals[device_id]
    data = [seal.event(kind, payload, **kw) for kind, payload in events]
    results = world.ingestor.ingest([message(seal.event_topic, d) for d in data])
    assert [r.outcome for r in results] == [Outcome.STORED] * len(events), results
    return results


def intrusion(world: RemovalWorld, device_id: str, **kw: Any) -> IngestResult:
    [result] = send(world, device_id, (EventType.INTRUSION, DISARMED), **kw)
    return result


def alarms(world: RemovalWorld, device_id: str) -> list[Alarm]:
    with world.session_factory() as session:
        return list(session.scalars(select(Alarm).where(Alarm.device_id == device_id).order_by(Alarm.id)))


def shown(alarm: Alarm) -> tuple[str, str, str, bool, bool]:
    details = alarm.details
    return alarm.kind, alarm.severity, alarm.case_no, details["armed"], details.get("disarmed_while_sealed", False)


def case_status(world: RemovalWorld, case_no: str) -> str:
    with world.session_factory() as session:
        return str(session.scalar(select(Case.status).where(Case.case_no == case_no)))


def judge_sees(world: RemovalWorld, case_no: str, judge: str) -> list[tuple[str, str, bool]]:
    """The case's alarms through the API, as its judge reads them."""
    response = world.client.get("/api/alarms", params={"case_no": case_no}, headers=world.as_(judge))
    assert response.status_code == 200, response.text
    marked = [(a["device_id"], a["kind"], a["details"].get("disarmed_while_sealed", False)) for a in response.json()]
    return sorted(marked)


def lifted(world: RemovalWorld) -> None:
    """Case A's removal, all the way: approved, both seals' acks, the officer's lifting."""
    request_id = world.filed()
    for device_id, command in world.commands(world.approved(request_id)).items():
        world.answer(device_id, command.id)
    assert world.read(request_id)["state"] == "disarmed"
    assert world.ok("officer", request_id, "lifted", {"note": "现场拆除封条两枚"})["state"] == "lifted"


def test_a_disarmed_seal_being_removed_raises_nothing_while_the_removal_expects_it(world: RemovalWorld) -> None:
    """The legitimate path: the judge approved, the seal acknowledged its disarm; the officers inside (intrusion,
    tamper: the lid opened to take it off) raise nothing, neither during the lifting nor when the seal's outbox
    drains after it (late, into the lifted case)."""
    request_id = world.filed()
    disarms = world.commands(world.approved(request_id))
    assert case_status(world, CASE_A) == "lifting"
    world.answer("seal-a1", disarms["seal-a1"].id)
    send(world, "seal-a1", (EventType.INTRUSION, DISARMED), (EventType.TAMPER, {**DISARMED, "state": "open"}))
    world.answer("seal-a2", disarms["seal-a2"].id)
    assert world.read(request_id)["state"] == "disarmed"
    intrusion(world, "seal-a2")
    drained = world.seals["seal-a2"].event(EventType.INTRUSION, DISARMED)  # stamped now, sent after the lifting
    assert world.ok("officer", request_id, "lifted", {"note": "现场拆除"})["state"] == "lifted"
    [late] = world.ingestor.ingest([message(world.seals["seal-a2"].event_topic, drained)])
    assert (late.outcome, late.case_no) == (Outcome.STORED, CASE_A)
    assert alarms(world, "seal-a1") == alarms(world, "seal-a2") == []
    assert judge_sees(world, CASE_A, "judge") == []


def test_a_removed_seal_draining_into_its_closed_case_raises_nothing(world: RemovalWorld) -> None:
    """The case is lifted, then closed by the clerk; a removed seal kept in store sends days later what its outbox
    held: the tamper of its removal (lid opened, disarmed). The case is over: no alarm (it raised a critical one, its
    page saying no removal had been approved)."""
    lifted(world)
    tamper = world.seals["seal-a2"].event(EventType.TAMPER, {**DISARMED, "state": "open"})
    closing = world.client.put(
        f"/api/cases/{CASE_A}/status", json={"status": "closed", "note": "结案"}, headers=world.as_("clerk")
    )
    assert closing.status_code == 200, closing.text
    [result] = world.ingestor.ingest([message(world.seals["seal-a2"].event_topic, tamper)])
    assert (result.outcome, result.case_no, case_status(world, CASE_A)) == (Outcome.STORED, CASE_A, "closed")
    assert [(a.kind, a.details) for a in alarms(world, "seal-a2")] == []  # (it raised a tamper)


def test_a_lifted_seal_reused_on_a_sealed_case_alarms_when_it_says_it_is_disarmed(world: RemovalWorld) -> None:
    """Path 1 (and 2, as the court sees it: a disarm of the old case reaching the seal after its move): the seal is
    bound to case B, sealed, and reports an intrusion and a tamper while disarmed. Case B's judge sees both, as
    an armed seal's, marked."""
    lifted(world)
    bound = world.client.put("/api/seals/seal-a1/binding", json={"case_no": CASE_B}, headers=world.as_("clerk"))
    assert bound.status_code == 200, bound.text
    assert case_status(world, CASE_B) == "sealed"
    world.seals["seal-a1"].case_no = CASE_B  # configured for its new case
    send(world, "seal-a1", (EventType.INTRUSION, DISARMED), (EventType.TAMPER, {**DISARMED, "state": "open"}))

    assert [shown(a) for a in alarms(world, "seal-a1")] == [
        ("intrusion", "high", CASE_B, False, True),
        ("tamper", "critical", CASE_B, False, True),
    ]
    assert judge_sees(world, CASE_B, "judge-b") == [("seal-a1", "intrusion", True), ("seal-a1", "tamper", True)]


def test_the_judge_s_own_disarm_of_a_sealed_case_leaves_its_intrusions_alarming(world: RemovalWorld) -> None:
    """Path 3: a disarm through ``POST /api/seals/{id}/commands`` (maintenance, say) with no removal request: the
    seizure stands, so an intrusion of the disarmed seal is the judge's to see."""
    response = world.client.post("/api/seals/seal-a1/commands", json={"action": "disarm"}, headers=world.as_("judge"))
    assert response.status_code == 202, response.text
    assert world.answer("seal-a1", response.json()["command_id"]).command_answer == "acknowledged"
    assert case_status(world, CASE_A) == "sealed"
    intrusion(world, "seal-a1")

    [alarm] = alarms(world, "seal-a1")
    assert shown(alarm) == ("intrusion", "high", CASE_A, False, True)
    assert judge_sees(world, CASE_A, "judge") == [("seal-a1", "intrusion", True)]


def test_after_a_withdrawn_approval_a_seal_not_yet_armed_again_alarms(world: RemovalWorld) -> None:
    """Path 4: the judge aborts after the seal disarmed; until it acknowledges the arm that follows, an intrusion
    says ``armed: false`` — on a case sealed again. The same intrusion before the abort raised nothing."""
    request_id = world.filed()
    disarms = world.commands(world.approved(request_id))
    world.answer("seal-a1", disarms["seal-a1"].id)
    intrusion(world, "seal-a1")
    assert alarms(world, "seal-a1") == []
    assert world.ok("judge", request_id, "abort", {"reasons": "申请执行人提出异议，撤销准予。"})["state"] == "aborted"
    assert case_status(world, CASE_A) == "sealed"
    intrusion(world, "seal-a1")

    [alarm] = alarms(world, "seal-a1")
    assert shown(alarm) == ("intrusion", "high", CASE_A, False, True)


def test_an_intrusion_stamped_before_the_approval_alarms_though_it_arrives_during_the_lifting(
    world: RemovalWorld,
) -> None:
    """The approval's disarm cannot explain a disarmed intrusion the seal stamped before it (beyond a binding's
    clock allowance): a seal offline since then delivers it now, while the case is lifting."""
    request_id = world.filed()
    world.approved(request_id)
    assert case_status(world, CASE_A) == "lifting"
    intrusion(world, "seal-a2", at=utc_now() - timedelta(minutes=30))
    intrusion(world, "seal-a1", at=utc_now() - timedelta(minutes=1))  # within the allowance: expected

    assert [shown(a) for a in alarms(world, "seal-a2")] == [("intrusion", "high", CASE_A, False, True)]
    assert alarms(world, "seal-a1") == []


def test_the_cases_are_read_once_a_batch_and_only_for_a_disarmed_seal_s_intrusion(
    world: RemovalWorld, engine: Engine
) -> None:
    """The ingest's hot path: a batch without a disarmed intrusion or tamper reads no case; one with several reads
    the cases once."""

    def case_reads(seen: list[tuple[str, Any]]) -> int:
        return sum(1 for sql, _ in seen if sql.lstrip().upper().startswith("SELECT") and "FROM cases" in sql)

    with statements(engine) as seen:
        send(world, "seal-a1", (EventType.HEARTBEAT, {"armed": True}), (EventType.INTRUSION, {"armed": True}))
    assert case_reads(seen) == 0
    with statements(engine) as seen:
        send(
            world, "seal-a1", *[(EventType.INTRUSION, DISARMED)] * 3, (EventType.TAMPER, {**DISARMED, "state": "open"})
        )
    assert case_reads(seen) == 1
    assert [(a.kind, a.count) for a in alarms(world, "seal-a1")] == [("intrusion", 4), ("tamper", 1)]
