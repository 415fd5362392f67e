"""Health of the server: database, broker connection, and whether the ingest makes progress."""

from __future__ import annotations

import logging
from typing import Literal

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from server.api.deps import ContextDep, SessionDep

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded", "error"] = Field(
        description="ok: database, broker and ingest fine; degraded: no broker connection, the ingest is "
        "retrying or stalled, or it cannot sign receipts; error: no database."
    )
    broker: Literal["connected", "disconnected"]
    db: Literal["ok", "error"]
    ingest: Literal["ok", "retrying", "stalled", "off"] = Field(
        description="retrying: storing fails because the database does not answer; stalled: a received message "
        "has waited longer than 30 s to be stored; off: this process runs no ingest."
    )
    receipts: Literal["on", "off"] = Field(
        description="off: the ingest has no court command key to sign receipts with, so seals keep every event and "
        "send it again ([commands] signing_key_file; `seal-server court-key`)."
    )
    ingest_unstored: int = Field(description="Messages received from the broker and not yet stored.")
    ingest_oldest_unstored_s: float = Field(description="Age of the oldest of them, in seconds (0: none).")


@router.get("/health")
def health(session: SessionDep, context: ContextDep, response: Response) -> HealthPublic:
    """Is the database answering, the ingest connected to the broker and keeping up? 503 without a database."""
    try:
        session.execute(text("SELECT 1"))
        db_ok = True
    except SQLAlchemyError as exc:
        logger.warning("health check: database error: %s", exc)
        db_ok = False
    broker: Literal["connected", "disconnected"] = "connected" if context.broker_connected else "disconnected"
    progress = context.ingest.progress() if context.ingest is not None else None
    ingest = "off" if progress is None else progress.state
    receipts: Literal["on", "off"] = "on" if context.ingest is not None and context.ingest.receipts_enabled else "off"
    healthy = broker == "connected" and ingest == "ok" and receipts == "on"
    health = HealthPublic(
        status="ok" if healthy else "degraded",
        broker=broker,
        db="ok" if db_ok else "error",
        ingest=ingest,
        receipts=receipts,
        ingest_unstored=progress.unstored if progress else 0,
        ingest_oldest_unstored_s=round(progress.oldest_unstored_s, 3) if progress else 0.0,
    )
    if not db_ok:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return health.model_copy(update={"status": "error"})
    return health
