"""The pages' route class answers a 400 as a page in the error's own words; a body that cannot be parsed as its form
keeps the page's words (never the parser's)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, FastAPI, Form, HTTPException
from fastapi.testclient import TestClient

from server.web.i18n import LANG_COOKIE
from server.web.routing import PageRoute

REASON = "导出范围的起点晚于终点 / the range starts after it ends"
BROKEN_FORM = b'--B\r\nContent-Disposition: form-data; name="' + b"c" * 5000 + b'"\r\n\r\nx\r\n--B--\r\n'


def pages() -> TestClient:
    """An app with two pages on the real route class: one refusing its request (400) for a reason of its own, one
    taking a form."""
    router = APIRouter(route_class=PageRoute)

    @router.get("/refused")
    def refused() -> None:
        raise HTTPException(status_code=400, detail=REASON)

    @router.post("/form")
    def form(note: Annotated[str, Form()] = "") -> str:
        return note

    app = FastAPI()
    app.include_router(router)
    return TestClient(app)


def test_a_400_is_shown_with_the_reason_of_the_error_raised() -> None:
    with pages() as client:
        page = client.get("/refused")
        assert page.status_code == 400 and page.headers["content-type"].startswith("text/html")
        assert f"请求有误：{REASON}" in page.text and "提交的表单无法读取" not in page.text
        fragment = client.get("/refused", headers={"HX-Request": "true"})
        assert fragment.status_code == 400 and "<html" not in fragment.text and f"请求有误：{REASON}" in fragment.text
        client.cookies.set(LANG_COOKIE, "en")
        assert f"Bad request: {REASON}" in client.get("/refused").text


def test_a_body_that_cannot_be_parsed_as_the_form_keeps_the_page_s_words() -> None:
    with pages() as client:
        page = client.post("/form", content=BROKEN_FORM, headers={"Content-Type": "multipart/form-data; boundary=B"})
        assert page.status_code == 400 and page.headers["content-type"].startswith("text/html")
        assert "提交的表单无法读取" in page.text and "请求有误" not in page.text and "multipart" not in page.text
