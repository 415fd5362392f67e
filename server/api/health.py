"""Health of the server: database and broker connection."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response, status
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from server.api.deps import ContextDep, SessionDep
from server.schemas import HealthPublic

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/health")
def health(session: SessionDep, context: ContextDep, response: Response) -> HealthPublic:
    """Is the database answering and the ingest connected to the broker? 503 without a database."""
    try:
        session.execute(text("SELECT 1"))
        db_ok = True
    except SQLAlchemyError as exc:
        logger.warning("health check: database error: %s", exc)
        db_ok = False
    broker = "connected" if context.broker_connected else "disconnected"
    if not db_ok:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return HealthPublic(status="error", broker=broker, db="error")
    return HealthPublic(status="ok" if broker == "connected" else "degraded", broker=broker, db="ok")
