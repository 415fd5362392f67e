"""Prometheus metrics of the ingest, for the clients of ``[http] metrics_from`` (this machine by default)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy import func, select

from server.api.deps import ContextDep, SessionDep, request_client
from server.api.routing import ValidatedRoute
from server.auth.client_address import is_trusted, parse_address
from server.ingest.results import Reason
from server.seals.models import Seal
from server.seals.registry import count_online

router = APIRouter(tags=["metrics"], route_class=ValidatedRoute)

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request, session: SessionDep, context: ContextDep) -> PlainTextResponse:
    """Events ingested, messages rejected by reason, seals online (Prometheus text format); 404 for a client outside
    ``[http] metrics_from``, whose address is unknown, or who came through a proxy not listed in
    ``trusted_proxies`` (:mod:`server.auth.client_address`): nobody's to serve."""
    client = request_client(request, context)
    if not client.direct or not is_trusted(parse_address(client.address or ""), context.settings.http.metrics_from):
        raise HTTPException(status_code=404, detail="Not Found")
    online = count_online(session, now=datetime.now(UTC), offline_after_s=context.settings.offline_after_s)
    total = int(session.scalar(select(func.count(Seal.id))) or 0)
    body = context.metrics.exposition(
        seals_online=online,
        seals_total=total,
        broker_connected=context.broker_connected,
        reasons=[reason.value for reason in Reason],
        progress=context.ingest.progress() if context.ingest is not None else None,
    )
    return PlainTextResponse(body, media_type=PROMETHEUS_CONTENT_TYPE)
