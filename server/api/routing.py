"""The route class of every API router: FastAPI's, except that a 422 can always be sent.

FastAPI answers invalid input with a 422 that echoes the offending input; JSON text may carry a lone surrogate
(``"\\ud800"``), which Python's JSON parser accepts and which no UTF-8 response can hold, so the default answer
fails to encode and the client gets a 500 instead. Here the 422 is rendered ASCII-only (the surrogate as its JSON
escape), so it reaches the client as the 422 it is. The 422 of a form (proof files) says what is wrong with each part
without echoing the part: a file's content is never sent back. Each error's message is said in Chinese first, then in
English, its ``loc`` and ``type`` as they were (:mod:`server.api.invalid_input`); a body the form parser cannot read
(a part over its size, too many parts) is a 400 in both languages, not the parser's English.

Python's JSON parser also takes ``NaN``, ``Infinity``, ``-Infinity`` and numbers beyond the float range (``1e400``,
read as infinity), which are not JSON (RFC 8259) and which no JSON answer can hold. A JSON body holding one is refused
before the route sees it, with a 422 that names where it was (:func:`non_finite_number`); and should such a number
reach an answer all the same, it is written as a string (``"NaN"``), never as a failure of its own.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from server.api.invalid_input import form_not_parsed, form_not_read, in_both_languages

#: Bodies whose 422 does not echo the input: a form's parts may be files (proofs), not to be sent back.
FORMS = ("multipart/", "application/x-www-form-urlencoded")


class AsciiJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        try:
            return _dumps(_finite(content))
        except RecursionError:  # an error that echoes a body nested near the parser's depth: said without the echo
            return _dumps({"detail": "请求内容嵌套过深。 / the request body is nested too deeply"})


def _dumps(content: Any) -> bytes:
    return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


class NonFiniteNumber(ValueError):
    """A JSON body holds ``NaN``, ``Infinity`` or a number beyond the float range."""


def non_finite_number(body: bytes) -> str | None:
    """The first non-finite number of a JSON ``body`` as written (``NaN``, ``-Infinity``, ``1e400``), or None if it
    has none; a body that is no JSON at all is left to FastAPI's own parser (its ``json_invalid`` 422)."""
    try:
        json.loads(body, parse_constant=_refuse, parse_float=_finite_float)
    except NonFiniteNumber as exc:
        return str(exc)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past the parser's depth: FastAPI says so
        return None
    return None


def _refuse(text: str) -> Any:
    raise NonFiniteNumber(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteNumber(text)
    return value


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float written as its name (``"NaN"``, ``"Infinity"``, ``"-Infinity"``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _is_json(request: Request) -> bool:
    """Whether FastAPI reads this request's body as JSON: no content type, or ``…/json``, ``…/…+json``."""
    content_type = request.headers.get("content-type")
    if not content_type:
        return True
    subtype = content_type.partition(";")[0].strip().lower().partition("/")[2]
    return subtype == "json" or subtype.endswith("+json")


class ValidatedRoute(APIRoute):
    """An :class:`APIRoute` whose invalid input is always answered with a 422."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            if self.body_field is not None and _is_json(request):
                body = await request.body()  # kept by the request: FastAPI reads it from there
                number = non_finite_number(body) if body else None
                if number is not None:
                    return _non_finite_refused(number)
            try:
                return await handle(request)
            except RequestValidationError as exc:
                errors = [in_both_languages(error) for error in exc.errors()]
                if request.headers.get("content-type", "").lower().startswith(FORMS):
                    errors = [_without_input(error) for error in errors]
                content = {"detail": jsonable_encoder(errors)}
                return AsciiJSONResponse(content, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
            except StarletteHTTPException as exc:
                if exc.status_code != status.HTTP_400_BAD_REQUEST or not form_not_parsed(exc):
                    raise
                content = {"detail": form_not_read(str(exc.detail))}
                return AsciiJSONResponse(content, status_code=status.HTTP_400_BAD_REQUEST)

        return route_handler


def _non_finite_refused(number: str) -> Response:
    error = {
        "type": "json_invalid",
        "loc": ["body"],
        "msg": f"JSON 中的数必须是有限数，{number[:40]} 不予接受（不能是 NaN、Infinity 或超出范围的数）。 / "
        f"JSON numbers must be finite: {number[:40]} is not admitted (no NaN, Infinity or number out of range)",
        "input": number[:40],
    }
    return AsciiJSONResponse({"detail": [error]}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def _without_input(error: Any) -> Any:
    """An error of a multipart form without the input it refused: a file part's content is not sent back."""
    return {key: value for key, value in error.items() if key != "input"} if isinstance(error, dict) else error
