"""A seal's statuses are ordered by its connection stamps, bounded by the court's clock (server.ingest.statuses): a
stamp far in the future (a seal that booted with its clock ahead, or a forged status: they are not signed) is
ordered and stored as received, so it cannot hide the seal's later statuses — its real Last Will among them."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from seal_protocol import encode_status
from seal_protocol.envelope import utc_now_ms
from seal_protocol.status import SealStatus
from server.core.db import SessionFactory
from server.ingest.liveness import LivenessChecker
from server.ingest.results import Message, Outcome
from server.ingest.statuses import STATUS_CLOCK_SKEW
from server.seals.models import Seal
from tests.server.ingest_world import Court, make_court


def _status(court: Court, state: SealStatus, stamp: datetime, received_at: datetime, *, seal: str = "a") -> str:
    topic = (court.a if seal == "a" else court.b).status_topic
    [result] = court.ingestor.ingest([Message(topic, encode_status(state, ts=utc_now_ms(stamp)), received_at)])
    assert result.outcome is Outcome.STATUS
    return result.detail


def _stored(session_factory: SessionFactory, device_id: str) -> Seal:
    with session_factory() as session:
        return session.scalars(select(Seal).where(Seal.device_id == device_id)).one()


def test_a_future_stamp_is_ordered_as_received_and_the_real_will_pages(
    session_factory: SessionFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    court = make_court(session_factory, tmp_path)  # no grace: an offline status pages at once
    now = datetime.now(UTC)
    court.send(court.a, court.a.event(), at=now)
    # The seal boots with its clock five years ahead (a Pi without RTC, a bad fake-hwclock file) and connects.
    ahead = now + timedelta(days=5 * 365)
    with caplog.at_level(logging.WARNING, logger="server.ingest.ingestor"):
        detail = _status(court, SealStatus.ONLINE, ahead, now)
    assert detail.startswith("online (stamp ") and "ordered as " in detail
    assert any(
        "stamped in the future" in r.getMessage() and court.a.device_id in r.getMessage() for r in caplog.records
    )
    assert court.metrics.snapshot().status_stamps_clamped == 1
    seal = _stored(session_factory, court.a.device_id)
    assert seal.status == "online" and seal.status_ts == now + STATUS_CLOCK_SKEW  # as stamped at the bound
    # NTP corrects the clock; the seal reconnects (stamped with the true time), then loses power: its Will.
    later = now + timedelta(hours=1)
    assert _status(court, SealStatus.ONLINE, later, later) == "online"
    assert _status(court, SealStatus.OFFLINE, later, later + timedelta(minutes=5)) == "offline"
    seal = _stored(session_factory, court.a.device_id)
    assert seal.status == "offline"
    assert [a.details["reason"] for a in court.alarms("offline")] == ["offline_status"]
    assert court.metrics.snapshot().status_stamps_clamped == 1


def test_a_stamp_within_the_skew_is_the_seals_own(session_factory: SessionFactory, tmp_path: Path) -> None:
    court = make_court(session_factory, tmp_path)
    now = datetime.now(UTC).replace(microsecond=0)
    ahead = now + STATUS_CLOCK_SKEW  # at the bound: kept
    assert _status(court, SealStatus.ONLINE, ahead, now) == "online"
    assert _stored(session_factory, court.a.device_id).status_ts == ahead
    assert _status(court, SealStatus.ONLINE, now + timedelta(seconds=1), now) == "online (older than the stored one)"
    assert court.metrics.snapshot().status_stamps_clamped == 0


def test_a_seal_whose_clock_stays_ahead_is_ordered_by_receipt(session_factory: SessionFactory, tmp_path: Path) -> None:
    """Every stamp of such a seal is clamped: its online, then its connection's Will, order as received."""
    court = make_court(session_factory, tmp_path)
    now = datetime.now(UTC)
    court.send(court.a, court.a.event(), at=now)
    stamp = now + timedelta(days=365)
    assert _status(court, SealStatus.ONLINE, stamp, now).startswith("online (stamp")
    assert _status(court, SealStatus.OFFLINE, stamp, now + timedelta(minutes=1)).startswith("offline (stamp")
    assert _stored(session_factory, court.a.device_id).status == "offline"
    assert len(court.alarms("offline")) == 1
    assert court.metrics.snapshot().status_stamps_clamped == 2


def test_with_a_grace_the_liveness_check_pages_a_will_after_a_future_stamp(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    court = make_court(session_factory, tmp_path, offline_grace_s=60)  # the default grace
    now = datetime.now(UTC)
    for seal in (court.a, court.b):
        court.send(seal, seal.event(), at=now)
    _status(court, SealStatus.ONLINE, now + timedelta(days=365), now)  # seal a: a year ahead once (or forged)
    # Both seals connect normally once the skew has passed and lose power 10 s after: their Wills come.
    conn = now + STATUS_CLOCK_SKEW + timedelta(minutes=1)
    for name in ("a", "b"):
        assert _status(court, SealStatus.ONLINE, conn, conn, seal=name) == "online"
        assert _status(court, SealStatus.OFFLINE, conn, conn + timedelta(seconds=10), seal=name) == "offline"
    assert court.alarms("offline") == []  # the grace: the liveness check decides
    checker = LivenessChecker(session_factory, offline_after_s=3600, interval_s=60, offline_grace_s=60)
    assert sorted(checker.check(conn + timedelta(seconds=100))) == ["seal-a", "seal-b"]  # 90 s after the Wills


def test_a_seal_whose_stamps_only_grow_is_online_after_a_reboot_with_its_clock_behind(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    """A Pi without RTC restores its saved clock and connects before NTP: its clock is behind its last connection's
    stamp, but the agent stamps the new connection after that one (seal_agent.connection_stamps), so it stands."""
    court = make_court(session_factory, tmp_path, offline_grace_s=60)
    now = datetime.now(UTC).replace(microsecond=0)
    court.send(court.a, court.a.event(), at=now)
    last_conn = now + timedelta(minutes=30)
    _status(court, SealStatus.ONLINE, last_conn, last_conn)
    _status(court, SealStatus.OFFLINE, last_conn, now + timedelta(minutes=40))  # power lost: its Will
    back = now + timedelta(minutes=45)
    restored = now + timedelta(minutes=17, seconds=40)  # the clock after boot, before NTP
    # What a seal sending its clock's time would get: ignored, the court shows it offline while it talks.
    assert _status(court, SealStatus.ONLINE, restored, back) == "online (older than the stored one)"
    # What the agent sends: max(its clock, the last stamp + 1 ms).
    assert _status(court, SealStatus.ONLINE, last_conn + timedelta(milliseconds=1), back) == "online"
    assert _stored(session_factory, court.a.device_id).status == "online"


def test_a_later_stamp_is_never_ordered_before_an_earlier_one(session_factory: SessionFactory, tmp_path: Path) -> None:
    """A seal drifting ahead: one connection's stamp just within the bound (kept), the next, 90 s later, just past it.
    Cut back to its receipt, the second was "older" than the first: the seal showed offline while connected, and its
    Will was dropped too (a hostile review of the bound)."""
    court = make_court(session_factory, tmp_path)
    now = datetime.now(UTC).replace(microsecond=0)
    court.send(court.a, court.a.event(), at=now)
    first = now + STATUS_CLOCK_SKEW - timedelta(seconds=1)
    assert _status(court, SealStatus.ONLINE, first, now) == "online"
    assert _status(court, SealStatus.OFFLINE, first, now + timedelta(seconds=30)) == "offline"
    reconnect = now + timedelta(seconds=90)
    second = reconnect + STATUS_CLOCK_SKEW + timedelta(seconds=2)
    assert _status(court, SealStatus.ONLINE, second, reconnect).startswith("online (stamp ")
    assert _stored(session_factory, court.a.device_id).status == "online"
    assert _status(court, SealStatus.OFFLINE, second, reconnect + timedelta(seconds=60)) == "offline"
    assert _stored(session_factory, court.a.device_id).status == "offline"
