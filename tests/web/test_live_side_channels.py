"""A live stream tells its user nothing they may not see: no ``update`` but when what the page shows changed (its
stream starts from what its page showed), and no id that moves with what happens elsewhere in the court. The debtor
must not learn when the seal on the door reports (docs/removal.md): a jammed seal would show. (The overview's
heartbeats carry a position, sealed anew each time: two of them say nothing of what happened between.)"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import timedelta
from urllib.parse import quote

import pytest

from seal_protocol import EventType
from server.core.base import utc_now
from server.core.db import session_scope
from server.core.live import Change
from server.marks.marks import BEHIND_AFTER_S, record_mark
from tests.server.auth_helpers import PASSWORD
from tests.web.conftest import CASE, SEAL, PagesWorld, csrf_of
from tests.web.portal_world import Portal, make_portal, q
from tests.web.test_live_stream import events, live_url_of


@pytest.fixture
def portal(world: PagesWorld) -> Portal:
    return make_portal(world)


def _messages(client_get: str) -> list[tuple[str, str | None]]:
    return [(m["event"], m.get("id")) for m in events(client_get)]


def test_the_debtor_s_stream_says_nothing_of_when_the_seal_reports(portal: Portal) -> None:
    world = portal.world
    with portal.code_client() as client:  # the debtor, signed in with the paper access code
        live = live_url_of(client.get(f"/portal/cases/{q(CASE)}").text)
        silent = _messages(client.get(live).text)
        world.ingest((world.seal.event_topic, world.seal.event(EventType.HEARTBEAT)))  # the seal on the door reports
        world.hub.publish([Change("status", SEAL, CASE), Change("removal", case_no=CASE)])  # and more, all unseen
        spoke = _messages(client.get(live).text)
        assert {e for e, _ in silent} == {e for e, _ in spoke} == {"heartbeat"}, spoke
        assert all(i is None for _, i in silent + spoke), "a heartbeat's id moves with the court's changes"
        # What the debtor does see still comes, though it changed between the page and its stream …
        request_id = portal.file()
        world.hub.publish([Change("removal", case_no=CASE)])
        [update] = [m for m in events(client.get(live).text) if m["event"] == "update"]
        assert f'id="request-{request_id}"' in update["data"] and 'id="case-requests"' in update["data"]
        # … and once: a reconnect with the update's id (Last-Event-ID) gets it no more.
        again = events(client.get(live, headers={"Last-Event-ID": update["id"]}).text)
        assert {m["event"] for m in again} == {"heartbeat"}
        world.ingest((world.seal.event_topic, world.seal.event(EventType.HEARTBEAT)))
        again = events(client.get(live, headers={"Last-Event-ID": update["id"]}).text)
        assert {m["event"] for m in again} == {"heartbeat"}


def test_the_debtor_is_not_told_when_the_court_does_not_hear_its_seals(portal: Portal) -> None:
    """The court behind (its ingest's caught-up mark lagging): the judge's heartbeats say so, the debtor's do not, and
    the portal has no banner for it — whoever holds the paper access code would learn when to break in."""
    world = portal.world
    with session_scope(world.session_factory) as session:
        record_mark(session, worker="court-ingest-1", caught_up_at=utc_now() - timedelta(seconds=BEHIND_AFTER_S + 30))
    with world.client("judge") as judge:
        deadline = time.monotonic() + 10
        while json.loads(events(judge.get("/live").text)[-1]["data"]).get("court") != "behind":
            assert time.monotonic() < deadline
    with portal.code_client() as client:
        page = client.get(f"/portal/cases/{q(CASE)}").text
        beats = [json.loads(m["data"]) for m in events(client.get(live_url_of(page)).text)]
    assert beats and all(set(beat) == {"time"} for beat in beats), beats
    assert 'id="court-banner"' not in page


def test_the_creditor_s_stream_starts_from_what_the_page_showed(portal: Portal) -> None:
    world = portal.world
    with world.client("creditor") as client:
        live = live_url_of(client.get(f"/creditor/cases/{q(CASE)}").text)
        world.hub.publish([Change("event", SEAL, CASE), Change("command", SEAL, CASE)])  # nothing it shows
        assert {m["event"] for m in events(client.get(live).text)} == {"heartbeat"}
        world.ingest((world.seal.event_topic, world.seal.event(EventType.TAMPER, {"armed": True, "warning": "played"})))
        [update] = [m for m in events(client.get(live).text) if m["event"] == "update"]
        assert 'id="case-alarms"' in update["data"] and 'data-kind="tamper"' in update["data"]


def test_no_page_or_stream_id_moves_with_other_cases(world: PagesWorld) -> None:
    with world.client("other-judge") as client:  # a judge of another case
        first = live_url_of(client.get("/").text)
        world.ingest((world.seal.event_topic, world.seal.event(EventType.HEARTBEAT)))  # case A's seal
        second = live_url_of(client.get("/").text)
        assert first != second  # a page's position is sealed, and sealed anew each time: equal says nothing either
        stream = _messages(client.get(first).text)
        assert stream and all(event == "heartbeat" for event, _i in stream), stream
        # The overview's heartbeats say where its stream has got to (a quiet page resumes from there), each sealed
        # anew: no two alike, whether anything happened between them or not.
        ids = [i for _e, i in stream]
        assert all(i is not None for i in ids) and len(set(ids)) == len(ids), stream
    with world.client("judge") as client:  # the judge of case A, on the case page and the seal page
        # At most what the clock moves ("N s ago") between the page and its stream: the seals, the seal's state.
        for url, clock in ((f"/cases/{quote(CASE, safe='')}", ["case-seals"]), (f"/seals/{SEAL}", [])):
            live = live_url_of(client.get(url).text)
            world.hub.publish([Change("event", "seal-elsewhere", "(2022)苏0214执567号")])
            stream = events(client.get(live).text)
            assert all("id" not in m for m in stream if m["event"] == "heartbeat"), stream
            updates = [m["data"] for m in stream if m["event"] == "update"]
            shown = [re.findall(r'<section id="([^"]+)"', d) for d in updates if 'id="seal-live"' not in d]
            assert all(ids == clock for ids in shown), updates
            assert all("seal-elsewhere" not in d for d in updates)


def test_heartbeats_keep_their_own_clock_whatever_happens_unseen(world: PagesWorld) -> None:
    stop = threading.Event()

    def busy_court() -> None:  # the seal on the door, and the rest of the court, report all the time
        while not stop.wait(0.02):
            world.hub.publish([Change("status", SEAL, CASE), Change("event", "seal-elsewhere", "(2022)苏0214执567号")])

    with world.client() as client:  # entered once: the app's hub stays open, and a stream lasts its 0.6 s
        form = {"username": "debtor", "password": PASSWORD, "csrf_token": csrf_of(client.get("/login").text)}
        assert client.post("/login", data=form).status_code == 303
        live = live_url_of(client.get(f"/portal/cases/{q(CASE)}").text)
        quiet = [m["event"] for m in events(client.get(live).text)]
        thread = threading.Thread(target=busy_court)
        thread.start()
        try:
            busy = [m["event"] for m in events(client.get(live).text)]
        finally:
            stop.set()
            thread.join()
    # One heartbeat as the stream starts, then one every heartbeat_s (0.2 s) of its 0.6 s: not one per change.
    assert set(quiet) == set(busy) == {"heartbeat"}
    assert 2 <= len(quiet) and len(busy) <= len(quiet) + 1 <= 5, (quiet, busy)
