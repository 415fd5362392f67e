"""Liveness: a seal that stops talking gets an ``offline`` alarm.

A seal's Last Will (the retained ``offline`` status) raises ``offline`` in the ingest. But a Will can be lost (a
broker restart without persistence, a half-open TCP connection that keepalive has not caught yet), so the server also
looks at ``last_seen_at`` (its last new signed event: statuses and snapshots are not signed, and a replayed copy
proves nothing) every ``check_interval_s``: a seal bound to a case and silent for more than ``offline_after_s`` gets
an ``offline`` alarm too. The seal's next new event received after its fault closes it
(:mod:`server.ingest.alarming`, :mod:`server.alarms.back_online`). A seal whose last ``online`` status said it cannot
store events (a card gone read-only: it warns, but commits nothing, so it falls silent) has that report in its alarm's
details (:func:`~server.ingest.storage_alarm.storage_details`). Seals never heard from (not installed yet) and unbound
seals are left alone.

Calm by design: with a grace (``[alarms] offline_grace_s``), an ``offline`` status does not raise the alarm in the
ingest; this check raises it once the status is older than the grace and no new signed event came after it. A seal
that restarts cleanly (its Last Will or its goodbye, then its start-up event a few seconds later) pages nobody.

:func:`find_silent_seals` is the pure core; :class:`LivenessChecker` runs it on the database, on its own thread,
with an injectable clock. Each check also refreshes the gauge of live alarms by kind in the metrics.

Each check also raises ``missing_events`` for the gaps in seals' chains that are ``[mqtt] gap_wait_s`` old and
that no ingest batch raised yet (:func:`~server.ingest.gap_wait.raise_due_gaps`): a gap never filled and never
followed by more of its seal's events raises its alarm within about ``gap_wait_s`` and one round.

Each check first closes the live condition alarms of seals no longer bound to the alarm's case
(:func:`close_unbound_conditions`): those the unbinding had to skip, held at that moment by a
check or an ingest batch. This loop runs anyway, and nothing else would close them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.alarms.back_online import spoke_after
from server.alarms.book import AlarmBook
from server.alarms.models import Alarm
from server.alarms.service import count_live_by_kind
from server.alarms.state import CONDITIONS, LIVE_STATES, AlarmKind, AlarmState, transition
from server.core.base import utc_now
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.core.rounds import RoundLoop
from server.ingest.gap_wait import raise_due_gaps
from server.ingest.storage_alarm import storage_details
from server.marks.marks import CaughtUp
from server.notify.outbox import notifying
from server.seals.models import Seal

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Sighting:
    """When the court last heard from a seal, and the case the seal is bound to."""

    device_id: str
    case_no: str | None
    last_seen_at: datetime | None
    status: str | None = None
    status_changed_at: datetime | None = None
    storage_fault: str | None = None  # the seal said, in its last online status, it cannot store events
    storage_held: int | None = None
    storage_since: datetime | None = None


def find_silent_seals(
    now: datetime, sightings: Iterable[Sighting], *, offline_after_s: float, alarmed: Container[str] = ()
) -> list[Sighting]:
    """Seals bound to a case, heard from once, silent for more than ``offline_after_s``, and not ``alarmed`` yet (in
    that case: a live ``offline`` alarm of another case is not the current case's)."""
    cutoff = now - timedelta(seconds=offline_after_s)
    return [
        s
        for s in sightings
        if s.case_no is not None
        and s.last_seen_at is not None
        and s.last_seen_at < cutoff
        and s.device_id not in alarmed
    ]


def find_gone_seals(
    now: datetime, sightings: Iterable[Sighting], *, grace_s: float, alarmed: Container[str] = ()
) -> list[Sighting]:
    """Seals bound to a case that said ``offline`` more than ``grace_s`` ago, not back since (no new signed event
    received after that status: :func:`~server.alarms.back_online.spoke_after`, the rule that closes the alarm), and
    not ``alarmed`` yet."""
    cutoff = now - timedelta(seconds=grace_s)
    return [
        s
        for s in sightings
        if s.case_no is not None
        and s.status == "offline"
        and s.status_changed_at is not None
        and s.status_changed_at <= cutoff
        and not spoke_after(s.last_seen_at, s.status_changed_at)
        and s.device_id not in alarmed
    ]


#: The note of a condition alarm closed after its seal left the alarm's case (zh first, then English).
UNBOUND_NOTE = (
    "system: 封条已不再绑定于本案，解除绑定时未能关闭此告警，由定期检查关闭 / "
    "the seal is no longer bound to the case; the unbinding could not close this alarm, the periodic check did"
)


def close_unbound_conditions(session: Session, *, now: datetime) -> list[Alarm]:
    """Close, on behalf of the system, every live condition alarm whose seal is no longer bound to the alarm's case
    (unbound, or moved to another case); return them. The caller commits, logs and tells the live pages (the
    alarm's case: its seal may be shown there no longer).

    The unbinding closes these itself (:func:`~server.alarms.service.close_left_conditions`), but skips an alarm
    another transaction holds at that moment — the liveness check locks the live alarms of every silent seal each
    round, an ingest batch those of its seals — and once the seal is no longer the case's, nothing else ever would:
    the liveness check raises only for bound seals, and a missing or destroyed seal never sends what would clear the
    condition. So the liveness check calls this each round, in a transaction of its own that holds nothing else.
    Alarms are locked in id order, without waiting (``SKIP LOCKED``), as the unbinding does: one held now is
    caught the next round."""
    kinds = sorted(kind.value for kind in CONDITIONS)
    query = (
        select(Alarm)
        .join(Seal, Seal.device_id == Alarm.device_id)
        .where(
            Alarm.kind.in_(kinds),
            Alarm.state.in_(LIVE_STATES),
            Seal.case_no.is_distinct_from(Alarm.case_no),
        )
        .order_by(Alarm.id)
        .with_for_update(of=Alarm, skip_locked=True)
        .execution_options(populate_existing=True)
    )
    closing = list(session.scalars(query))
    for alarm in closing:
        alarm.state = transition(alarm.state, AlarmState.CLOSED).value
        alarm.closed_at, alarm.closed_by, alarm.closed_note = now, None, UNBOUND_NOTE
    session.flush()
    return closing


class LivenessChecker:
    """Opens ``offline`` alarms for silent seals, and for seals gone offline past their grace (``offline_grace_s``
    > 0), and closes the condition alarms of seals that left the alarm's case: :meth:`check` once, or :meth:`start`
    a thread that checks. ``on_raised`` is called with the device ids of the alarms raised, ``on_closed`` with the
    (device id, case number) of those closed, after the commit."""

    def __init__(
        self,
        session_factory: SessionFactory,
        *,
        offline_after_s: float,
        interval_s: float,
        offline_grace_s: float = 0.0,
        gap_wait_s: float = 0.0,
        metrics: IngestMetrics | None = None,
        clock: Callable[[], datetime] = utc_now,
        on_raised: Callable[[list[str]], None] | None = None,
        on_closed: Callable[[list[tuple[str, str]]], None] | None = None,
        mark_forget_s: float = 600.0,
        caught_up_wait_max_s: float = 900.0,
    ) -> None:
        self._session_factory = session_factory
        self.offline_after_s = offline_after_s
        self.offline_grace_s = offline_grace_s
        self.gap_wait = timedelta(seconds=gap_wait_s)
        self._on_raised = on_raised
        self._on_closed = on_closed
        self.interval_s = interval_s
        self._metrics = metrics
        self._clock = clock
        self._loop = RoundLoop("liveness-checker", self.check, interval_s)
        lag = None if metrics is None else metrics.set_caught_up_lag
        self._caught_up = CaughtUp(
            "liveness check", forget_s=mark_forget_s, wait_max_s=caught_up_wait_max_s, on_lag=lag
        )

    def check(self, now: datetime | None = None) -> list[str]:
        """Raise ``offline`` for every seal silent at ``now`` (default: the clock); return their device ids.

        Silence is judged only up to the ingest's caught-up mark (:mod:`server.marks.marks`): a seal whose events
        wait at the broker for the court is not silent."""
        now = now or self._clock()
        self._close_unbound(now)
        bound = Seal.case_no.is_not(None)
        with self._session_factory() as session:
            judged = self._caught_up.moment(session, now)
            cutoff = judged - timedelta(seconds=self.offline_after_s)
            candidates = list(session.scalars(select(Seal.device_id).where(bound, Seal.last_seen_at < cutoff)))
            if self.offline_grace_s > 0:
                past_grace = judged - timedelta(seconds=self.offline_grace_s)
                said_offline = (Seal.status == "offline") & (Seal.status_changed_at <= past_grace)
                candidates += session.scalars(select(Seal.device_id).where(bound, said_offline))
            candidates = sorted(set(candidates))
            silent: list[Sighting] = []
            gone: list[Sighting] = []
            if candidates:
                # Lock the alarms first, then the seals: the ingest's order, so the two cannot deadlock. A seal that
                # spoke in the meantime is no longer silent once its row is read again, locked. FOR NO KEY UPDATE,
                # as the ingest's: FOR UPDATE would also wait for the key-share lock of an ingest that has inserted
                # the seal's event and waits for the alarm this check holds (a deadlock).
                # The book may miss an alarm another check or an ingest worker opens meanwhile (a seal with none
                # has no row to lock): raising it under the seal's row looks again (server.alarms.book).
                book = AlarmBook(session, fold_window=timedelta(0), device_ids=candidates, on_open=notifying(session))
                book.lock()
                columns = (
                    *(Seal.device_id, Seal.case_no, Seal.last_seen_at, Seal.status, Seal.status_changed_at),
                    *(Seal.storage_fault, Seal.storage_held, Seal.storage_since),
                )
                rows = session.execute(
                    select(*columns)
                    .where(Seal.device_id.in_(candidates))
                    .order_by(Seal.device_id)
                    .with_for_update(key_share=True)
                )
                sightings = [Sighting(*row) for row in rows]
                # Alarmed in the seal's current case: one moved from a case where it was offline is not, in its new one.
                alarmed = {
                    s.device_id
                    for s in sightings
                    if any(a.case_no == s.case_no for a in book.live(s.device_id, AlarmKind.OFFLINE))
                }
                silent = find_silent_seals(judged, sightings, offline_after_s=self.offline_after_s, alarmed=alarmed)
                if self.offline_grace_s > 0:
                    alarmed |= {s.device_id for s in silent}
                    gone = find_gone_seals(judged, sightings, grace_s=self.offline_grace_s, alarmed=alarmed)
                for seal in silent:
                    assert seal.case_no is not None and seal.last_seen_at is not None
                    details = {
                        "reason": "silent",
                        "last_seen_at": seal.last_seen_at.isoformat(),
                        "silent_s": int((now - seal.last_seen_at).total_seconds()),
                        **storage_details(seal.storage_fault, seal.storage_held, seal.storage_since),
                    }
                    book.raise_alarm(
                        AlarmKind.OFFLINE, device_id=seal.device_id, case_no=seal.case_no, at=now, details=details
                    )
                for seal in gone:
                    assert seal.case_no is not None and seal.status_changed_at is not None
                    details = {
                        "reason": "offline_status",
                        "offline_since": seal.status_changed_at.isoformat(),
                        "grace_s": int(self.offline_grace_s),  # (a setting, 60.0: a bundle holds whole numbers)
                        **storage_details(seal.storage_fault, seal.storage_held, seal.storage_since),
                    }
                    book.raise_alarm(
                        AlarmKind.OFFLINE, device_id=seal.device_id, case_no=seal.case_no, at=now, details=details
                    )
            session.commit()
        gaps = self._raise_gaps(now, lag=now - judged)
        with self._session_factory() as session:
            counts = count_live_by_kind(session)
        for seal in silent:
            logger.warning("seal %s silent since %s: offline alarm", seal.device_id, seal.last_seen_at)
        for seal in gone:
            logger.warning("seal %s offline since %s, not back: offline alarm", seal.device_id, seal.status_changed_at)
        if self._metrics is not None:
            self._metrics.set_alarms_live(counts)
        raised = [seal.device_id for seal in silent + gone] + gaps
        if raised and self._on_raised is not None:
            self._on_raised(raised)
        return raised

    def _raise_gaps(self, now: datetime, *, lag: timedelta) -> list[str]:
        """``missing_events`` for the gaps ``gap_wait_s`` old (counted from the caught-up mark) not raised yet."""
        with self._session_factory() as session:
            raised = raise_due_gaps(session, gap_wait=self.gap_wait, lag=lag, at=now)
            session.commit()
        for device_id in raised:
            logger.warning("seal %s: events missing for over %.1f s: missing_events alarm", device_id, self.gap_wait_s)
        return raised

    @property
    def gap_wait_s(self) -> float:
        return self.gap_wait.total_seconds()

    def _close_unbound(self, now: datetime) -> None:
        """Close the condition alarms of seals that left the alarm's case; log them and tell the alarm's case."""
        with self._session_factory() as session:
            closed = [(a.id, a.kind, a.device_id, a.case_no) for a in close_unbound_conditions(session, now=now)]
            session.commit()
        for alarm_id, kind, device_id, case_no in closed:
            logger.info(
                "alarm %d (%s, seal %s, case %s) closed: the seal left the case", alarm_id, kind, device_id, case_no
            )
        if closed and self._on_closed is not None:
            self._on_closed(sorted({(device_id, case_no) for _, _, device_id, case_no in closed}))

    def start(self) -> None:
        self._loop.start()
        logger.info(
            "liveness check every %.1f s (offline after %d s of silence, or %.0f s after an offline status)",
            self.interval_s,
            self.offline_after_s,
            self.offline_grace_s,
        )

    def stop(self, timeout: float = 10.0) -> None:
        self._loop.stop(timeout)
