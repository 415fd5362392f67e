"""The REST API: one router per resource, all under ``/api`` except ``/metrics`` and the public notice page.

Every route but ``/api/health``, ``/api/auth/login``, ``/api/auth/access-code`` (the debtor's sign-in with a
case's access code), ``/api/removal-grounds``, the log's ``/api/log/checkpoint`` (and its time stamp),
``/api/log/key`` and ``/api/log/consistency`` and the notices' ``/api/notices/verify`` and ``/api/notices/key`` needs
a logged-in user; what the user may see and do is decided by :mod:`server.auth.access`. ``/metrics`` needs no login
but answers only the clients of ``[http] metrics_from`` (this machine by default; :mod:`server.api.metrics`). The
OpenAPI document and its pages, ``/docs`` and ``/redoc`` (:mod:`server.api.docs`, added by the app), are public, and
so is ``/notice/{token}``, the page a notice's QR code opens (:mod:`server.api.notice_page`).
"""

from __future__ import annotations

from fastapi import APIRouter

from server.api import (
    access_codes,
    alarms,
    audit,
    auth,
    cases,
    commands,
    courts,
    events,
    export,
    health,
    inbox,
    log,
    metrics,
    notice_page,
    notices,
    notification_targets,
    quarantine,
    removal_decisions,
    removal_requests,
    seals,
    snapshots,
    users,
)

api_router = APIRouter(prefix="/api")
api_router.include_router(health.router)
api_router.include_router(auth.router)
api_router.include_router(users.router)
# Routes ending in /cases/{case_no}/<something> before the cases router's /cases/{case_no}, which would take them.
api_router.include_router(events.router)
api_router.include_router(snapshots.router)
api_router.include_router(export.router)
api_router.include_router(notification_targets.router)
api_router.include_router(removal_requests.router)
api_router.include_router(access_codes.router)
api_router.include_router(cases.router)
api_router.include_router(removal_decisions.router)
api_router.include_router(inbox.router)
api_router.include_router(courts.router)
api_router.include_router(seals.router)
api_router.include_router(commands.router)
api_router.include_router(alarms.router)
api_router.include_router(audit.router)
api_router.include_router(quarantine.router)
api_router.include_router(log.router)
api_router.include_router(notices.router)

metrics_router = metrics.router
#: The pages for the public outside ``/api``: the page a notice's QR code opens.
public_router = notice_page.router

__all__ = ["api_router", "metrics_router", "public_router"]
