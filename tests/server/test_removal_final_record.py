"""What a removal request shows of its seals comes from their signed events and answers in the request's own case,
while bound to it; a final request keeps the record it had when it became final, whatever its seals do later —
in the API, the debtor's portal, the creditor's page and the case page alike."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from seal_protocol import EventType
from server.app import create_app
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.ingest.results import Outcome
from server.removal.disarm import seal_progress
from server.removal.models import RemovalRequest
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A, CASE_B, message
from tests.server.removal_world import RemovalWorld, c, make_world


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def said(world: RemovalWorld, device_id: str, type_: EventType, payload: dict[str, Any], case_no: str) -> None:
    seal = world.seals[device_id]
    [result] = world.ingestor.ingest([message(seal.event_topic, seal.event(type_, payload, case_no=case_no))])
    assert result.outcome == Outcome.STORED, result


def seals_of(shown: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    return [(s["device_id"], s["status"], s["armed"]) for s in shown["seals"]]


def pages(world: RemovalWorld) -> dict[str, str]:
    """Each page of case A that shows its requests, as the party who reads it; only its words (no markup)."""
    urls = {
        "debtor": f"/portal/cases/{c(CASE_A)}",
        "creditor": f"/creditor/cases/{c(CASE_A)}",
        "judge": f"/cases/{c(CASE_A)}",
    }
    shown = {}
    for who, url in urls.items():
        response = world.client.get(url, headers=world.as_(who))
        assert response.status_code == 200, (who, response.text[:300])
        shown[who] = " ".join(re.sub(r"<[^>]+>", " ", response.text).split())
    return shown


def lifted(world: RemovalWorld) -> int:
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    for device_id in ("seal-a1", "seal-a2"):
        said(world, device_id, EventType.HEARTBEAT, {"armed": True}, CASE_A)
        world.answer(device_id, commands[device_id].id)
        said(world, device_id, EventType.DISARMED, {"reason": "command", "by": "court"}, CASE_A)
    assert world.read(request_id)["state"] == "disarmed"
    assert world.ok("officer", request_id, "lifted", {"note": "现场拆除"})["state"] == "lifted"
    return request_id


def test_a_lifted_request_keeps_its_record_when_its_seal_is_armed_in_another_case(world: RemovalWorld) -> None:
    """Case A's request is lifted; the clerk binds seal-a1 to case B, where it arms. A's request still says what
    happened in A (disarmed, armed false) — to the debtor, the creditor and the judge, in the API and on every page —
    and none of them learns the seal's state in B."""
    request_id = lifted(world)
    before = {who: seals_of(world.read(request_id, who)) for who in ("debtor", "creditor", "judge")}
    assert before["debtor"] == [("seal-a1", "disarmed", False), ("seal-a2", "disarmed", False)]
    pages_before = pages(world)
    assert all("应答后又重新布防" not in page for page in pages_before.values())

    bound = world.client.put(
        "/api/seals/seal-a1/binding", json={"case_no": CASE_B, "location": "B 仓库"}, headers=world.as_("clerk")
    )
    assert bound.status_code == 200, bound.text
    said(world, "seal-a1", EventType.ARMED, {"reason": "command", "by": "court"}, CASE_B)

    assert {who: seals_of(world.read(request_id, who)) for who in before} == before
    for who, page in pages(world).items():
        assert "应答后又重新布防" not in page and "Armed again after its answer" not in page, who
        assert page.count("已解除布防") == pages_before[who].count("已解除布防"), who


def test_an_aborted_request_keeps_its_record_when_the_seals_answer_and_arm_afterwards(world: RemovalWorld) -> None:
    """The judge withdraws the approval: seal-a1 had acknowledged, seal-a2 not. The abort's signed arm then arms
    seal-a1 in the same case, and seal-a2's late ack of the withdrawn disarm arrives: the aborted request still says
    seal-a1 disarmed (not 'armed again', which asks for a re-send a final request cannot have) and seal-a2's disarm
    withdrawn with the approval."""
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    world.answer("seal-a1", commands["seal-a1"].id)
    said(world, "seal-a1", EventType.DISARMED, {"reason": "command", "by": "court"}, CASE_A)
    aborted = world.ok("judge", request_id, "abort", {"reasons": "债权人提出异议，撤销准予。"})
    assert aborted["state"] == "aborted"
    before = seals_of(world.read(request_id, "judge"))
    assert [status for _, status, _ in before] == ["disarmed", "withdrawn"]

    said(world, "seal-a1", EventType.ARMED, {"reason": "command", "by": "court"}, CASE_A)
    world.answer("seal-a2", commands["seal-a2"].id)

    assert seals_of(world.read(request_id, "judge")) == before
    assert all("应答后又重新布防" not in page for page in pages(world).values())


def test_an_open_request_shows_the_seal_armed_only_by_its_events_in_the_request_case(world: RemovalWorld) -> None:
    """The armed state a request shows of a seal is what its signed events in the request's case said: an event the
    seal stored in another case before it came to this one says nothing here."""
    said(world, "seal-b", EventType.ARMED, {"reason": "command", "by": "court"}, CASE_B)
    assert world.client.delete("/api/seals/seal-b/binding", headers=world.as_("clerk")).status_code == 204
    bound = world.client.put(
        "/api/seals/seal-b/binding", json={"case_no": CASE_A, "location": "A 后门"}, headers=world.as_("clerk")
    )
    assert bound.status_code == 200, bound.text
    request_id = world.filed()
    world.approved(request_id)
    assert ("seal-b", "sent", None) in seals_of(world.read(request_id, "judge"))


def test_an_open_request_counts_what_was_stored_after_the_reader_took_the_time(world: RemovalWorld) -> None:
    """A page takes the time, then reads. An ack (and the seal's ``disarmed``) committed in between made the request
    ``disarmed`` while its seal read ``waiting_for_seal`` (the ack shown as never come, the seal armed): CI saw that
    page stay so, nothing later changing to mend it. An open request counts everything stored."""
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    taken = utc_now() - timedelta(seconds=1)  # the reader's clock, taken before the answers were committed
    for device_id in ("seal-a1", "seal-a2"):
        world.answer(device_id, commands[device_id].id)
        said(world, device_id, EventType.DISARMED, {"reason": "command", "by": "court"}, CASE_A)
    assert world.read(request_id)["state"] == "disarmed"
    with session_scope(world.session_factory) as session:
        request = session.get(RemovalRequest, request_id)
        assert request is not None
        shown = [
            (p.device_id, p.status.value, p.command_state, p.armed) for p in seal_progress(session, request, now=taken)
        ]
    assert shown == [("seal-a1", "disarmed", "acknowledged", False), ("seal-a2", "disarmed", "acknowledged", False)]
