"""The court judges silence, expiry and the order of statuses by what the seals sent, not by when it read them:
the ingest's caught-up mark (:mod:`server.marks.marks`) and the statuses' connection stamps, on the real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from seal_protocol import encode_status
from seal_protocol.commands import CommandAction
from seal_protocol.envelope import utc_now_ms
from seal_protocol.signing import generate_signing_key
from seal_protocol.status import SealStatus, supersedes
from server.auth.access import Role
from server.auth.users import get_user
from server.commands.failures import expire_due_and_alarm
from server.commands.models import CourtCommand
from server.commands.service import issue_command
from server.core.db import SessionFactory, session_scope
from server.ingest.liveness import LivenessChecker
from server.ingest.results import Message
from server.marks.marks import CaughtUp, Mark, forget_marks, judging_moment, read_marks, record_mark
from server.seals.models import Seal
from tests.server.auth_helpers import add_user
from tests.server.helpers import CASE_A
from tests.server.ingest_world import Court, make_court

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_judging_moment() -> None:
    assert judging_moment(T0, [], forget_s=600) == T0  # no ingest has ever marked: judged as before
    marks = [Mark("a", at(-5), at(-1)), Mark("b", at(-30), at(-2)), Mark("gone", at(-3000), at(-900))]
    assert judging_moment(T0, marks, forget_s=600) == at(-30)  # the slowest live worker; the gone one is left out
    assert judging_moment(T0, marks, forget_s=10_000) == at(-3000)
    assert judging_moment(T0, marks, forget_s=0.5) == at(-5)  # every worker gone: the newest mark known
    assert judging_moment(at(-10), [Mark("a", at(-5), at(-20))], forget_s=600) == at(-10)  # never after now


def test_a_mark_never_goes_back(session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as session:
        record_mark(session, worker="w1", caught_up_at=at(10), now=at(11))
    with session_scope(session_factory) as session:
        record_mark(session, worker="w1", caught_up_at=at(5), now=at(12))  # an older marker delivered again
    with session_factory() as session:
        assert read_marks(session) == [Mark("w1", at(10), at(12))]


def test_marks_of_workers_taken_away_are_forgotten(session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as session:
        record_mark(session, worker="w1", caught_up_at=at(10), now=at(11))
        record_mark(session, worker="w2", caught_up_at=at(1), now=at(2))
    with session_scope(session_factory) as session:
        forget_marks(session, ["w2"])
    with session_factory() as session:
        assert [mark.worker for mark in read_marks(session)] == ["w1"]


def test_postponed_then_bounded(session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as session:
        record_mark(session, worker="w1", caught_up_at=at(0), now=at(0))
    clock = [0.0]
    lags: list[float] = []
    judge = CaughtUp("test", forget_s=600, wait_max_s=100, on_lag=lags.append, monotonic=lambda: clock[0])
    with session_factory() as session:
        assert judge.moment(session, at(10)) == at(0)  # within the slack: the mark
        assert judge.moment(session, at(60)) == at(0)  # behind: postponed
        clock[0] = 99.0
        assert judge.moment(session, at(160)) == at(0)
        clock[0] = 100.0
        assert judge.moment(session, at(161)) == at(161)  # behind for the bound: judged by the clock again
    assert lags == [10.0, 60.0, 160.0, 161.0]


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    return make_court(session_factory, tmp_path)


def test_silence_is_judged_only_up_to_the_mark(court: Court) -> None:
    """The court was down: the seal's last stored event is old, but the ingest has not read what the broker held."""
    court.send(court.a, court.a.event(), at=T0)
    checker = LivenessChecker(court.session_factory, offline_after_s=10, interval_s=1)
    with session_scope(court.session_factory) as session:
        record_mark(session, worker="w1", caught_up_at=at(5), now=at(5))
    assert checker.check(at(13)) == []  # judged at 5 s: silent for 5 s only
    with session_scope(court.session_factory) as session:
        record_mark(session, worker="w1", caught_up_at=at(11), now=at(13))  # caught up: still nothing came
    assert checker.check(at(13)) == ["seal-a"]


def _disarm(session_factory: SessionFactory, ttl_s: float, now: datetime) -> int:
    add_user(session_factory, "judge", Role.JUDGE, (CASE_A,))
    with session_scope(session_factory) as session:
        seal = session.scalars(select(Seal).where(Seal.device_id == "seal-a")).one()
        row = issue_command(
            session,
            seal=seal,
            action=CommandAction.DISARM,
            args={},
            key=generate_signing_key(),
            ttl=timedelta(seconds=ttl_s),
            user=get_user(session, username="judge"),
            now=now,
        )
        return row.id


def test_a_command_expires_only_once_the_ingest_is_past_its_expiry(court: Court) -> None:
    command_id = _disarm(court.session_factory, 8, T0)
    with session_scope(court.session_factory) as session:  # the mark (less the margin) is before the expiry
        assert expire_due_and_alarm(session, now=at(20), due_before=at(7)) == []
    with session_scope(court.session_factory) as session:
        assert expire_due_and_alarm(session, now=at(20), due_before=at(9)) == [(command_id, "seal-a")]
    with court.session_factory() as session:
        assert session.get(CourtCommand, command_id).state == "expired"  # type: ignore[union-attr]


def test_supersedes() -> None:
    old, new = at(0), at(5)
    assert supersedes(SealStatus.ONLINE, new, None, None)
    assert supersedes(SealStatus.OFFLINE, new, "online", old)
    assert not supersedes(SealStatus.OFFLINE, old, "online", new)  # a Will of a connection that is over
    assert supersedes(SealStatus.OFFLINE, new, "online", new)  # the Will of the stored online's connection
    assert not supersedes(SealStatus.ONLINE, new, "offline", new)  # that connection's online, read after its end
    assert supersedes(SealStatus.ONLINE, new, "online", new)  # a copy: changes nothing


def _status(court: Court, state: SealStatus, stamp: datetime, received: datetime) -> None:
    payload = encode_status(state, ts=utc_now_ms(stamp))
    court.ingestor.ingest([Message(court.a.status_topic, payload, received)])


def _seal(court: Court) -> tuple[str | None, datetime | None, datetime | None]:
    with court.session_factory() as session:
        seal = session.scalars(select(Seal).where(Seal.device_id == "seal-a")).one()
        return seal.status, seal.status_changed_at, seal.status_ts


def test_statuses_are_ordered_by_their_connection_stamps_not_by_when_they_were_read(court: Court) -> None:
    _status(court, SealStatus.ONLINE, at(0), at(1))
    _status(court, SealStatus.ONLINE, at(10), at(11))  # the seal reconnected
    # The Will of the first connection, read late (a paused worker, a redelivery): out of date.
    _status(court, SealStatus.OFFLINE, at(0), at(30))
    assert _seal(court) == ("online", at(1), at(10))
    _status(court, SealStatus.OFFLINE, at(10), at(40))  # the second connection's Will: it ended
    assert _seal(court) == ("offline", at(40), at(10))
    _status(court, SealStatus.ONLINE, at(10), at(50))  # that connection's online, read after its Will
    assert _seal(court) == ("offline", at(40), at(10))
    _status(court, SealStatus.ONLINE, at(60), at(61))
    assert _seal(court) == ("online", at(61), at(60))


def test_a_marker_without_its_zone_costs_only_itself(session_factory: SessionFactory) -> None:
    """A batch's markers are recorded by the newest good one; a naive or broken one is logged and left out (it
    dropped the whole batch's marks)."""
    from server.ingest.marker import Marker

    marker = Marker("w1", session_factory, interval_s=60, publish=lambda topic, payload: None, may_publish=lambda: True)
    marker.passed([at(7).isoformat().encode(), at(9).replace(tzinfo=None).isoformat().encode(), b"\xff"])
    with session_factory() as session:
        assert [(mark.worker, mark.caught_up_at) for mark in read_marks(session)] == [("w1", at(7))]
