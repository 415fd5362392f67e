"""The upload check of :class:`~server.api.body_limit.BodyLimit` reads the database (who may upload, before the body
is read): when that read fails, the request is answered as the app answers the same failure in a route, not with a
bare 500 of the middleware's own."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

import server.api.deps
from server.app import LOST_RACE_TEXT, create_app
from server.core.db import SessionFactory
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A
from tests.server.removal_world import RemovalWorld, c, make_world
from tests.server.streamed_post import MiB, big_pdf, form_body, post_streamed


class _DriverError(Exception):
    """The driver's error under SQLAlchemy's: ``sqlstate`` as psycopg gives it (None: no answer at all)."""

    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


FAILURES = {
    "lost-race": _DriverError("deadlock detected", "40P01"),
    "no-answer": _DriverError("connection refused: is the server running?", None),
}


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    settings = make_settings(database_url, tmp_path)
    with TestClient(create_app(settings, with_ingest=False), raise_server_exceptions=False) as client:
        yield make_world(session_factory, tmp_path, client)


def _failing(orig: _DriverError) -> Any:
    def resolve_session(*_args: Any, **_kwargs: Any) -> Any:
        raise OperationalError("SELECT … FROM sessions", {}, orig)

    return resolve_session


def _upload(world: RemovalWorld) -> Any:
    proof = ("files", ("回单.pdf", big_pdf(3 * MiB), "application/pdf"))
    data = {"ground": "paid_in_full", "statement": "已全部清偿。Paid in full."}
    url = f"/api/cases/{c(CASE_A)}/removal-requests"
    return world.client.post(url, data=data, files=[proof], headers=world.as_("debtor"))


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_database_failure_in_the_upload_check_is_answered_as_the_app_answers_it(
    world: RemovalWorld, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, failure: str
) -> None:
    headers = world.as_("debtor")  # a live session: the check goes on to the database
    monkeypatch.setattr(server.api.deps, "resolve_session", _failing(FAILURES[failure]))
    ordinary = world.client.get("/api/cases", headers=headers)  # the same failure in a route's own dependency
    with caplog.at_level(logging.WARNING):
        answer = _upload(world)

    assert (answer.status_code, answer.content) == (ordinary.status_code, ordinary.content)
    assert answer.headers.get("Retry-After") == ordinary.headers.get("Retry-After")
    assert any("upload check" in record.getMessage() for record in caplog.records)
    if failure == "lost-race":
        assert answer.status_code == 503
        assert answer.json()["detail"] == LOST_RACE_TEXT
    else:
        assert answer.status_code == 500  # as every route answers a database that does not answer


@pytest.mark.parametrize("declare_length", [True, False], ids=["declared", "chunked"])
def test_the_body_is_not_read_when_the_upload_check_fails(
    world: RemovalWorld, monkeypatch: pytest.MonkeyPatch, declare_length: bool
) -> None:
    headers = world.as_("debtor")
    monkeypatch.setattr(server.api.deps, "resolve_session", _failing(FAILURES["lost-race"]))
    body, content_type = form_body({"ground": "paid_in_full"}, [("files", ("回单.pdf", big_pdf(3 * MiB), "x"))])
    url = f"/api/cases/{c(CASE_A)}/removal-requests"
    answer = post_streamed(
        world.client, url, body, {**headers, "Content-Type": content_type}, declare_length=declare_length
    )
    assert (answer.status, answer.pulled) == (503, 0)
    assert answer.json()["detail"] == LOST_RACE_TEXT
