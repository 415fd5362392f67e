"""The court's pages, in the browser: server-rendered (Jinja2), htmx 2 with its SSE extension (vendored), live over
one Server-Sent Events stream per tab. Mounted by :func:`server.app.create_app` beside the API.

Pages use the same services and the same access checks as the API (:mod:`server.auth.access`): a page never shows
what the API would refuse. Page modules never import the API's route modules; shared logic lives in the areas'
service modules (docs/dashboard.md). A page module:
- ``router = APIRouter(route_class=PageRoute, include_in_schema=False)``, included below;
- a route takes ``page: SignedInPage`` (303 to ``/login`` without a session; a POST passes the CSRF check) or
  ``AnonymousPage``, and answers ``page.render("<template>", **values)``;
- a live page passes ``live_url=page.live_url("<view>")`` and registers ``@live_view("<view>")``; a page of one
  case or seal registers it ``whole=True`` and takes its digest first (``take_digest``, :mod:`server.web.live`).
"""

from __future__ import annotations

from fastapi import APIRouter

from server.web import (
    admin_cases,
    admin_users,
    audit_page,
    auth_pages,
    case_actions,
    case_page,
    creditor,
    inbox,
    live,
    overview,
    portal,
    portal_signin,
    seal_page,
    static,
)

web_router = APIRouter()
web_router.include_router(static.router)
web_router.include_router(auth_pages.router)
web_router.include_router(live.router)
web_router.include_router(portal_signin.router)
web_router.include_router(portal.router)
web_router.include_router(creditor.router)
web_router.include_router(inbox.router)
web_router.include_router(overview.router)
web_router.include_router(case_page.router)
web_router.include_router(case_actions.router)
web_router.include_router(seal_page.router)
web_router.include_router(audit_page.router)
web_router.include_router(admin_users.router)
web_router.include_router(admin_cases.router)

__all__ = ["web_router"]
