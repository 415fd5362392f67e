"""The periodic round that settles requests waiting for their seals (:func:`~server.removal.disarm.settle`).

It runs every ``[removal] settle_interval_s`` and at once when woken: the app wakes it when the ingest has stored a
seal's answer to a command, so a request becomes ``disarmed`` moments after the last seal's signed ack, and when it
has stored a seal's event saying it is armed, so a ``disarmed`` request whose seal is armed again goes back to
``disarm_pending`` (:func:`~server.removal.disarm.armed_again`) moments after — without the ingest (whose
transaction holds the evidence) running any of the workflow itself. Each request is settled in
its own transaction, so one that fails does not hold up the others. ``on_settled`` is told the case numbers of the
requests a round settled, after their commits (the app publishes them on the pages' live bus).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.core.base import utc_now
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.core.rounds import RoundLoop
from server.removal.disarm import settle, waiting_request_ids
from server.removal.models import RemovalRequest

logger = logging.getLogger(__name__)


def settle_waiting(
    session_factory: SessionFactory, *, now: datetime, metrics: IngestMetrics | None = None
) -> list[int]:
    """Settle every request waiting for its seals (or ``disarmed``); return those that moved (``disarmed``, or back to
    ``disarm_pending``). One that fails is logged (with its traceback) and counted, and the others are settled all
    the same."""
    with session_factory() as session:
        waiting = waiting_request_ids(session)
    settled = []
    for request_id in waiting:
        try:
            with session_factory() as session:
                if settle(session, request_id=request_id, now=now):
                    settled.append(request_id)
                session.commit()
        except Exception:  # one request's failure must not hold up the others'
            logger.exception("removal request %d could not be settled", request_id)
            if metrics is not None:
                metrics.count_settle_failure()
    for request_id in settled:
        logger.info("removal request %d moved as its seals' signed answers and events say", request_id)
    return settled


class RemovalSettler:
    """:meth:`start` / :meth:`stop` the round; :meth:`wake` after a seal's answer, or an event of it saying it is
    armed, was stored."""

    def __init__(
        self,
        session_factory: SessionFactory,
        *,
        interval_s: float,
        clock: Callable[[], datetime] = utc_now,
        metrics: IngestMetrics | None = None,
        on_settled: Callable[[list[str]], None] | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._clock = clock
        self._metrics = metrics
        self._on_settled = on_settled
        self._loop = RoundLoop("removal-settler", self.run_round, interval_s)

    def run_round(self) -> list[int]:
        settled = settle_waiting(self._session_factory, now=self._clock(), metrics=self._metrics)
        if settled and self._on_settled is not None:
            query = select(RemovalRequest.case_no).where(RemovalRequest.id.in_(settled))
            with self._session_factory() as session:
                case_nos = sorted(set(session.scalars(query)))
            self._on_settled(case_nos)
        return settled

    def wake(self) -> None:
        self._loop.wake()

    def start(self) -> None:
        self._loop.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._loop.stop(timeout)


def settled_first(
    session: Session, request: RemovalRequest, *, now: datetime, published: Callable[[str], None]
) -> None:
    """Before an act on ``request`` (a re-send, a lift without ack, the officer's lifting): settle it if every seal's
    ack is in after all, or move it back to ``disarm_pending`` if a seal says it is armed again — committed, and told
    at once through ``published`` (its case number) to open pages, since the act that follows may be refused and the
    settler then finds nothing to settle — and lock the request again, as read now, for the act."""
    if settle(session, request_id=request.id, now=now):
        case_no = request.case_no
        session.commit()
        published(case_no)
        session.refresh(request, with_for_update=True)
