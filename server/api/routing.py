"""The route class of every API router: FastAPI's, except that a 422 can always be sent.

FastAPI answers invalid input with a 422 that echoes the offending input; JSON text may carry a lone surrogate
(``"\\ud800"``), which Python's JSON parser accepts and which no UTF-8 response can hold, so the default answer
fails to encode and the client gets a 500 instead. Here the 422 is rendered ASCII-only (the surrogate as its JSON
escape), so it reaches the client as the 422 it is. The 422 of a form (proof files) says what is wrong with each part
without echoing the part: a file's content is never sent back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import JSONResponse

#: Bodies whose 422 does not echo the input: a form's parts may be files (proofs), not to be sent back.
FORMS = ("multipart/", "application/x-www-form-urlencoded")


class AsciiJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


class ValidatedRoute(APIRoute):
    """An :class:`APIRoute` whose invalid input is always answered with a 422."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError as exc:
                errors = exc.errors()
                if request.headers.get("content-type", "").lower().startswith(FORMS):
                    errors = [_without_input(error) for error in errors]
                content = {"detail": jsonable_encoder(errors)}
                return AsciiJSONResponse(content, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

        return route_handler


def _without_input(error: Any) -> Any:
    """An error of a multipart form without the input it refused: a file part's content is not sent back."""
    return {key: value for key, value in error.items() if key != "input"} if isinstance(error, dict) else error
