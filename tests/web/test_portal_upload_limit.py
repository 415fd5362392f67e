"""The portal's filing form has the larger body cap only for the debtor of its case (by the access code or by an
account), decided before the body is read: nobody signed in is sent to the portal's sign-in without a byte of the
body read; another case's debtor or judge has the ordinary 1 MiB cap (413 at once, or as soon as a body streamed
without a length passes it); the debtor's 3 MiB proof is filed."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from server.api.body_limit import MAX_BODY_BYTES
from server.removal.models import RemovalRequest
from tests.server.streamed_post import CHUNK, MiB, big_pdf, form_body, post_streamed
from tests.web.conftest import CASE, PagesWorld, csrf_of
from tests.web.portal_world import Portal, make_portal, q

URL = f"/portal/cases/{q(CASE)}/requests"
#: What a refused body may have had read: the ordinary cap and the chunk that passed it.
ORDINARY_READ = MAX_BODY_BYTES + CHUNK


@pytest.fixture
def portal(world: PagesWorld) -> Portal:
    return make_portal(world)


def upload(token: str, size: int = 3 * MiB) -> tuple[bytes, str]:
    fields = {"csrf_token": token, "ground": "paid_in_full", "statement": "已于 3 月 1 日全部清偿。"}
    return form_body(fields, [("files", ("回单.pdf", big_pdf(size), "application/pdf"))])


def cookies_of(client: TestClient) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{name}={value}" for name, value in client.cookies.items())}


def filed_on_case(portal: Portal) -> int:
    with portal.world.session_factory() as session:
        query = select(func.count(RemovalRequest.id)).where(RemovalRequest.case_no == CASE)
        return int(session.scalar(query) or 0)


@pytest.mark.parametrize("declare_length", [True, False], ids=["declared", "chunked"])
@pytest.mark.parametrize("cookie", ["none", "ended session"])
def test_nobody_signed_in_is_sent_to_sign_in_without_the_body_read(
    portal: Portal, cookie: str, declare_length: bool
) -> None:
    with portal.world.client() as client:
        body, content_type = upload("any")
        headers = {"Content-Type": content_type}
        if cookie == "ended session":
            headers["Cookie"] = "seal_session=ended-long-ago"
        answer = post_streamed(client, URL, body, headers, declare_length=declare_length)
    assert (answer.status, answer.headers["location"]) == (303, "/portal")
    assert answer.pulled == 0
    assert filed_on_case(portal) == 0


@pytest.mark.parametrize("declare_length", [True, False], ids=["declared", "chunked"])
@pytest.mark.parametrize("who", ["other-debtor", "other-judge", "judge"])
def test_whoever_may_not_file_on_the_case_has_the_ordinary_cap(portal: Portal, who: str, declare_length: bool) -> None:
    with portal.world.client(who) as client:
        token = csrf_of(client.get("/portal" if "debtor" in who else "/").text)
        body, content_type = upload(token)
        headers = {**cookies_of(client), "Content-Type": content_type}
        answer = post_streamed(client, URL, body, headers, declare_length=declare_length)
        small_body, small_type = upload(token, 1000)
        small = post_streamed(client, URL, small_body, {**headers, "Content-Type": small_type}, declare_length=True)
    assert answer.status == 413, answer.body
    assert "request body larger than" in answer.json()["detail"] and "请求体超过" in answer.json()["detail"]
    assert answer.pulled == (0 if declare_length else ORDINARY_READ) < answer.sent
    assert small.status == (403 if who == "judge" else 404)  # the route's own answer to a body it may read
    assert filed_on_case(portal) == 0


@pytest.mark.parametrize("declare_length", [True, False], ids=["declared", "chunked"])
@pytest.mark.parametrize("how", ["access code", "account"])
def test_the_debtor_s_3_mib_proof_is_filed(portal: Portal, how: str, declare_length: bool) -> None:
    client = portal.code_client() if how == "access code" else portal.world.client("debtor")
    with client:
        token = csrf_of(client.get(f"/portal/cases/{q(CASE)}").text)
        body, content_type = upload(token)
        headers = {**cookies_of(client), "Content-Type": content_type}
        answer = post_streamed(client, URL, body, headers, declare_length=declare_length)
    assert answer.status == 303, answer.body
    assert answer.headers["location"].startswith(f"/portal/cases/{q(CASE)}?filed=")
    assert answer.pulled == answer.sent > 3 * MiB
    assert filed_on_case(portal) == 1
