"""The API's documentation pages, served from the package so that they work on a court intranet without internet:
Swagger UI at ``/docs``, ReDoc at ``/redoc``, their JavaScript and CSS under ``/docs/static`` (vendored from npm,
versions and licences in ``static/README.md``).

This is FastAPI's "self-hosting JavaScript and CSS for docs" recipe: the app is made with ``docs_url=None,
redoc_url=None`` and :func:`add_docs` adds the pages. They refer to no other host (ReDoc without Google fonts,
Swagger UI without its online validator), and a Content-Security-Policy keeps the browser from fetching anything the
bundles would load from elsewhere on their own (ReDoc's "API docs by Redocly" logo comes from cdn.redoc.ly).

The pages are public, like the ``/openapi.json`` they describe: they hold no data, and a call made from them is
authorised like any other. No OAuth2 flow is offered, so there is no ``/docs/oauth2-redirect``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).with_name("static")
STATIC_PATH = "/docs/static"
DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"
#: The vendored files change only with a release of the server; a day in the browser's cache is safe.
STATIC_CACHE_CONTROL = "public, max-age=86400"

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


class CachedStaticFiles(StaticFiles):
    """:class:`StaticFiles` whose answers (200 and 304) carry ``Cache-Control``."""

    def __init__(self, *, directory: Path, cache_control: str) -> None:
        super().__init__(directory=directory)
        self.cache_control = cache_control

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code < 400:
            response.headers["Cache-Control"] = self.cache_control
        return response


def content_security_policy(html: str) -> str:
    """Everything from this origin only; the page's own inline scripts by their hash. Styles may be inline (ReDoc
    writes its own), images may be ``data:`` URLs (Swagger UI's CSS icons), ReDoc's search runs in a ``blob:``
    worker."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
        for body in _INLINE_SCRIPT.findall(html)
    )
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' {hashes}".rstrip(),
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )


def _with_policy(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = content_security_policy(bytes(page.body).decode())
    return page


def add_docs(app: FastAPI) -> None:
    """Add ``/docs``, ``/redoc`` and their static files to ``app`` (made with ``docs_url=None, redoc_url=None``)."""
    openapi_url = app.openapi_url
    assert openapi_url is not None, "the docs pages need the OpenAPI document"

    def prefix(request: Request) -> str:
        root_path: str = request.scope.get("root_path", "")
        return root_path.rstrip("/")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = prefix(request)
        return _with_policy(
            get_swagger_ui_html(
                openapi_url=root + openapi_url,
                title=f"{app.title} - Swagger UI",
                swagger_js_url=f"{root}{STATIC_PATH}/swagger-ui/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{STATIC_PATH}/swagger-ui/swagger-ui.css",
                swagger_favicon_url=f"{root}{STATIC_PATH}/swagger-ui/favicon-32x32.png",
                oauth2_redirect_url=None,
                swagger_ui_parameters={"validatorUrl": None},
            )
        )

    async def redoc(request: Request) -> HTMLResponse:
        root = prefix(request)
        return _with_policy(
            get_redoc_html(
                openapi_url=root + openapi_url,
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{root}{STATIC_PATH}/redoc/redoc.standalone.js",
                redoc_favicon_url=f"{root}{STATIC_PATH}/swagger-ui/favicon-32x32.png",
                with_google_fonts=False,
            )
        )

    app.add_route(DOCS_PATH, swagger_ui, include_in_schema=False)
    app.add_route(REDOC_PATH, redoc, include_in_schema=False)
    app.mount(
        STATIC_PATH,
        CachedStaticFiles(directory=STATIC_DIR, cache_control=STATIC_CACHE_CONTROL),
        name="docs-static",
    )
