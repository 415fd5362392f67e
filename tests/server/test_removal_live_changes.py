"""Open pages learn of every move of a removal request: one settled by a page's GET or by an act then refused is
published at once (the settler then finds nothing to settle, and would tell none), and the debtor's and creditor's
live views re-render the requests when a seal of a request not yet final says it is armed again."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from server.app import create_app
from server.auth.models import User
from server.core.db import SessionFactory
from server.core.live import Change, LiveHub
from server.removal.models import RemovalRequest
from server.web.creditor import creditor_case_changes
from server.web.i18n import Translator
from server.web.live import LiveRender
from server.web.portal import portal_case_changes
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A
from tests.server.removal_world import RemovalWorld, c, make_world


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def every_ack_in(world: RemovalWorld) -> int:
    """A request whose seals have both acknowledged, stored by the ingest; not settled yet (no settler runs here)."""
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    for device_id in ("seal-a1", "seal-a2"):
        world.answer(device_id, commands[device_id].id)
    assert state_of(world, request_id) == "disarm_pending"
    return request_id


def state_of(world: RemovalWorld, request_id: int) -> str:
    with world.session_factory() as session:
        request = session.get(RemovalRequest, request_id)
        assert request is not None
        return request.state


def published_by(hub: LiveHub, act: Callable[[], Any]) -> list[Change]:
    start = hub.position
    act()
    return [change for _, change in hub.since(start, hub.position) or []]


@pytest.mark.parametrize("page", ["/portal", "/creditor"])
def test_a_request_settled_by_a_partys_page_is_published(world: RemovalWorld, page: str) -> None:
    request_id = every_ack_in(world)
    who = "debtor" if page == "/portal" else "creditor"

    def load() -> None:
        response = world.client.get(f"{page}/cases/{c(CASE_A)}", headers=world.as_(who))
        assert response.status_code == 200, response.text[:300]

    assert Change("removal", case_no=CASE_A) in published_by(world.client.app.state.live, load)
    assert state_of(world, request_id) == "disarmed"


REFUSED = {
    "API re-send": ("/api/removal-requests/{id}/resend-disarm", {"note": "再发一次"}),
    "page re-send": ("/cases/{case}/removal/{id}/resend", {"note": "再发一次"}),
    "API lift without ack": (
        "/api/removal-requests/{id}/lift-without-ack",
        {"device_ids": ["seal-a2"], "reasons": "不待确认"},
    ),
    "page lift without ack": (
        "/cases/{case}/removal/{id}/lift-without-ack",
        {"device_ids": "seal-a2", "reasons": "不待确认"},
    ),
}


@pytest.mark.parametrize("act", sorted(REFUSED))
def test_a_request_settled_by_an_act_then_refused_is_published(world: RemovalWorld, act: str) -> None:
    """The judge re-sends (or lifts a seal without its ack) just as the last ack is in: the request is settled
    ``disarmed`` and kept, the act refused (409) — and open pages are told the request moved."""
    request_id = every_ack_in(world)
    url, body = REFUSED[act]
    url = url.format(id=request_id, case=c(CASE_A))
    headers = world.as_("judge")

    def post() -> None:
        if url.startswith("/api/"):
            response = world.client.post(url, json=body, headers=headers)
        else:
            response = world.client.post(url, data=body, headers=headers)
        assert response.status_code == 409, response.text[:300]

    assert Change("removal", case_no=CASE_A) in published_by(world.client.app.state.live, post)
    assert state_of(world, request_id) == "disarmed"


def render(world: RemovalWorld, view: Any, who: str, changes: list[Change] | None, state: dict[str, Any]) -> Any:
    """The live view's parts as its stream renders them (server.web.live), for ``who``."""
    context = world.client.app.state.context
    with world.session_factory() as session:
        user = session.scalars(select(User).where(User.username == who)).one()
        live = LiveRender(session, user, Translator("zh"), {"case_no": CASE_A}, context, "", state)
        return view(live, changes)


def test_a_seal_armed_again_after_its_request_is_disarmed_rerenders_the_parties_requests(world: RemovalWorld) -> None:
    """The request is ``disarmed``; seal-a1's signed heartbeat then says it is armed (a new disarm is needed). The
    debtor's and the creditor's live views re-render the requests, not only the seals' status."""
    request_id = every_ack_in(world)
    assert world.read(request_id, "judge")["state"] == "disarmed"
    views = {"debtor": portal_case_changes, "creditor": creditor_case_changes}
    states: dict[str, dict[str, Any]] = {who: {} for who in views}
    for who, view in views.items():
        assert "requests" in render(world, view, who, None, states[who])

    world.heard("seal-a1", armed=True)
    shown = world.read(request_id, "judge")
    assert [(s["device_id"], s["status"]) for s in shown["seals"]] == [("seal-a1", "rearmed"), ("seal-a2", "disarmed")]
    for who, view in views.items():
        assert "requests" in render(world, view, who, [Change("event", "seal-a1", CASE_A)], states[who]), who
