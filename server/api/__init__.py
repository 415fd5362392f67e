"""The REST API: one router per resource, all under ``/api`` except ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter

from server.api import cases, health, metrics, seals

#: Authentication will be a dependency of this router (``APIRouter(dependencies=[...])``).
api_router = APIRouter(prefix="/api")
api_router.include_router(health.router)
api_router.include_router(cases.router)
api_router.include_router(seals.router)

metrics_router = metrics.router

__all__ = ["api_router", "metrics_router"]
