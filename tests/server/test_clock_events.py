"""The court takes what a seal signs about its clock: ``clock_stepped`` events and the ``clock`` of heartbeats and
``agent_started`` are verified and stored verbatim like any event, and a seal from before them (no ``clock``) is
taken as before. The evidence report words a step for people."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from seal_protocol import EventType
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.evidence.models import Event
from server.export.report_text import TIMELINE_TYPES, event_details, event_name
from server.ingest.ingestor import Ingestor
from server.ingest.models import QuarantinedMessage
from server.ingest.results import Outcome
from tests.server.helpers import CASE_A, SimulatedSeal, message, register

STEP = {
    "step_ms": 259_200_000,
    "before": "2026-11-23T08:00:00.000Z",
    "after": "2026-11-26T08:00:00.000Z",
    "synced": True,
}
OLD_HEARTBEAT = {  # a seal from before the clock's state was signed
    "outbox_depth": 0,
    "snapshots_pending": 0,
    "uptime_s": 60,
    "agent_version": "1.3.0",
    "pir_state": "idle",
    "tamper": "none",
    "camera": "none",
    "armed": True,
    "disk_free_bytes": 10**9,
    "speaker": "untested",
    "speaker_failure": None,
}


def test_clock_stepped_and_the_clock_s_state_are_stored_as_signed_and_older_seals_still_taken(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    unsynced = {"synced": False, "max_error_ms": 16000}
    sent = [
        seal.event(
            EventType.AGENT_STARTED,
            {
                "agent_version": "1.5.0",
                "armed": True,
                "outbox_depth": 0,
                "camera": "none",
                "clock": unsynced,
                "boot_id": "f69d11dc-8580-4f56-bbb3-a6b41dca518a",
            },
        ),
        seal.event(EventType.HEARTBEAT, {**OLD_HEARTBEAT, "clock": unsynced}),
        seal.event(EventType.CLOCK_STEPPED, STEP),
        seal.event(EventType.HEARTBEAT, {**OLD_HEARTBEAT, "clock": {"synced": True, "max_error_ms": 12}}),
        seal.event(EventType.HEARTBEAT, {**OLD_HEARTBEAT, "clock": {"synced": None, "max_error_ms": None}}),
        seal.event(EventType.HEARTBEAT, OLD_HEARTBEAT),
    ]
    results = ingestor.ingest([message(seal.event_topic, data) for data in sent])
    assert [r.outcome for r in results] == [Outcome.STORED] * len(sent), results
    with session_factory() as session:
        assert session.scalars(select(QuarantinedMessage)).all() == []
        rows = list(session.scalars(select(Event).order_by(Event.seq)))
    assert [r.type for r in rows] == [
        "agent_started",
        "heartbeat",
        "clock_stepped",
        "heartbeat",
        "heartbeat",
        "heartbeat",
    ]
    assert [bytes(r.raw) for r in rows] == sent  # verbatim
    assert rows[2].payload == STEP and json.loads(sent[2])["payload"] == STEP
    assert rows[0].payload["clock"] == unsynced and rows[0].payload["boot_id"].startswith("f69d11dc")
    assert "clock" not in rows[5].payload


def test_the_report_words_a_clock_step_and_lists_it_on_the_timeline() -> None:
    assert "clock_stepped" in TIMELINE_TYPES
    assert event_name("clock_stepped") == ("封条时钟跳变", "seal clock stepped")
    zh, en = event_details("clock_stepped", STEP)
    assert "+3 d 0 h 0 min 0.000 s" in zh and "偏早" in zh and "时钟已同步" in zh
    assert "stamped about 3 d 0 h 0 min 0.000 s early" in en
    zh, en = event_details("clock_stepped", {**STEP, "step_ms": -2500, "synced": None})
    # Not synchronised after the step: a step away from the true time reads the same, so no side is called wrong.
    assert "-2.500 s" in zh and "偏晚" not in zh and "哪一方正确" in zh
    assert "differ by 2.500 s" in en and "late" not in en and "early" not in en
    zh, en = event_details("clock_stepped", {**STEP, "synced": False})
    assert "偏早" not in zh and "时钟仍未同步" in zh and "not synchronised" in en
