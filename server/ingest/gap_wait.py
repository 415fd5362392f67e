"""When a gap in a seal's chain raises ``missing_events``: ``[mqtt] gap_wait_s`` after it was recorded, if the
missing events have not arrived by then.

Workers sharing the stream (``[mqtt] shared_group``) each get a share of every seal's events: a seal draining its
outbox has its consecutive seqs dealt to them in turn, so a worker often stores an event before another worker has
stored its predecessor. The event is stored (and acknowledged, and receipted) at once, beyond the gap; the *alarm*
waits. The chain records the time of each gap (:mod:`server.ingest.chain`); the predecessor arriving later is checked
against the stored successor's ``prev_hash`` like any event filling a gap, and closes the gap. A gap still there
``gap_wait_s`` after it was recorded raises ``missing_events`` — in the next batch holding an event of its seal
(:func:`settle_gaps`), or in the liveness check's round (:func:`raise_due_gaps`, every ``[liveness]
check_interval_s``), so a gap that is never filled and never followed by more traffic still raises it within about
``gap_wait_s`` plus one round. Once raised, the gap is marked so (its time cleared): neither raises it again; a new
gap raises it again (folded into the live alarm, a condition) once it is that old in turn; it closes as before when
nothing is missing.

One clock: the times are the database's (:func:`~server.core.db.database_now`), compared with the database's time
again, whichever worker or machine recorded the gap and whichever looks at it. With ``gap_wait_s`` > 0 a gap is also
judged only up to the ingest's caught-up mark (:mod:`server.marks.marks`): a gap recorded after the moment every
worker has stored what the broker held for it may still be filled by a worker that is behind (stopped, restarting,
draining a backlog); the age is counted from that moment, the lag (now less the mark, on the court's clocks) taken off
the database's time. ``gap_wait_s`` = 0: at once, in the batch that stored the event beyond the gap (one worker).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from server.alarms.book import AlarmBook
from server.core.base import utc_now
from server.core.db import SessionFactory, database_now
from server.core.value_lists import one_of
from server.ingest.alarming import on_chain_change
from server.ingest.case_hold import raise_due_holds
from server.ingest.chain import ChainBook, ChainChange
from server.ingest.models import ChainState
from server.marks.marks import judging_moment, read_marks
from server.notify.outbox import notifying
from server.seals.models import Seal

logger = logging.getLogger(__name__)

#: How long a worker that stopped marking still holds the caught-up mark back, as the batch judges it (the
#: ``[liveness] mark_forget_s`` default; the liveness check's round uses its own setting, and its bound on the wait).
MARK_FORGET_S = 600.0

_CHAIN = cast(Table, ChainState.__table__)
_CASES = select(Seal.device_id, Seal.case_no).where(one_of(cast(Table, Seal.__table__).c.device_id, "device_ids"))
#: The seals with a gap not raised yet, recorded at the cutoff or before, or whose refusals held back from
#: ``case_mismatch`` are due (:mod:`.case_hold`) (a handful: the table holds one row a seal).
_DUE = (
    select(_CHAIN.c.device_id)
    .where(or_(_CHAIN.c.unannounced_since <= bindparam("cutoff"), _CHAIN.c.case_held_until <= bindparam("now")))
    .order_by(_CHAIN.c.device_id)
)


def caught_up_lag(session: Session, *, forget_s: float = MARK_FORGET_S) -> timedelta:
    """How far the ingest's caught-up mark is behind now (0: no mark, or caught up)."""
    now = utc_now()
    return now - judging_moment(now, read_marks(session), forget_s=forget_s)


def settle_gaps(
    book: AlarmBook,
    chain: ChainBook,
    case_of: Callable[[str], str | None],
    *,
    gap_wait: timedelta,
    at: datetime,
    lag: Callable[[], timedelta],
) -> None:
    """The ``missing_events`` alarms of a batch's chains (in its transaction, the chain states locked): closed when
    nothing is missing, updated when the missing ranges changed, raised for the gaps ``gap_wait`` old (beyond the
    caught-up ``lag``, asked only then) that were not raised yet. ``case_of``: the seal's current case."""
    changed = {change.device_id: change for change in chain.changes()}
    due: dict[str, ChainChange] = {}
    pending = chain.unannounced()
    if pending and min(pending.values()) <= chain.now() - gap_wait:  # the caught-up mark read only then
        cutoff = chain.now() - gap_wait - (lag() if gap_wait else timedelta(0))
        for device_id in pending:
            if (change := chain.announce(device_id, cutoff)) is not None:
                due[device_id] = change
    for device_id in sorted(changed.keys() | due.keys()):
        change = changed.get(device_id) or due[device_id]
        on_chain_change(book, change, case_no=case_of(device_id), at=at, due=device_id in due)


def raise_due_gaps(session: Session, *, gap_wait: timedelta, lag: timedelta, at: datetime) -> list[str]:
    """The liveness check's round: raise ``missing_events`` (in the caller's transaction) for every gap recorded
    more than ``gap_wait`` + ``lag`` ago (the database's clock) and not raised yet, and ``case_mismatch`` for the
    refusals held back until now (:func:`~.case_hold.raise_due_holds`); return the seals whose alarm was raised.
    Locks as the ingest does: the chain states, then the alarms (:mod:`server.ingest.rows`)."""
    now = database_now(session)
    cutoff = now - gap_wait - lag
    device_ids = list(session.scalars(_DUE, {"cutoff": cutoff, "now": now}))
    if not device_ids:
        return []
    chain = ChainBook(session)
    chain.load(set(device_ids))  # locked: a batch filling the gap meanwhile is waited for, and seen
    book = AlarmBook(session, fold_window=timedelta(0), device_ids=device_ids, on_open=notifying(session))
    book.lock()
    cases = {row.device_id: row.case_no for row in session.execute(_CASES, {"device_ids": device_ids})}
    raised = raise_due_holds(session, book, chain, cases, now=now)
    for device_id in device_ids:
        change = chain.announce(device_id, cutoff)
        if change is not None:
            on_chain_change(book, change, case_no=cases.get(device_id), at=at, due=True)
            if cases.get(device_id) is not None and device_id not in raised:
                raised.append(device_id)
    chain.write()
    return raised


def gap_round(session_factory: SessionFactory, *, gap_wait: timedelta, forget_s: float = MARK_FORGET_S) -> list[str]:
    """One round of :func:`raise_due_gaps` in a transaction of its own, logged: what an ingest worker runs every
    ``gap_wait`` or so, so that a gap of a seal that then falls silent is raised where no ``seal-server run`` (whose
    liveness round does the same) is running. A database that fails is logged and tried at the next round."""
    try:
        with session_factory() as session:
            raised = raise_due_gaps(
                session, gap_wait=gap_wait, lag=caught_up_lag(session, forget_s=forget_s), at=utc_now()
            )
            session.commit()
    except SQLAlchemyError as exc:
        logger.warning("the round of due gaps failed (%s): tried again at the next", exc)
        return []
    for device_id in raised:
        logger.warning(
            "seal %s: events missing for over %.1f s: missing_events alarm", device_id, gap_wait.total_seconds()
        )
    return raised
