"""Health of the server: database, broker connection, whether the ingest makes progress, and the live feed.

The live feed (:mod:`server.core.live_feed`) configured but not subscribed makes the status "degraded", not "error"
(the answer stays 200): the pages still answer and are right when they are loaded, and their streams show what this
process commits, but not what the court's other processes do — an intrusion stored by an ingest worker would not
appear on an open overview until it is reloaded. That is a court that does not work as it should, which an operator
must hear of; it is no reason for a load balancer to take the process out.
"""

from __future__ import annotations

import logging
from typing import Literal

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from server.api.deps import ContextDep, SessionDep
from server.api.routing import ValidatedRoute
from server.context import ServerContext
from server.core.base import utc_now
from server.core.db import READ_ONLY
from server.core.receiving import Receiving
from server.evidence.signed_record import record_of
from server.marks.marks import BEHIND_AFTER_S, judging_moment, read_marks

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"], route_class=ValidatedRoute)


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded", "error"] = Field(
        description="ok: database, broker, ingest and live feed fine; degraded: no broker connection, the ingest is "
        "retrying or stalled or has not caught up with the broker, it cannot sign receipts, the live feed is not "
        "subscribed, or the log's key refused to sign a checkpoint; error: no database."
    )
    broker: Literal["connected", "disconnected"]
    db: Literal["ok", "error"]
    ingest: Literal["ok", "retrying", "stalled", "off"] = Field(
        description="retrying: storing fails because the database does not answer or its storage fails (a full "
        "disk, an I/O error, read-only); stalled: a received message "
        "has waited longer than 30 s to be stored; off: this process runs no ingest."
    )
    receipts: Literal["on", "off"] = Field(
        description="off: the ingest has no court command key to sign receipts with, so seals keep every event and "
        "send it again ([commands] signing_key_file; `seal-server court-key`)."
    )
    ingest_unstored: int = Field(description="Messages received from the broker and not yet stored.")
    ingest_oldest_unstored_s: float = Field(description="Age of the oldest of them, in seconds (0: none).")
    ingest_caught_up_lag_s: float | None = Field(
        description="How far the ingest's caught-up mark (the oldest of its live workers': up to when everything the "
        "broker held for the court is stored) lags the clock, in seconds; null: no worker has marked yet. Past 15 s "
        "the liveness check and the commands' expiry wait for it (degraded, in a process that runs them)."
    )
    feed: Literal["subscribed", "unsubscribed", "off"] = Field(
        description="The court's live feed, which shows the court's other processes' changes on this one's pages: "
        "unsubscribed: connecting, or the broker refused it (the pages miss those changes until it is back, then "
        "reload); off: [live] feed = false, or this process runs no feed (no ingest, and not asked to serve the pages "
        "live)."
    )
    log: Literal["ok", "refused", "off"] = Field(
        description="refused: this process's last try to sign a checkpoint of the Merkle log was refused, since the "
        "database's tree contradicts a checkpoint the log's key signed before (the database lost commits: "
        "docs/evidence.md, 'When the log has lost checkpoints it signed'); off: no [evidence] log_key_file."
    )
    feed_gaps: int = Field(
        description="How many times the live feed told this process's open pages to reload since it started (the "
        "first subscription included): a dropped connection, a missed message."
    )


@router.get("/health")
def health(session: SessionDep, context: ContextDep, response: Response) -> HealthPublic:
    """Database answering, ingest connected and keeping up, live feed subscribed? 503 without a database."""
    lag: float | None = None
    try:
        session.execute(text("SELECT 1"))
        db_ok = True
    except SQLAlchemyError as exc:
        logger.warning("health check: database error: %s", exc)
        db_ok = False
    if db_ok:
        lag = _caught_up_lag(session, context.settings.liveness.mark_forget_s)
    broker: Literal["connected", "disconnected"] = "connected" if context.broker_connected else "disconnected"
    progress = context.ingest.progress() if context.ingest is not None else None
    ingest = "off" if progress is None else progress.state
    receipts: Literal["on", "off"] = "on" if context.ingest is not None and context.ingest.receipts_enabled else "off"
    feed: Literal["subscribed", "unsubscribed", "off"] = "off"
    if context.feed is not None:
        feed = "subscribed" if context.feed.subscribed else "unsubscribed"
    log_key_file = context.log_key.path
    log: Literal["ok", "refused", "off"] = "off"
    if log_key_file is not None:
        log = "refused" if record_of(log_key_file).refused is not None else "ok"
    behind = context.ingest is not None and lag is not None and lag > BEHIND_AFTER_S  # its judging waits
    healthy = (
        broker == "connected"
        and ingest == "ok"
        and receipts == "on"
        and feed != "unsubscribed"
        and not behind
        and log != "refused"
    )
    health = HealthPublic(
        status="ok" if healthy else "degraded",
        broker=broker,
        db="ok" if db_ok else "error",
        ingest=ingest,
        receipts=receipts,
        ingest_unstored=progress.unstored if progress else 0,
        ingest_oldest_unstored_s=round(progress.oldest_unstored_s, 3) if progress else 0.0,
        ingest_caught_up_lag_s=lag,
        feed=feed,
        log=log,
        feed_gaps=context.feed.gaps if context.feed is not None else 0,
    )
    if not db_ok:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return health.model_copy(update={"status": "error"})
    return health


def receiving(context: ServerContext) -> Receiving:
    """What the live pages say of the court's receiving (:mod:`server.core.receiving`): the parts of this check that
    say whether what the seals send reaches the database now — this process's ingest connected and storing, and the
    caught-up mark of every ingest worker (in any process: it is read from the database) within
    :data:`BEHIND_AFTER_S` of the clock, and the database answering."""
    ingest = context.ingest
    if ingest is not None:
        if not ingest.connected:
            return "disconnected"
        if (state := ingest.progress().state) != "ok":
            return state
    try:
        with context.session_factory(bind=context.engine.execution_options(**READ_ONLY)) as session:
            marks = read_marks(session)
    except SQLAlchemyError:  # nothing a seal sends can be stored: not receiving (said once, at the change)
        return "database"
    if not marks:
        return "ok"
    now = utc_now()
    lag = (now - judging_moment(now, marks, forget_s=context.settings.liveness.mark_forget_s)).total_seconds()
    return "behind" if lag > BEHIND_AFTER_S else "ok"


def _caught_up_lag(session: Session, forget_s: float) -> float | None:
    """How far the ingest's caught-up mark lags the clock (:mod:`server.marks.marks`); None: no mark (or none
    readable: a database without the table yet)."""
    try:
        marks = read_marks(session)
    except SQLAlchemyError as exc:
        logger.warning("health check: the ingest's marks are not readable: %s", exc)
        session.rollback()
        return None
    if not marks:
        return None
    now = utc_now()
    return round((now - judging_moment(now, marks, forget_s=forget_s)).total_seconds(), 3)
