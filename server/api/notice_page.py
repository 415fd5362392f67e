"""``GET /notice/{token}``: the public page a notice's QR code opens (no login), outside ``/api``.

Any string after ``/notice/`` gets a page — an invalid token is "not an authentic notice", never an error — and the
page loads nothing from elsewhere. The token is in the address, so the page tells the browser to send no Referer.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, status
from fastapi.responses import HTMLResponse

from server.api.deps import ContextDep, Responses, SessionDep
from server.api.routing import ValidatedRoute
from server.core.base import utc_now
from server.notices.errors import NoticesUnavailable
from server.notices.page import render_notice_page
from server.notices.service import check_notice
from server.removal.grounds import GROUND_LABELS

logger = logging.getLogger(__name__)

router = APIRouter(tags=["notices"], route_class=ValidatedRoute)

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
#: The grounds the debtor's portal takes, as the notice's page lists them: (Chinese, English, article).
GROUNDS = tuple((label.zh, label.en, label.article) for label in GROUND_LABELS.values())
PAGE: Responses = {
    200: {"content": {"text/html": {}}},
    503: {"content": {"text/html": {}}, "description": "Notices unavailable"},
}


@router.get("/notice/{token:path}", response_class=HTMLResponse, responses=PAGE)
def notice_page(token: str, session: SessionDep, context: ContextDep) -> HTMLResponse:
    """The public page of a notice's QR code: whether it is authentic, what it printed, the seal's state now."""
    try:
        keys = context.notice_key.verify_keys
    except NoticesUnavailable as exc:
        logger.error("a notice's page was asked for, but notices cannot be checked: %s", exc)
        return HTMLResponse(render_notice_page(None), status.HTTP_503_SERVICE_UNAVAILABLE, headers=HEADERS)
    check = check_notice(session, token=token, keys=keys, now=utc_now())
    return HTMLResponse(render_notice_page(check, GROUNDS), headers=HEADERS)
