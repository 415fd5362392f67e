"""Two ingest workers of a shared group: a seal's status messages may reach them in one order and commit in the
other. The status received last is the seal's status, and an out-of-date offline raises no alarm."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

import server.ingest.batch as batch_module
from seal_protocol import encode_status
from seal_protocol.envelope import utc_now_ms
from seal_protocol.status import SealStatus
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.ingest.ingestor import Ingestor
from server.ingest.results import IngestResult, Message, Outcome
from server.ingest.seal_cache import SealRow
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


def test_a_will_read_before_the_newer_online_commits_pages_nobody(
    court: Court, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Will's batch reads the seal's row (the old connection's online: the Will supersedes it), then the other
    worker commits the seal's new online before the Will's batch locks the row. The Will stands only against the row
    locked (server.ingest.statuses): no offline alarm, and its result says it was older."""
    if not database_url.startswith("postgresql"):
        pytest.skip("needs concurrent transactions (SQLite: one writer from BEGIN)")
    other = Ingestor(court.session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "other")
    a = court.a
    now = datetime.now(UTC)
    court.send(a, a.event(), at=now - timedelta(minutes=10))
    old_stamp, new_stamp = now - timedelta(minutes=5), now - timedelta(seconds=30)  # connections 1 and 2
    court.ingestor.ingest(
        [Message(a.status_topic, encode_status(SealStatus.ONLINE, ts=utc_now_ms(old_stamp)), old_stamp)]
    )
    will = encode_status(SealStatus.OFFLINE, ts=utc_now_ms(old_stamp))  # connection 1's Last Will
    online = encode_status(SealStatus.ONLINE, ts=utc_now_ms(new_stamp))

    real = batch_module.read_seals
    others: list[IngestResult] = []
    fired: list[bool] = []

    def read_then_let_the_other_worker_commit(session: Session, device_ids: set[str]) -> dict[str, SealRow]:
        rows = real(session, device_ids)
        if not fired:  # this worker's read only (the other's reads through here too)
            fired.append(True)
            worker = threading.Thread(
                target=lambda: others.extend(other.ingest([Message(a.status_topic, online, now)]))
            )
            worker.start()
            worker.join(20)
            assert not worker.is_alive(), "the other worker waited for this one: it holds no lock yet"
        return rows

    monkeypatch.setattr(batch_module, "read_seals", read_then_let_the_other_worker_commit)
    [late] = court.ingestor.ingest([Message(a.status_topic, will, now - timedelta(seconds=1))])

    assert [r.detail for r in others] == ["online"]
    assert court.alarms("offline") == []
    assert (late.outcome, late.detail) == (Outcome.STATUS, "offline (older than the stored one)")
    with court.session_factory() as session:
        seal = session.scalars(select(Seal).where(Seal.device_id == a.device_id)).one()
        assert (seal.status, seal.status_ts, seal.status_changed_at) == (
            "online",
            new_stamp.replace(microsecond=new_stamp.microsecond // 1000 * 1000),
            old_stamp,
        )
    assert court.alarms("offline") == []


def test_a_will_that_stands_against_the_locked_row_still_pages(
    court: Court, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same race with an older online committed meanwhile (a redelivery of the connection's own): the Will
    still supersedes the row locked, and pages."""
    if not database_url.startswith("postgresql"):
        pytest.skip("needs concurrent transactions (SQLite: one writer from BEGIN)")
    other = Ingestor(court.session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "other")
    a = court.a
    now = datetime.now(UTC)
    court.send(a, a.event(), at=now - timedelta(minutes=10))
    stamp = now - timedelta(minutes=5)
    online = encode_status(SealStatus.ONLINE, ts=utc_now_ms(stamp))
    real = batch_module.read_seals
    others: list[IngestResult] = []
    fired: list[bool] = []

    def read_then_let_the_other_worker_commit(session: Session, device_ids: set[str]) -> dict[str, SealRow]:
        rows = real(session, device_ids)
        if not fired:  # this worker's read only (the other's reads through here too)
            fired.append(True)
            worker = threading.Thread(
                target=lambda: others.extend(other.ingest([Message(a.status_topic, online, now)]))
            )
            worker.start()
            worker.join(20)
            assert not worker.is_alive()
        return rows

    monkeypatch.setattr(batch_module, "read_seals", read_then_let_the_other_worker_commit)
    will = encode_status(SealStatus.OFFLINE, ts=utc_now_ms(stamp))
    [late] = court.ingestor.ingest([Message(a.status_topic, will, now + timedelta(seconds=1))])

    assert [r.detail for r in others] == ["online"] and late.detail == "offline"
    with court.session_factory() as session:
        assert session.scalars(select(Seal.status).where(Seal.device_id == a.device_id)).one() == "offline"
    assert [alarm.details["reason"] for alarm in court.alarms("offline")] == ["offline_status"]
