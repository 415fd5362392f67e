"""A seal's storage report in its ``online`` status (docs/protocol.md, "Status"): parsed strictly, stored on the
seal, re-said with the same stamp, raising and closing ``storage_failed``, and carried by the ``offline`` alarm the
seal's silence (or its Last Will) raises — so the officer sent to the site knows the seal is alive and holding events
it cannot store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from seal_protocol import InvalidEnvelope, encode_status, utc_now_ms
from seal_protocol.status import SealStatus, StorageFault, StorageReport, decode_status, decode_status_message
from server.core.db import SessionFactory
from server.ingest.liveness import LivenessChecker
from server.ingest.results import Message
from server.seals.models import Seal
from tests.server.ingest_world import Court, make_court

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
STAMP = utc_now_ms(T0)
REPORT = StorageReport(StorageFault.READ_ONLY, 2, utc_now_ms(T0 + timedelta(seconds=30)))


def test_the_storage_report_is_optional_and_parsed_strictly() -> None:
    plain = encode_status(SealStatus.ONLINE, agent_version="0.1.0", ts=STAMP)
    assert decode_status_message(plain).storage is None and decode_status(plain) == (SealStatus.ONLINE, STAMP)
    said = encode_status(SealStatus.ONLINE, agent_version="0.1.0", ts=STAMP, storage=REPORT)
    assert b'"storage":{"held":2,"reason":"read_only","since":' in said
    assert decode_status_message(said).storage == REPORT and decode_status(said) == (SealStatus.ONLINE, STAMP)
    with pytest.raises(ValueError):
        encode_status(SealStatus.OFFLINE, ts=STAMP, storage=REPORT)  # a Will is built before any fault
    bad = [
        said.replace(b'"online"', b'"offline"'),
        said.replace(b'"held":2', b'"held":-1'),
        said.replace(b'"held":2', b'"held":true'),
        said.replace(b"read_only", b"melted"),
        said.replace(b'"since":"', b'"since":"x'),
        said.replace(b'"held":2,', b'"held":2,"more":1,'),
        said.replace(b'"storage"', b'"storagf"'),
    ]
    for data in bad:
        with pytest.raises(InvalidEnvelope):
            decode_status_message(data)


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    return make_court(session_factory, tmp_path)


def _status(court: Court, state: SealStatus, at: datetime, storage: StorageReport | None = None) -> None:
    court.ingestor.ingest([Message(court.a.status_topic, encode_status(state, ts=STAMP, storage=storage), at)])


def _seal(court: Court) -> Seal:
    with court.session_factory() as session:
        return session.scalars(select(Seal).where(Seal.device_id == court.a.device_id)).one()


def test_a_re_said_online_replaces_the_report_and_raises_then_closes_storage_failed(court: Court) -> None:
    court.send(court.a, court.a.event(), at=T0)
    _status(court, SealStatus.ONLINE, T0)
    _status(court, SealStatus.ONLINE, T0 + timedelta(seconds=31), REPORT)  # the same connection's stamp
    seal = _seal(court)
    assert (seal.status, seal.storage_fault, seal.storage_held) == ("online", "read_only", 2)
    assert seal.storage_since == T0 + timedelta(seconds=30)
    [alarm] = [a for a in court.alarms() if a.kind == "storage_failed"]
    assert alarm.state == "open" and alarm.severity == "high"
    assert alarm.details == {"storage": "read_only", "held": 2, "since": REPORT.since, "source": "status_report"}

    more = StorageReport(StorageFault.READ_ONLY, 5, REPORT.since)
    _status(court, SealStatus.ONLINE, T0 + timedelta(seconds=40), more)
    [alarm] = [a for a in court.alarms() if a.kind == "storage_failed"]
    assert (alarm.count, alarm.details["held"], _seal(court).storage_held) == (1, 5, 5)  # updated, not a new one

    _status(court, SealStatus.ONLINE, T0 + timedelta(seconds=50))  # the seal stores again
    assert _seal(court).storage_fault is None and _seal(court).storage_held is None
    [alarm] = [a for a in court.alarms() if a.kind == "storage_failed"]
    assert alarm.state == "closed" and "stores events again" in (alarm.closed_note or "")


def test_the_offline_alarms_carry_the_seal_s_last_storage_report(court: Court) -> None:
    court.send(court.a, court.a.event(), at=T0)
    _status(court, SealStatus.ONLINE, T0 + timedelta(seconds=31), REPORT)
    checker = LivenessChecker(court.session_factory, offline_after_s=180, interval_s=0.05)
    assert checker.check(T0 + timedelta(seconds=181)) == ["seal-a"]
    [offline] = [a for a in court.alarms() if a.kind == "offline"]
    assert offline.details["reason"] == "silent"
    assert offline.details["storage"] == {
        "storage": "read_only",
        "held": 2,
        "since": REPORT.since,
        "source": "status_report",
    }

    _status(court, SealStatus.OFFLINE, T0 + timedelta(seconds=200))  # its Will: the report stands through it
    assert _seal(court).storage_fault == "read_only"


def test_the_last_will_s_offline_alarm_says_the_seal_reported_a_storage_failure(court: Court) -> None:
    court.send(court.a, court.a.event(), at=T0)
    _status(court, SealStatus.ONLINE, T0 + timedelta(seconds=31), REPORT)
    _status(court, SealStatus.OFFLINE, T0 + timedelta(seconds=60))  # no grace: the Will raises offline at once
    [offline] = [a for a in court.alarms() if a.kind == "offline"]
    assert offline.details["reason"] == "offline_status" and offline.details["storage"]["held"] == 2
