"""Every answer of the API is private to whom asked: ``Cache-Control: no-store`` unless the route set its own.

A browser's session cookie signs its API calls in, and a shared cache stores a response to a request with a cookie
(only ``Authorization`` keeps it from doing so): a proxy caching 200s, or a clerk's shared PC's disk cache after
sign-out, would hand one judge's case to the next user. The pages, their live streams, pictures and proofs set
``no-store`` themselves (:data:`server.web.security.PAGE_HEADERS`); this does the same for ``/api/`` (and says the
answer varies by cookie and authorization), except ``/api/health``, which names no case.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PUBLIC = frozenset({"/api/health"})


class PrivateApi:
    """ASGI middleware: ``no-store`` and ``Vary: Cookie, Authorization`` on the API's answers (see the module)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/api/") or path in PUBLIC:
            await self.app(scope, receive, send)
            return

        async def private_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
                headers.add_vary_header("Cookie")
                headers.add_vary_header("Authorization")
            await send(message)

        await self.app(scope, receive, private_send)
