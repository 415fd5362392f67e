"""Two ingest workers of a shared group: a seal's status messages may reach them in one order and commit in the
other. The status received last is the seal's status, and an out-of-date offline raises no alarm."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from seal_protocol import encode_status
from seal_protocol.envelope import utc_now_ms
from seal_protocol.status import SealStatus
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.ingest.ingestor import Ingestor
from server.ingest.results import Message, Outcome
from server.seals.models import Seal
from tests.server.ingest_world import Court, make_court


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    return make_court(session_factory, tmp_path)  # offline_grace_s 0: an offline status raises its alarm at once


def test_an_older_status_committed_last_does_not_win(court: Court, tmp_path: Path) -> None:
    other = Ingestor(court.session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "other")
    a = court.a
    will_at = datetime.now(UTC) - timedelta(seconds=2)  # the broker's Last Will of the dropped connection ...
    back_at = will_at + timedelta(seconds=1)  # ... then the seal is back: its online reaches the other worker
    offline = encode_status(SealStatus.OFFLINE, ts=utc_now_ms(will_at - timedelta(minutes=5)))
    online = encode_status(SealStatus.ONLINE, ts=utc_now_ms(back_at))

    [first] = other.ingest([Message(a.status_topic, online, back_at)])
    [late] = court.ingestor.ingest([Message(a.status_topic, offline, will_at)])  # committed after, received before

    assert (first.outcome, late.outcome) == (Outcome.STATUS, Outcome.STATUS)
    with court.session_factory() as session:
        seal = session.scalars(select(Seal).where(Seal.device_id == a.device_id)).one()
        assert (seal.status, seal.status_changed_at) == ("online", back_at)
    assert court.alarms("offline") == []


def test_an_older_event_committed_last_does_not_set_last_seen_back(court: Court, tmp_path: Path) -> None:
    other = Ingestor(court.session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "other")
    a = court.a
    first, second = a.event(), a.event()
    first_at = datetime.now(UTC) - timedelta(seconds=2)
    second_at = first_at + timedelta(seconds=1)

    [stored_second] = other.ingest([Message(a.event_topic, second, second_at)])
    [stored_first] = court.ingestor.ingest([Message(a.event_topic, first, first_at)])  # received first, committed last

    assert (stored_second.outcome, stored_first.outcome) == (Outcome.STORED, Outcome.STORED)
    with court.session_factory() as session:
        seal = session.scalars(select(Seal).where(Seal.device_id == a.device_id)).one()
        assert (seal.last_seen_at, seal.last_event_at) == (second_at, second_at)
