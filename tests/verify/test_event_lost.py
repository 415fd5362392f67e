"""A seal's ``event_lost`` (an event it could never record, replaced at its place in the chain) on the court's
side: stored like any event, it raises an ``event_lost`` alarm, reads in words in the evidence report, and the
exported case verifies offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from seal_protocol import EventType
from seal_verify import verify_bundle
from server.alarms.models import Alarm
from server.alarms.state import AlarmKind, Severity
from server.core.db import SessionFactory
from server.evidence.models import Event
from server.export.report_text import TIMELINE_TYPES, event_details, event_name
from tests.server.helpers import CASE_A
from tests.verify.world import CourtWorld, build_world, lines, read_members

LOST = {
    "lost_type": "intrusion",
    "lost_ts": "2026-12-05T02:00:00.123Z",
    "reason": "outbox_refused",
    "detail": "SQLITE_TOOBIG: string or blob too big",
}


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    return build_world(session_factory, database_url, tmp_path)


def test_an_event_lost_is_stored_raises_its_alarm_reads_in_words_and_verifies(
    world: CourtWorld, tmp_path: Path
) -> None:
    data = world.send("a1", EventType.EVENT_LOST, LOST)
    world.send("a1")  # the chain goes on after it

    with world.session_factory() as session:
        stored = session.scalars(select(Event).where(Event.type == "event_lost")).one()
        alarm = session.scalars(select(Alarm).where(Alarm.kind == AlarmKind.EVENT_LOST.value)).one()
    assert stored.raw == data and stored.case_no == CASE_A
    assert alarm.severity == Severity.HIGH.value and alarm.case_no == CASE_A

    assert "event_lost" in TIMELINE_TYPES
    assert event_name("event_lost") == ("事件未能记录（已丢失）", "event lost (could not be recorded)")
    zh, en = event_details("event_lost", LOST)
    assert zh == (
        "2026-12-05 10:00:00 的“有人进入（人体感应）”事件未能记录，原因：封条存储拒收："
        "SQLITE_TOOBIG: string or blob too big"
    )
    assert en == (
        "the intrusion (motion sensor) event of 2026-12-05 10:00:00 could not be recorded: refused by the seal's "
        "store: SQLITE_TOOBIG: string or blob too big"
    )

    result = world.export(CASE_A, tmp_path / "case.zip")
    verdict = verify_bundle(result.path, log_key=world.log_key.verifier())
    assert verdict.ok, verdict.text()
    members = read_members(result.path)
    assert data in lines(members["events.jsonl"])
    assert AlarmKind.EVENT_LOST.value in {json.loads(line)["kind"] for line in lines(members["alarms.jsonl"])}
