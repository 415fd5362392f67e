"""The upload route's larger body cap is the debtor's, on their own case, decided before the body is read: nobody
signed in gets an answer (401) without a byte of the body read, anyone else signed in (another case's judge or
debtor, a case that does not exist) the ordinary 1 MiB cap — a larger body is refused with 413 at once, or as soon
as it passes the cap — and only the rightful debtor's 3 MiB proof is read and filed. At most a few such uploads are
received at once (503 beyond)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from server.api.body_limit import MAX_BODY_BYTES, MAX_UPLOADS_PER_CASE, BodyLimit, Uploader, UploadRoute
from server.api.removal_requests import UPLOAD_PATH
from server.app import create_app
from server.auth.sessions import issue_session
from server.auth.users import get_user
from server.config import RemovalSettings
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.removal.models import RemovalRequest
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A, CASE_B
from tests.server.removal_world import RemovalWorld, c, make_world
from tests.server.streamed_post import CHUNK, MiB, big_pdf, form_body, post_streamed

#: What a refused body may have had read: the ordinary cap and the chunk that passed it.
ORDINARY_READ = MAX_BODY_BYTES + CHUNK
FIELDS = {"ground": "paid_in_full", "statement": "已全部清偿，附银行回单。Paid in full; bank receipt attached."}


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    settings = make_settings(database_url, tmp_path).model_copy(
        update={"removal": RemovalSettings(proof_max_bytes=4 * MiB, proof_max_files=3)}  # a 12.25 MiB upload cap
    )
    with TestClient(create_app(settings, with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def upload(size: int = 3 * MiB) -> tuple[bytes, str]:
    return form_body(FIELDS, [("files", ("回单.pdf", big_pdf(size), "application/pdf"))])


def filed(world: RemovalWorld) -> int:
    with world.session_factory() as session:
        return int(session.scalar(select(func.count(RemovalRequest.id))) or 0)


def url(case_no: str) -> str:
    return f"/api/cases/{c(case_no)}/removal-requests"


@pytest.mark.parametrize("declare_length", [True, False], ids=["declared", "chunked"])
@pytest.mark.parametrize("credentials", ["none", "unknown token", "unknown cookie"])
def test_nobody_signed_in_is_answered_401_without_the_body_read(
    world: RemovalWorld, credentials: str, declare_length: bool
) -> None:
    body, content_type = upload()
    headers = {
        "none": {},
        "unknown token": {"Authorization": "Bearer not-a-session"},
        "unknown cookie": {"Cookie": "seal_session=not-a-session", "X-Requested-With": "fetch"},
    }[credentials]
    answer = post_streamed(
        world.client, url(CASE_A), body, {**headers, "Content-Type": content_type}, declare_length=declare_length
    )
    assert answer.status == 401, answer.body
    assert "登录" in answer.json()["detail"] and "log in" in answer.json()["detail"]
    assert answer.pulled == 0
    assert filed(world) == 0


@pytest.mark.parametrize("declare_length", [True, False], ids=["declared", "chunked"])
@pytest.mark.parametrize(
    ("who", "case_no"),
    [("judge-b", CASE_A), ("debtor-b", CASE_A), ("judge-b", "(2099)苏0214执1号"), ("judge", CASE_A)],
    ids=["other-judge", "other-debtor", "no-such-case", "own-judge"],
)
def test_whoever_may_not_file_there_has_the_ordinary_cap(
    world: RemovalWorld, who: str, case_no: str, declare_length: bool
) -> None:
    body, content_type = upload()
    headers = {**world.as_(who), "Content-Type": content_type}
    answer = post_streamed(world.client, url(case_no), body, headers, declare_length=declare_length)
    assert answer.status == 413, answer.body
    assert answer.json()["detail"] == (
        f"请求体超过 {MAX_BODY_BYTES} 字节。 / request body larger than {MAX_BODY_BYTES} bytes"
    )
    assert answer.pulled == (0 if declare_length else ORDINARY_READ) < answer.sent
    assert filed(world) == 0


@pytest.mark.parametrize(
    ("who", "case_no", "status"),
    [("judge-b", CASE_A, 404), ("debtor-b", CASE_A, 404), ("judge", CASE_A, 403), ("debtor", CASE_B, 404)],
)
def test_a_small_body_gets_the_route_s_own_refusal(world: RemovalWorld, who: str, case_no: str, status: int) -> None:
    assert world.file(who, case_no).status_code == status
    assert filed(world) == 0


def test_a_cookie_without_the_csrf_header_has_the_ordinary_cap(world: RemovalWorld) -> None:
    token = world.as_("debtor")["Authorization"].removeprefix("Bearer ")
    with session_scope(world.session_factory) as session:
        cookie = issue_session(session, user=get_user(session, username="debtor"), now=utc_now(), ttl_s=3600).cookie
    body, content_type = upload()
    headers = {"Cookie": f"seal_session={cookie}", "Content-Type": content_type}
    assert token  # the same debtor, by bearer, may (below)
    refused = post_streamed(world.client, url(CASE_A), body, headers, declare_length=True)
    assert (refused.status, refused.pulled) == (413, 0)
    small, small_type = upload(1000)
    forbidden = post_streamed(
        world.client, url(CASE_A), small, {**headers, "Content-Type": small_type}, declare_length=True
    )
    assert forbidden.status == 403 and "X-Requested-With" in forbidden.json()["detail"]
    with_header = {**headers, "X-Requested-With": "fetch"}
    answer = post_streamed(world.client, url(CASE_A), body, with_header, declare_length=False)
    assert answer.status == 201, answer.body
    assert answer.pulled == answer.sent


@pytest.mark.parametrize("declare_length", [True, False], ids=["declared", "chunked"])
def test_the_debtor_s_3_mib_proof_is_read_and_filed(world: RemovalWorld, declare_length: bool) -> None:
    body, content_type = upload()
    headers = {**world.as_("debtor"), "Content-Type": content_type}
    answer = post_streamed(world.client, url(CASE_A), body, headers, declare_length=declare_length)
    assert answer.status == 201, answer.body
    assert answer.pulled == answer.sent > 3 * MiB
    [shown] = answer.json()["proofs"]
    assert shown["size"] > 3 * MiB
    assert filed(world) == 1


def test_the_debtor_files_through_the_client_too(world: RemovalWorld) -> None:
    proof = ("files", ("回单.pdf", big_pdf(3 * MiB), "application/pdf"))
    response = world.file(files=[proof])
    assert response.status_code == 201, response.text


def test_only_a_few_uploads_are_received_at_once() -> None:
    """The larger cap's uploads in flight are counted; one more is answered 503 (in both languages, with
    Retry-After), without its body read; once one ends, the next is received again. (Of two slots, the second is
    the last free one: another case's.)"""
    release, entered, app = _held_app()
    limit = BodyLimit(app, uploads=[UploadRoute(UPLOAD_PATH, 10 * MiB, _may_upload)], max_uploads=2)
    post = _poster(limit)

    async def run() -> None:
        first: list[dict[str, Any]] = []
        second: list[dict[str, Any]] = []
        third: list[dict[str, Any]] = []
        held = [asyncio.create_task(post(first)), asyncio.create_task(post(second, CASE_B))]
        while len(entered) < 2:
            await asyncio.sleep(0.01)
        assert await post(third, "(2024)苏0214执9号") == 0  # (two already)
        assert third[0]["status"] == 503 and (b"retry-after", b"10") in third[0]["headers"]
        assert "请稍后重试" in third[1]["body"].decode() and "try again" in third[1]["body"].decode()
        release.set()
        await asyncio.gather(*held)
        assert first[0]["status"] == second[0]["status"] == 201
        fourth: list[dict[str, Any]] = []
        await post(fourth)
        assert fourth[0]["status"] == 201 and limit.in_flight == 0

    asyncio.run(run())


def test_one_case_cannot_take_every_upload_slot() -> None:
    """A debtor's slow uploads hold at most MAX_UPLOADS_PER_CASE of the slots: theirs is refused beyond, another
    case's debtor is still received."""
    release, entered, app = _held_app()
    limit = BodyLimit(app, uploads=[UploadRoute(UPLOAD_PATH, 10 * MiB, _may_upload)])
    post = _poster(limit)

    async def run() -> None:
        answers: list[list[dict[str, Any]]] = [[] for _ in range(4)]
        held = [asyncio.create_task(post(answers[n])) for n in range(MAX_UPLOADS_PER_CASE)]
        while len(entered) < MAX_UPLOADS_PER_CASE:
            await asyncio.sleep(0.01)
        assert await post(answers[2]) == 0 and answers[2][0]["status"] == 503
        other = asyncio.create_task(post(answers[3], CASE_B))
        while len(entered) < MAX_UPLOADS_PER_CASE + 1:
            await asyncio.sleep(0.01)
        release.set()
        await asyncio.gather(*held, other)
        assert [a[0]["status"] for a in answers] == [201] * MAX_UPLOADS_PER_CASE + [503, 201]
        assert (limit.in_flight, limit.in_flight_by_case) == (0, {})

    asyncio.run(run())


def _held_app() -> tuple[asyncio.Event, list[str], Any]:
    """An upload route that answers 201 once ``release`` is set; ``entered`` lists the paths it took in."""
    release = asyncio.Event()
    entered: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        entered.append(scope["path"])
        await release.wait()
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return release, entered, app


async def _may_upload(scope: Any, case_no: str) -> Uploader:
    return Uploader.MAY_UPLOAD


def _poster(limit: BodyLimit) -> Any:
    async def post(answers: list[dict[str, Any]], case_no: str = CASE_A) -> int:
        pulled = 0

        async def receive() -> dict[str, Any]:
            nonlocal pulled
            pulled += 1
            return {"type": "http.request", "body": b"x", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            answers.append(message)

        scope = {"type": "http", "method": "POST", "path": f"/api/cases/{case_no}/removal-requests", "headers": []}
        await limit(scope, receive, send)
        return pulled

    return post
