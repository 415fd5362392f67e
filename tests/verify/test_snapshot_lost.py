"""A seal's ``snapshot_lost`` (a queued picture it can never deliver: its file gone, corrupt, oversized, unreadable)
on the court's side: stored like any event (not quarantined), it raises a ``snapshot_lost`` alarm, reads in words
in the evidence report, names the picture in the bundle's list, and the exported case verifies offline."""

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
from server.ingest.models import QuarantinedMessage
from tests.server.helpers import CASE_A
from tests.verify.world import CourtWorld, build_world, lines, read_members

SHA = "51b802b34a2e39b17e131dd0ace7427a6820e27725437af24c579d1a102daa6d"
LOST = {
    "snapshot": SHA,
    "reason": "corrupt",
    "detail": "its bytes hash to 93e80842d7ba8eb0f0b5be6ec0cab4f05f5b85171130fa34604eed7ac953c0ec",
    "kept": f"corrupt/{SHA}.jpg",
}


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    return build_world(session_factory, database_url, tmp_path)


def test_a_snapshot_lost_is_stored_raises_its_alarm_reads_in_words_and_verifies(
    world: CourtWorld, tmp_path: Path
) -> None:
    data = world.send("a1", EventType.SNAPSHOT_LOST, LOST)
    world.send("a1")  # the chain goes on after it

    with world.session_factory() as session:
        assert session.scalars(select(QuarantinedMessage)).all() == []
        stored = session.scalars(select(Event).where(Event.type == "snapshot_lost")).one()
        alarm = session.scalars(select(Alarm).where(Alarm.kind == AlarmKind.SNAPSHOT_LOST.value)).one()
    assert stored.raw == data and stored.case_no == CASE_A and stored.payload == LOST
    assert alarm.severity == Severity.HIGH.value and alarm.case_no == CASE_A
    assert alarm.details["snapshot"] == SHA and alarm.details["reason"] == "corrupt"

    assert "snapshot_lost" in TIMELINE_TYPES
    assert event_name("snapshot_lost") == (
        "封条上的快照副本丢失（法院回执前）",
        "the seal's copy of a snapshot lost (before a court receipt)",
    )
    assert event_details("snapshot_lost", LOST) == (
        "快照 51b802b34a2e39b1… 丢失，原因：文件已损坏（内容与其哈希值不符）",
        "snapshot 51b802b34a2e39b1… lost: corrupt: its bytes no longer hash to its name",
    )

    result = world.export(CASE_A, tmp_path / "case.zip")
    verdict = verify_bundle(result.path, log_key=world.log_key.verifier())
    assert verdict.ok, verdict.text()
    members = read_members(result.path)
    assert data in lines(members["events.jsonl"])
    assert AlarmKind.SNAPSHOT_LOST.value in {json.loads(line)["kind"] for line in lines(members["alarms.jsonl"])}
    assert SHA in {json.loads(line)["sha256"] for line in lines(members["snapshots.jsonl"])}


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("missing", ("文件已不存在", "missing: its file is gone")),
        ("corrupt", ("文件已损坏（内容与其哈希值不符）", "corrupt: its bytes no longer hash to its name")),
        ("oversized", ("文件超过大小上限", "oversized: over the size limit")),
        ("unreadable", ("文件无法读取", "unreadable: the file cannot be read")),
        ("never_stored", ("未能存储（存储前断电或崩溃）", "never stored: the seal stopped first")),
    ],
)
def test_the_report_words_a_snapshot_lost_reason_in_chinese_and_english(reason: str, words: tuple[str, str]) -> None:
    zh, en = event_details("snapshot_lost", {**LOST, "reason": reason})
    assert zh == f"快照 51b802b34a2e39b1… 丢失，原因：{words[0]}"
    assert en == f"snapshot 51b802b34a2e39b1… lost: {words[1]}"


def test_a_reason_the_report_does_not_know_is_shown_as_signed_none_as_a_dash_and_a_long_one_cut() -> None:
    def reason(value: object) -> tuple[str, str]:
        zh, en = event_details("snapshot_lost", {**LOST, "reason": value})
        zh_head, en_head = "快照 51b802b34a2e39b1… 丢失，原因：", "snapshot 51b802b34a2e39b1… lost: "
        return zh.removeprefix(zh_head), en.removeprefix(en_head)

    assert reason("eaten by a goat") == ("eaten by a goat", "eaten by a goat")
    assert reason(["corrupt"]) == ("['corrupt']", "['corrupt']")  # any JSON a signed payload may hold
    assert reason(None) == ("—", "—")
    cut = "x" * 120 + "…（全文见 events.jsonl / full text in events.jsonl）"
    assert reason("x" * 100_000) == (cut, cut)
