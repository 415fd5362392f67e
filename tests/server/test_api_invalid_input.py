"""The API refuses input it cannot take in Chinese first, then English, on every route: a validator's 422 (a field
missing, a value not among those allowed, a query parameter of the wrong type, …) keeps each error's ``loc`` and
``type`` and says its ``msg`` in both languages; a form its parser cannot read (a part over the parser's 1 MB, too many
fields) is a 400 in both languages — the status the pages answer for it — not the parser's English."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from server.api.events import MAX_PAGE
from server.api.removal_schemas import STATEMENT_MAX
from server.api.routing import ValidatedRoute
from server.app import create_app
from server.core.db import SessionFactory
from server.web.i18n import said_in_chinese
from server.web.routing import PageRoute
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A
from tests.server.removal_world import RemovalWorld, make_world

FILE_PATH = f"/api/cases/{quote(CASE_A, safe='')}/removal-requests"


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    # the default proof limits: a debtor's filing may be 50 MB, past the form parser's 1 MB for one part
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def refusal(response: httpx.Response, loc: list[str | int], kind: str) -> dict[str, Any]:
    """The one error of a 422 at ``loc`` of type ``kind``, checked to say itself in Chinese first, then English."""
    assert response.status_code == 422, response.text
    [error] = [e for e in response.json()["detail"] if e["loc"] == loc]
    assert error["type"] == kind, error
    chinese, separator, english = error["msg"].partition(" / ")
    assert said_in_chinese(error["msg"]) and separator and english, error
    return error


def file(world: RemovalWorld, data: dict[str, str], **kwargs: Any) -> httpx.Response:
    return world.client.post(FILE_PATH, data=data, headers=world.as_("debtor"), **kwargs)


def nothing_filed(world: RemovalWorld) -> bool:
    listed = world.client.get(FILE_PATH, headers=world.as_("debtor"))
    assert listed.status_code == 200, listed.text
    return listed.json() == []


def test_a_request_without_statement_is_refused_in_both_languages(world: RemovalWorld) -> None:
    error = refusal(file(world, {"ground": "paid_in_full"}), ["body", "statement"], "missing")
    assert error["msg"] == "缺少“statement”。 / statement: Field required"
    assert nothing_filed(world)


def test_a_ground_not_among_the_grounds_is_refused_in_both_languages(world: RemovalWorld) -> None:
    response = file(world, {"ground": "paid_half", "statement": "已部分清偿。"})
    error = refusal(response, ["body", "ground"], "enum")
    assert error["msg"].startswith("“ground”的值不在允许的取值之中。 / ground: Input should be '")
    assert "'paid_in_full'" in error["msg"] and error["ctx"]["expected"], error  # the grounds it takes
    assert "input" not in error  # a form's part is never echoed (it may be a file)
    assert nothing_filed(world)


def test_a_statement_over_its_limit_says_the_limit_in_both_languages(world: RemovalWorld) -> None:
    response = file(world, {"ground": "paid_in_full", "statement": "清" * (STATEMENT_MAX + 1)})
    error = refusal(response, ["body", "statement"], "string_too_long")
    assert error["msg"].startswith(f"“statement”过长：最多 {STATEMENT_MAX} 个字符。 / statement: String should have")
    assert error["ctx"] == {"max_length": STATEMENT_MAX}


@pytest.mark.parametrize(
    ("how", "statement", "files"),
    [
        ("url-encoded form", "清" * 200_000, None),  # 1.8 MB as %E6%B8%85…: past the parser's 1 MB for one field
        ("multipart form", "清" * 400_000, [("files", ("回单.pdf", b"%PDF-1.4\n", "application/pdf"))]),  # 1.2 MB
    ],
)
def test_a_statement_past_the_form_parser_s_limit_is_refused_in_both_languages(
    world: RemovalWorld, how: str, statement: str, files: Any
) -> None:
    response = file(world, {"ground": "paid_in_full", "statement": statement}, files=files)
    assert response.status_code == 400, (how, response.text)
    detail = response.json()["detail"]
    assert said_in_chinese(detail) and detail.startswith("提交的表单无法读取"), detail
    assert "1024KB" in detail.partition(" / ")[2], detail  # the parser's own limit, in the English part
    assert nothing_filed(world)


def test_too_many_fields_are_refused_in_both_languages(world: RemovalWorld) -> None:
    fields = {"ground": "paid_in_full", "statement": "已全部清偿。", **{f"x{i}": "1" for i in range(1000)}}
    response = file(world, fields, files=[("files", ("回单.pdf", b"%PDF-1.4\n", "application/pdf"))])
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert said_in_chinese(detail) and "Too many fields" in detail, detail
    assert nothing_filed(world)


def test_other_routes_refuse_in_both_languages_with_their_machine_fields(world: RemovalWorld) -> None:
    judge = world.as_("judge")
    events = world.client.get(f"/api/cases/{quote(CASE_A, safe='')}/events", params={"limit": "many"}, headers=judge)
    error = refusal(events, ["query", "limit"], "int_parsing")
    assert error["msg"].startswith("“limit”应为整数。 / limit: Input should be a valid integer")
    assert error["input"] == "many"  # a JSON client's input is echoed as before

    too_many = world.client.get(f"/api/cases/{quote(CASE_A, safe='')}/events", params={"limit": 9999}, headers=judge)
    assert refusal(too_many, ["query", "limit"], "less_than_equal")["msg"].startswith(f"“limit”应不大于 {MAX_PAGE}。")

    no_password = world.client.post("/api/auth/login", json={"username": "judge"})
    assert refusal(no_password, ["body", "password"], "missing")["msg"] == "缺少“password”。 / password: Field required"

    not_a_number = world.client.get("/api/removal-requests/abc", headers=judge)
    refusal(not_a_number, ["path", "request_id"], "int_parsing")


def test_every_route_of_the_app_answers_invalid_input_through_its_route_class(world: RemovalWorld) -> None:
    """Every route with parameters is the API's (:class:`ValidatedRoute`, JSON in both languages) or a page's
    (:class:`PageRoute`, the page's words): none is left with FastAPI's English 422."""
    app: Any = world.client.app
    routes = [context.original_route for context in iter_route_contexts(app.routes)]  # included routers' too
    answered = [route for route in routes if isinstance(route, APIRoute)]
    assert len(answered) > 100 and any(route.path == "/health" for route in answered)  # paths within routers
    assert [route.path for route in answered if not isinstance(route, ValidatedRoute | PageRoute)] == []
