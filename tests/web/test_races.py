"""The same request twice at once, over real HTTP (uvicorn in a thread), on SQLite and PostgreSQL.

SQLite runs its transactions one after the other (``BEGIN IMMEDIATE``); PostgreSQL (READ COMMITTED) runs them side by
side, where a check before an insert lets both through to the unique index. What is created twice at once is created
once, the other answered 409 (never 500); a court two new cases register at once is theirs both; the debtor's access
code issued twice at once is issued once, and the code shown works; a command form sent twice sends one command.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from sqlalchemy import text

from seal_dev.broker import free_port
from server.auth.access import Role
from tests.agent.helpers import wait_until
from tests.server.auth_helpers import PASSWORD, add_user, bearer
from tests.web.conftest import CASE, OTHER_CASE, SEAL, PagesWorld, csrf_of, form_id_of

ROUNDS = 6


@pytest.fixture
def served(world: PagesWorld) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(world.app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_until(lambda: server.started, 20)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def at_once(*calls: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """The calls made at the same moment (a barrier), their answers in order."""
    barrier = threading.Barrier(len(calls))
    out: list[Any] = [None] * len(calls)

    def run(i: int, call: Callable[[], httpx.Response]) -> None:
        barrier.wait()
        try:
            out[i] = call()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(isinstance(r, httpx.Response) for r in out), out
    return out


def statuses(answers: list[httpx.Response]) -> list[int]:
    return sorted(answer.status_code for answer in answers)


def api(base: str, world: PagesWorld, username: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers=bearer(world.session_factory, username), timeout=60)


def signed_in(base: str, username: str, path: str) -> tuple[httpx.Client, str]:
    """A browser-like client signed in as ``username``, and the page ``path`` it opened."""
    client = httpx.Client(base_url=base, timeout=60, follow_redirects=False)
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
    assert answer.status_code == 303, answer.text
    return client, client.get(path).text


def count(world: PagesWorld, sql: str, **values: object) -> int:
    with world.session_factory() as session:
        return int(session.execute(text(sql), values).scalar_one())


def q(case_no: str) -> str:
    return quote(case_no, safe="")


def test_what_is_created_twice_at_once_is_created_once(world: PagesWorld, served: str) -> None:
    clerks = [api(served, world, "clerk") for _ in range(2)]
    for i in range(ROUNDS):
        user = {"username": f"racer{i}", "password": "a-long-password-1", "role": "officer"}
        assert statuses(at_once(*(lambda c=c, b=user: c.post("/api/users", json=b) for c in clerks))) == [201, 409]
        case = {"case_no": f"(2023)苏0214执{100 + i}号", "court": "无锡市新吴区人民法院"}
        assert statuses(at_once(*(lambda c=c, b=case: c.post("/api/cases", json=b) for c in clerks))) == [201, 409]
        member = {"username": f"racer{i}"}
        url = f"/api/cases/{q(CASE)}/assignments"
        assert statuses(at_once(*(lambda c=c, u=url, b=member: c.post(u, json=b) for c in clerks))) == [201, 409]
    assert count(world, "SELECT count(*) FROM users WHERE username LIKE 'racer%'") == ROUNDS
    assert count(world, "SELECT count(*) FROM cases WHERE case_no LIKE '(2023)%'") == ROUNDS


def test_a_new_court_registered_by_two_cases_at_once_is_theirs_both(world: PagesWorld, served: str) -> None:
    clerks = [api(served, world, "clerk") for _ in range(2)]
    for i in range(ROUNDS):
        court = f"某某人民法院{i}"
        cases = [{"case_no": f"(2023)苏02{20 + i}执{j}号", "court": court} for j in (1, 2)]
        answers = at_once(*(lambda c=c, b=b: c.post("/api/cases", json=b) for c, b in zip(clerks, cases, strict=True)))
        assert statuses(answers) == [201, 201], [a.text for a in answers]
        assert (
            count(world, "SELECT count(*) FROM courts WHERE code = :c AND name = :n", c=f"苏02{20 + i}", n=court) == 1
        )


def test_the_user_form_sent_twice_at_once_makes_one_user(world: PagesWorld, served: str) -> None:
    client, page = signed_in(served, "clerk", "/admin/users")
    token = csrf_of(page)
    for i in range(ROUNDS):
        form = {"username": f"webracer{i}", "password": "a-long-password-1", "role": "officer", "csrf_token": token}
        answers = at_once(*(lambda f=form: client.post("/admin/users", data=f) for _ in range(2)))
        assert statuses(answers) == [303, 409], [a.text[:300] for a in answers]
        refused = next(a for a in answers if a.status_code == 409)
        assert "已存在" in refused.text and "already exists" in refused.text
    assert count(world, "SELECT count(*) FROM users WHERE username LIKE 'webracer%'") == ROUNDS


def _signs_in(base: str, case_no: str, code: str) -> bool:
    client = httpx.Client(base_url=base, timeout=30)
    token = csrf_of(client.get(f"/portal?case_no={q(case_no)}").text)
    answer = client.post("/portal/login", data={"case_no": case_no, "code": code, "csrf_token": token})
    return answer.status_code == 303


def test_the_access_code_is_issued_once_and_replaced_only_on_purpose(world: PagesWorld, served: str) -> None:
    clerks = [api(served, world, "clerk") for _ in range(2)]
    url = f"/api/cases/{q(OTHER_CASE)}/access-code"
    first = at_once(*(lambda c=c: c.post(url) for c in clerks))
    assert statuses(first) == [201, 409]
    issued = next(a.json() for a in first if a.status_code == 201)
    assert _signs_in(served, OTHER_CASE, issued["code"])
    again = clerks[0].post(url)  # a first issue sent once more: refused, the code stays
    assert again.status_code == 409 and "rotate" in again.json()["detail"]
    for _ in range(3):
        replacing = clerks[0].get(url).json()["issued_at"]
        rotated = at_once(*(lambda c=c, r=replacing: c.post(url, json={"replacing": r}) for c in clerks))
        assert statuses(rotated) == [201, 409], [a.text for a in rotated]
        issued = next(a.json() for a in rotated if a.status_code == 201)
        assert issued["rotated"] and _signs_in(served, OTHER_CASE, issued["code"])
    stale = clerks[1].post(url, json={"replacing": replacing})  # the code it meant to replace is gone
    assert stale.status_code == 409 and "meanwhile" in stale.json()["detail"]
    assert _signs_in(served, OTHER_CASE, issued["code"])


def test_the_access_code_form_sent_twice_shows_one_working_code(world: PagesWorld, served: str) -> None:
    client, page = signed_in(served, "clerk", "/admin/cases")
    token = csrf_of(page)
    url = f"/admin/cases/{q(OTHER_CASE)}/access-code"
    answers = at_once(*(lambda: client.post(url, data={"csrf_token": token}) for _ in range(2)))
    assert statuses(answers) == [200, 409]
    shown = re.search(r"data-access-code>([^<]+)<", next(a.text for a in answers if a.status_code == 200))
    assert shown is not None and _signs_in(served, OTHER_CASE, shown.group(1))
    refused = next(a.text for a in answers if a.status_code == 409)
    assert "已于" in refused and "already" in refused
    # The page's rotate form carries the time of the code it replaces: sent twice (back button), one code.
    replacing = re.search(r'name="replacing" value="([^"]+)"', client.get("/admin/cases").text)
    assert replacing is not None
    form = {"csrf_token": token, "replacing": replacing.group(1)}
    answers = at_once(*(lambda: client.post(url, data=form) for _ in range(2)))
    assert statuses(answers) == [200, 409]
    shown = re.search(r"data-access-code>([^<]+)<", next(a.text for a in answers if a.status_code == 200))
    assert shown is not None and _signs_in(served, OTHER_CASE, shown.group(1))
    assert "meanwhile" in next(a.text for a in answers if a.status_code == 409)
    late = client.post(url, data=form)  # the back button, later: refused, the code shown stays the one that works
    assert late.status_code == 409 and _signs_in(served, OTHER_CASE, shown.group(1))


def test_a_command_form_sent_twice_sends_one_command(world: PagesWorld, served: str) -> None:
    add_user(world.session_factory, "judge2", Role.JUDGE, (CASE,))
    client, page = signed_in(served, "judge", f"/cases/{q(CASE)}")
    form_id = form_id_of(client)
    form = {"device_id": SEAL, "action": "test_warning", "csrf_token": csrf_of(page), "form_id": form_id}
    url = f"/cases/{q(CASE)}/commands"
    answers = at_once(*(lambda: client.post(url, data=form) for _ in range(3)))
    assert statuses(answers) == [303, 303, 303]  # the repeats answered as the first
    assert count(world, "SELECT count(*) FROM commands WHERE action = 'test_warning'") == 1
    assert client.post(url, data=form).status_code == 303  # the back button: still the one command
    assert count(world, "SELECT count(*) FROM commands WHERE action = 'test_warning'") == 1
    fresh = form_id_of(client)
    assert fresh != form_id
    assert client.post(url, data={**form, "form_id": fresh}).status_code == 303  # a new form: a new command
    assert count(world, "SELECT count(*) FROM commands WHERE action = 'test_warning'") == 2
    other, other_page = signed_in(served, "judge2", f"/cases/{q(CASE)}")  # another's form id: refused
    refused = other.post(url, data={**form, "csrf_token": csrf_of(other_page)})
    assert refused.status_code == 409 and "sent already" in refused.text
    missing = client.post(url, data={k: v for k, v in form.items() if k != "form_id"})
    assert missing.status_code == 422
    assert count(world, "SELECT count(*) FROM commands WHERE action = 'test_warning'") == 2


def test_a_unique_row_that_escapes_a_route_is_a_409_not_a_500(world: PagesWorld) -> None:
    """The safety net: an insert no check guards, refused by a unique index, is answered 409 in both languages by the
    API and by the pages (routes added here that insert a username taken, with the real handlers and database)."""
    from fastapi import APIRouter
    from fastapi.testclient import TestClient

    from server.web.routing import PageRoute

    def insert_taken() -> None:
        with world.session_factory() as session:
            session.execute(
                text(
                    "INSERT INTO users (username, role, password_hash, full_name, disabled, created_at) "
                    "VALUES ('clerk', 'clerk', 'x', '', false, CURRENT_TIMESTAMP)"
                )
            )

    api_routes, page_routes = APIRouter(), APIRouter(route_class=PageRoute)
    api_routes.add_api_route("/api/test-taken", insert_taken, methods=["POST"])
    page_routes.add_api_route("/test-taken", insert_taken, methods=["POST"])
    world.app.include_router(api_routes)
    world.app.include_router(page_routes)
    with TestClient(world.app, raise_server_exceptions=False) as client:
        answer = client.post("/api/test-taken")
        assert answer.status_code == 409 and "刚有另一项操作" in answer.json()["detail"]
        assert "written meanwhile" in answer.json()["detail"]
        page = client.post("/test-taken", headers={"X-Requested-With": "test"})
        assert page.status_code == 409 and "刚有另一项操作" in page.text
