"""A portal form post the body cap refuses (too large 413, the server busy 503, too slow 408) is answered with the
pages' error page saying so (Chinese first, then English), as the portal's other refusals are — not the API's raw
JSON, which the browser would show instead of a page; the API's refusals stay JSON."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.api.body_limit import BodyLimit, UploadPace, UploadRoute
from server.app import create_app
from server.auth.sessions import issue_session
from server.auth.users import get_user
from server.config import RemovalSettings
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.web.portal import PORTAL_UPLOAD_PATH
from server.web.security import csrf_token_for
from server.web.upload_refusal import upload_refusal_page
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A
from tests.server.removal_world import RemovalWorld, c, make_world
from tests.server.streamed_post import big_pdf, form_body, post_streamed
from tests.server.test_body_limit_uploads import _held_app, _may_upload


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    settings = make_settings(database_url, tmp_path).model_copy(
        update={"removal": RemovalSettings(proof_max_bytes=64 * 1024, proof_max_files=2)}
    )
    with TestClient(create_app(settings, with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def test_a_portal_filing_over_the_cap_gets_the_page_saying_so(world: RemovalWorld) -> None:
    """Old code: 413 application/json."""
    with session_scope(world.session_factory) as session:
        cookie = issue_session(session, user=get_user(session, username="debtor"), now=utc_now(), ttl_s=3600).cookie
    fields = {"ground": "paid_in_full", "statement": "已清偿", "csrf_token": csrf_token_for(cookie)}
    files = [("files", (f"r{i}.pdf", big_pdf(200 * 1024), "application/pdf")) for i in range(2)]
    body, ctype = form_body(fields, files)
    headers = {"Cookie": f"seal_session={cookie}", "Content-Type": ctype, "Accept": "text/html"}
    answer = post_streamed(world.client, f"/portal/cases/{c(CASE_A)}/requests", body, headers, declare_length=True)
    assert answer.status == 413
    assert answer.headers["content-type"].startswith("text/html")
    page = answer.body.decode()
    assert "<html" in page and "未被接收" in page, page
    api = post_streamed(
        world.client,
        f"/api/cases/{c(CASE_A)}/removal-requests",
        body,
        {**world.as_("debtor"), "Content-Type": ctype, "Accept": "text/html"},
        declare_length=True,
    )
    assert api.status == 413 and api.headers["content-type"] == "application/json"


def test_a_portal_filing_while_the_server_is_busy_gets_the_page_with_retry_after() -> None:
    release, entered, app = _held_app()
    limit = BodyLimit(
        app,
        uploads=[UploadRoute(PORTAL_UPLOAD_PATH, 1 << 20, _may_upload)],
        max_uploads=1,
        refusal_page=upload_refusal_page,
    )

    async def post(answers: list[dict[str, Any]], accept: bytes) -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"x", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            answers.append(message)

        path = f"/portal/cases/{CASE_A}/requests"
        scope = {"type": "http", "method": "POST", "path": path, "headers": [(b"accept", accept)], "query_string": b""}
        await limit(scope, receive, send)

    async def run() -> list[dict[str, Any]]:
        held: list[dict[str, Any]] = []
        task = asyncio.create_task(post(held, b"text/html"))
        while not entered:
            await asyncio.sleep(0.01)
        busy: list[dict[str, Any]] = []
        await post(busy, b"text/html,application/xhtml+xml")
        release.set()
        await task
        return busy

    busy = asyncio.run(run())
    start = busy[0]
    headers = dict(start["headers"])
    assert start["status"] == 503 and headers[b"retry-after"] == b"10"
    assert headers[b"content-type"].startswith(b"text/html")
    page = b"".join(m.get("body", b"") for m in busy[1:]).decode()
    assert "服务器正在接收其他上传" in page or "receiving other uploads" in page, page


def test_a_portal_filing_trickling_in_gets_the_page_saying_it_was_too_slow() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass

    pace = UploadPace(deadline_s=30, progress_bytes=1024, progress_window_s=0.2)
    limit = BodyLimit(
        app,
        uploads=[UploadRoute(PORTAL_UPLOAD_PATH, 1 << 20, _may_upload)],
        pace=pace,
        refusal_page=upload_refusal_page,
    )

    async def run() -> list[dict[str, Any]]:
        answers: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            await asyncio.sleep(0.05)
            return {"type": "http.request", "body": b"x", "more_body": True}

        async def send(message: dict[str, Any]) -> None:
            answers.append(message)

        path = f"/portal/cases/{CASE_A}/requests"
        scope = {
            "type": "http",
            "method": "POST",
            "path": path,
            "headers": [(b"accept", b"text/html")],
            "query_string": b"",
        }
        await asyncio.wait_for(limit(scope, receive, send), 10)
        return answers

    answers = asyncio.run(run())
    assert answers[0]["status"] == 408
    assert dict(answers[0]["headers"])[b"content-type"].startswith(b"text/html")
    page = b"".join(m.get("body", b"") for m in answers[1:]).decode()
    assert "上传过慢（0.2 秒内不足 1024 字节）" in page or "less than 1024 bytes in 0.2 s" in page, page
