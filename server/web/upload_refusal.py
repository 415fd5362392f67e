"""The body cap's refusals (:class:`~server.api.body_limit.BodyLimit`: too large, too slow, the server busy) as the
pages show their other refusals, for a browser's form post: the error page, or its fragment for an htmx request, in
the page's language — not the API's JSON, which a browser would show raw, the form lost."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from server.web.routing import error_page

#: Paths whose refusals stay JSON whatever the client accepts.
NOT_PAGES = ("/api/",)


def wants_page(scope: Scope) -> bool:
    """Whether the request is a page's (a browser's form post or an htmx request), not the API's."""
    if scope.get("path", "").startswith(NOT_PAGES):
        return False
    headers = {name.lower(): value for name, value in scope.get("headers") or []}
    return b"text/html" in headers.get(b"accept", b"") or headers.get(b"hx-request") == b"true"


def upload_refusal_page(scope: Scope, status_code: int, key: str, values: dict[str, object]) -> Response | None:
    """The page saying the refusal ``error.<key>``, or ``None`` if the request is not a page's."""
    if not wants_page(scope):
        return None
    return error_page(Request(scope), status_code, f"error.{key}", **values)
