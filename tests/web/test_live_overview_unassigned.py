"""A judge taken off a case while their overview is open loses that case's tiles and alarms from the page without a
reload — also when the unassignment is the first change the page's stream sees (it does not know yet which cases
its page shows), and when it happens while the tab reconnects (the change is replayed to a fresh stream)."""

from __future__ import annotations

import threading
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from seal_protocol import EventType
from server.auth.users import assign_case, get_user
from server.config import WebSettings
from server.core.db import session_scope
from server.core.live import Change
from server.seals.registry import register_seal
from tests.agent.helpers import wait_until
from tests.server.helpers import SimulatedSeal
from tests.web.conftest import OTHER_CASE, SEAL, PagesWorld
from tests.web.test_live_stream import events, live_url_of

API = {"X-Requested-With": "XMLHttpRequest"}
OTHER_SEAL = "seal-web-2"


@pytest.fixture
def web_settings() -> WebSettings:
    return WebSettings(heartbeat_s=0.2, stream_max_s=2.0)


def _judge_of_both_cases(world: PagesWorld) -> None:
    """The judge on :data:`OTHER_CASE` too, whose seal has an open tamper alarm."""
    other = SimulatedSeal(OTHER_SEAL, OTHER_CASE)
    with session_scope(world.session_factory) as session:
        register_seal(session, actor=None, device_id=OTHER_SEAL, case_no=OTHER_CASE, public_key=other.public_key)
        assign_case(session, user=get_user(session, username="judge"), case_no=OTHER_CASE)
    world.ingest(
        (other.event_topic, other.event(EventType.HEARTBEAT)),
        (other.event_topic, other.event(EventType.TAMPER, {"armed": True})),
    )


def _stream(world: PagesWorld, client: TestClient, url: str, then: object, **headers: str) -> list[dict[str, str]]:
    """The messages of ``client``'s stream at ``url`` (to its end, ``stream_max_s``), while ``then()`` runs once the
    stream has subscribed."""
    text: list[str] = []
    reader = threading.Thread(target=lambda: text.append(client.get(url, headers=headers).text))
    reader.start()
    assert wait_until(lambda: world.hub.subscribers >= 1, 10)
    then()  # type: ignore[operator]
    reader.join(30)
    assert text, "the stream did not end"
    assert wait_until(lambda: world.hub.subscribers == 0, 10)
    return events(text[0])


def _shows_other_case(html: str) -> bool:
    return f'id="seal-{OTHER_SEAL}"' in html or f"{OTHER_SEAL} · " in html


def _unassign(clerk: TestClient) -> None:
    answer = clerk.delete(f"/api/cases/{quote(OTHER_CASE, safe='')}/assignments/judge", headers=API)
    assert answer.status_code == 204, answer.text


def _drops_the_other_case(messages: list[dict[str, str]]) -> None:
    updates = [m["data"] for m in messages if m["event"] == "update"]
    grids = [u for u in updates if 'id="tiles"' in u]
    assert grids, f"the page was not sent its tiles again: {messages}"
    assert f'id="seal-{SEAL}"' in grids[-1] and not _shows_other_case(grids[-1])
    alarms = [u for u in updates if 'id="alarms"' in u]
    assert alarms and not _shows_other_case(alarms[-1]), "the alarm of the case taken away is still listed"


def test_an_unassignment_that_is_the_stream_s_first_change_takes_the_case_off_the_page(world: PagesWorld) -> None:
    _judge_of_both_cases(world)
    with world.client("clerk") as clerk, world.client("judge") as judge:
        page = judge.get("/")
        assert _shows_other_case(page.text)
        messages = _stream(world, judge, live_url_of(page.text), lambda: _unassign(clerk))
        _drops_the_other_case(messages)
        assert not _shows_other_case(judge.get("/").text)  # what a reload would show


def test_an_unassignment_while_the_tab_reconnects_takes_the_case_off_the_page(world: PagesWorld) -> None:
    _judge_of_both_cases(world)
    with world.client("clerk") as clerk, world.client("judge") as judge:
        page = judge.get("/")
        url = live_url_of(page.text)
        first = _stream(world, judge, url, lambda: world.hub.publish([Change("status", SEAL, None)]))
        ids = [m["id"] for m in first if m["event"] == "update" and "id" in m]
        assert ids, first
        _unassign(clerk)  # between two streams of the tab: replayed to the next one
        messages = _stream(world, judge, url, lambda: None, **{"Last-Event-ID": ids[-1]})
        _drops_the_other_case(messages)
