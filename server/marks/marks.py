"""The ingest's caught-up mark: up to when has the court stored what the broker held for it?

The court must not judge a seal silent, nor a command unanswered, on what it has not read yet: after the court or
its database was down, the broker holds the seals' events and acks for the court's persistent sessions, and the
time they were *received* says nothing about when they were *sent*. So each ingest worker publishes, every
``[mqtt] mark_interval_s``, a QoS 1 marker to a topic only it subscribes to (:mod:`server.ingest.marker`), carrying
the moment it was sent. The broker delivers a client's messages in order, so once the worker has committed every
message it received before its marker, everything the broker held for it before that moment is stored: the worker
records ``caught_up_at`` = the marker's send time in ``ingest_marks`` (one row per worker, shared by every process).

The liveness check and the command dispatcher judge at the *judging moment* (:class:`CaughtUp`): the smallest
``caught_up_at`` of the live workers (a worker whose row was not written for ``[liveness] mark_forget_s`` is gone
and no longer holds the others back; if every one is gone, the newest mark known), never later than now. With no
row at all (no ingest has ever marked: an old deployment, a test) it is now, as before.

Bound: while the judging moment lags now by more than :data:`BEHIND_AFTER_S` the court says so (a warning, the
gauge ``seal_ingest_caught_up_lag_seconds``, ``/api/health``); once it has lagged for ``[liveness]
caught_up_wait_max_s`` in a row, as seen by this process, it judges by now again (an error in the log): an ingest that
never catches up must not silence the liveness check and the commands' expiry for good.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from server.core.base import utc_now
from server.marks.models import IngestMark

logger = logging.getLogger(__name__)

#: A judging moment this far behind now counts as postponed judging (a few marker periods).
BEHIND_AFTER_S = 15.0
#: A postponement is logged again at most this often.
LOG_EVERY_S = 60.0
#: The markers' topics: outside ``seal/v1/…``, so no seal's ACL pattern reaches them.
MARK_TOPIC_ROOT = "court/v1/ingest-mark"


def mark_topic(worker: str) -> str:
    """The topic of ``worker``'s markers (a character MQTT reserves in a topic becomes ``_``)."""
    return f"{MARK_TOPIC_ROOT}/{re.sub(r'[+#/$]', '_', worker)}"


@dataclass(frozen=True, slots=True)
class Mark:
    worker: str
    caught_up_at: datetime
    marked_at: datetime


def judging_moment(now: datetime, marks: Iterable[Mark], *, forget_s: float) -> datetime:
    """Up to when the court may judge, at ``now``: the smallest ``caught_up_at`` of the workers that marked within
    ``forget_s``, else the newest mark, never after ``now``; ``now`` when there is no mark at all."""
    marks = list(marks)
    if not marks:
        return now
    live = [m.caught_up_at for m in marks if m.marked_at >= now - timedelta(seconds=forget_s)]
    moment = min(live) if live else max(m.caught_up_at for m in marks)
    return min(moment, now)


def read_marks(session: Session) -> list[Mark]:
    rows = session.execute(select(IngestMark.worker, IngestMark.caught_up_at, IngestMark.marked_at))
    return [Mark(*row) for row in rows]


def record_mark(session: Session, *, worker: str, caught_up_at: datetime, now: datetime | None = None) -> None:
    """Record (in the caller's transaction) that ``worker`` has stored everything sent to it before
    ``caught_up_at``; a mark never goes back."""
    now = now or utc_now()
    row = session.get(IngestMark, worker, with_for_update=True)
    if row is None:
        session.add(IngestMark(worker=worker, caught_up_at=caught_up_at, marked_at=now))
        return
    forward = IngestMark.caught_up_at < caught_up_at
    session.execute(update(IngestMark).where(IngestMark.worker == worker, forward).values(caught_up_at=caught_up_at))
    session.execute(update(IngestMark).where(IngestMark.worker == worker).values(marked_at=now))


def forget_marks(session: Session, workers: list[str]) -> None:
    """Delete (in the caller's transaction) the marks of ``workers``, taken away for good."""
    session.execute(delete(IngestMark).where(IngestMark.worker.in_(workers)))


class CaughtUp:
    """The judging moment of one judge (``name``: the liveness check, the dispatcher), with its postponement bound
    and what it tells: :meth:`moment` in a session."""

    def __init__(
        self,
        name: str,
        *,
        forget_s: float,
        wait_max_s: float,
        on_lag: Callable[[float], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.forget_s = forget_s
        self.wait_max_s = wait_max_s
        self._on_lag = on_lag
        self._monotonic = monotonic
        self._behind_since: float | None = None
        self._logged_at: float | None = None

    def moment(self, session: Session, now: datetime) -> datetime:
        """The moment up to which to judge at ``now``: the ingest's caught-up mark, or ``now`` past the bound."""
        moment = judging_moment(now, read_marks(session), forget_s=self.forget_s)
        lag = (now - moment).total_seconds()
        if self._on_lag is not None:
            self._on_lag(lag)
        if lag <= BEHIND_AFTER_S:
            if self._behind_since is not None:
                logger.info("%s: the ingest has caught up; judging again", self.name)
            self._behind_since = self._logged_at = None
            return moment
        clock = self._monotonic()
        if self._behind_since is None:
            self._behind_since = clock
        waited = clock - self._behind_since
        if waited >= self.wait_max_s:
            if self._logged_at is None or clock - self._logged_at >= LOG_EVERY_S:
                self._logged_at = clock
                logger.error(
                    "%s: the ingest is %.0f s behind the broker for %.0f s (caught_up_wait_max_s): judging by the "
                    "court's clock again",
                    self.name,
                    lag,
                    waited,
                )
            return now
        if self._logged_at is None or clock - self._logged_at >= LOG_EVERY_S:
            self._logged_at = clock
            logger.warning(
                "%s: the ingest has stored what the broker held only up to %s (%.0f s behind): judging postponed to it",
                self.name,
                moment.isoformat(),
                lag,
            )
        return moment
