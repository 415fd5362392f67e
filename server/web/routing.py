"""The route class of every page router: errors become pages, not JSON.

No session → ``303`` to ``/login?next=<path>``; a hidden or unknown object → a 404 page (the same words as for
one that does not exist); a role that may not → 403; a state that does not allow it → 409, as is a row another
request wrote meanwhile (a unique index's refusal: :mod:`server.core.unique`); invalid input → 422; a
body that cannot be read as its form → 400 (in the page's words, never the parser's), any other 400 with the error's
own words. An htmx request (``HX-Request``) gets the same status with a short
fragment instead of a whole page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.api.invalid_input import LOCATIONS, form_not_parsed
from server.auth.errors import Forbidden, NotAuthenticated
from server.core.unique import TAKEN_MEANWHILE, unique_violation
from server.errors import Conflict, Invalid, NotFound
from server.web.deps import CsrfRefused, SignInRequired, page_language
from server.web.templating import html_response, render_text

logger = logging.getLogger(__name__)


def sign_in_redirect(next_path: str) -> RedirectResponse:
    target = "/login" if next_path in ("", "/", "/login") else f"/login?next={quote(next_path, safe='/')}"
    return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER, headers={"Cache-Control": "no-store"})


def error_page(request: Request, status_code: int, message_key: str, **values: Any) -> Response:
    t = page_language(request)
    fragment = request.headers.get("HX-Request") == "true"
    context = {"t": t, "lang": t.language, "message": t(message_key, **values), "status_code": status_code}
    name = "_error_fragment.html" if fragment else "error.html"
    return html_response(render_text(name, context), status_code)


#: Paths whose unknown URLs keep FastAPI's JSON 404: the API and the machine-read documents.
NOT_PAGES = ("/api/", "/docs", "/redoc", "/openapi.json", "/metrics", "/static/", "/live")


async def page_not_found(request: Request, exc: Exception) -> Response:
    """An unknown URL a browser asked for gets the 404 page; the API's keep their JSON answer."""
    assert isinstance(exc, StarletteHTTPException)
    wants_page = "text/html" in request.headers.get("accept", "") and not request.url.path.startswith(NOT_PAGES)
    if exc.status_code == status.HTTP_404_NOT_FOUND and wants_page:
        return error_page(request, status.HTTP_404_NOT_FOUND, "error.not_found")
    return await http_exception_handler(request, exc)


class PageRoute(APIRoute):
    """An :class:`APIRoute` whose failures are answered as pages (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            try:
                return await handle(request)
            except (SignInRequired, NotAuthenticated):
                return sign_in_redirect(request.url.path)
            except NotFound:
                return error_page(request, status.HTTP_404_NOT_FOUND, "error.not_found")
            except CsrfRefused:
                return error_page(request, status.HTTP_403_FORBIDDEN, "error.csrf")
            except Forbidden:
                return error_page(request, status.HTTP_403_FORBIDDEN, "error.forbidden")
            except Conflict as exc:
                detail = _clean(page_language(request).refusal(exc))
                return error_page(request, status.HTTP_409_CONFLICT, "error.conflict", detail=detail)
            except (RequestValidationError, Invalid) as exc:
                detail = _validation_detail(request, exc)
                return error_page(request, status.HTTP_422_UNPROCESSABLE_CONTENT, "error.invalid", detail=detail)
            except StarletteHTTPException as exc:
                if exc.status_code != status.HTTP_400_BAD_REQUEST:
                    raise
                return _bad_request(request, exc)
            except IntegrityError as exc:
                if not unique_violation(exc):
                    raise
                logger.warning(
                    "%s %s: written meanwhile by another, nothing kept: %s", request.method, request.url.path, exc.orig
                )
                return error_page(request, status.HTTP_409_CONFLICT, "error.conflict", detail=_clean(TAKEN_MEANWHILE))

        return route_handler


def _bad_request(request: Request, exc: StarletteHTTPException) -> Response:
    """A 400 as a page, not FastAPI's JSON: a body that cannot be parsed as the form (a part's header too long, too
    many parts, a broken multipart body) in the page's words — the parser's would mean nothing to the reader —, any
    other with the error's own words."""
    detail = _clean(str(exc.detail))
    logger.info("refused %s %s (400): %s", request.method, request.url.path, detail)
    if form_not_parsed(exc):
        return error_page(request, status.HTTP_400_BAD_REQUEST, "error.bad_form")
    return error_page(request, status.HTTP_400_BAD_REQUEST, "error.bad_request", detail=detail)


def _validation_detail(request: Request, exc: RequestValidationError | Invalid) -> str:
    """What was wrong, short (:func:`_clean`): for input the route's parameters refuse, which field, in the page's
    words (the validator's own, English and about its types, go to the log, not to the reader)."""
    t = page_language(request)
    if not isinstance(exc, RequestValidationError):
        return _clean(t.refusal(exc))
    logger.info("refused %s %s (422): %s", request.method, request.url.path, _raw_errors(exc))
    said = []
    for error in exc.errors():
        names = [part for part in error.get("loc", ()) if isinstance(part, str) and part not in LOCATIONS]
        field = names[-1] if names else "?"
        said.append(t("error.field_missing" if error.get("type") == "missing" else "error.field_invalid", field=field))
    return _clean(("；" if t.language == "zh-CN" else "; ").join(dict.fromkeys(said)))


def _raw_errors(exc: RequestValidationError) -> str:
    """The validator's errors without the input refused (a form's part may be a file)."""
    return "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in exc.errors())[:500]


def _clean(text: str) -> str:
    """``text`` short, and encodable whatever the input held (a lone surrogate is written as its escape)."""
    return text[:300].encode("utf-8", "backslashreplace").decode("utf-8")
