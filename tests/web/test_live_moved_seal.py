"""A seal moved to another case tells its former case's pages nothing — not by content, presence or timing: the
ingest's changes name the case each event was stored under, the case page and the overview look only at their own
cases' changes, and the case page's timeline sends only rows the browser does not have as they are."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from seal_protocol import EventType
from server.core.db import session_scope
from server.core.live import Change
from server.ingest.changes import live_changes
from server.ingest.results import Outcome
from server.seals.registry import bind_seal, unbind_seal
from server.web import overview
from tests.agent.helpers import wait_until
from tests.server.helpers import message
from tests.web.conftest import CASE, OTHER_CASE, SEAL, PagesWorld
from tests.web.test_live_stream import events, live_url_of

CASE_URL = f"/cases/{quote(CASE, safe='')}"


def read_while(client: Any, world: PagesWorld, live: str, action: Callable[[], None]) -> list[dict[str, str]]:
    """The updates of the stream ``live`` (read to its end, ``stream_max_s``) while ``action`` runs once the stream
    is subscribed to the live bus."""
    before = world.hub.subscribers
    out: dict[str, str] = {}
    reader = threading.Thread(target=lambda: out.setdefault("text", client.get(live).text))
    reader.start()
    assert wait_until(lambda: world.hub.subscribers > before, 10), "the stream did not subscribe"
    action()
    reader.join(30)
    return [m for m in events(out["text"]) if m["event"] == "update"]


def move_seal(world: PagesWorld) -> None:
    with session_scope(world.session_factory) as session:
        unbind_seal(session, actor=None, device_id=SEAL)
        bind_seal(session, actor=None, device_id=SEAL, case_no=OTHER_CASE, location="elsewhere")
    world.seal.case_no = OTHER_CASE


def test_the_ingest_s_changes_name_the_case_of_each_event(world: PagesWorld) -> None:
    results = world.ingestor.ingest([message(world.seal.event_topic, world.seal.event(EventType.HEARTBEAT))])
    assert [r.outcome for r in results] == [Outcome.STORED] and results[0].case_no == CASE
    assert live_changes(results) == [Change("event", SEAL, CASE)]


def test_a_moved_seal_speaking_in_its_new_case_sends_its_former_case_s_page_nothing(world: PagesWorld) -> None:
    with world.client("judge") as client:  # the judge of CASE only
        move_seal(world)
        live = live_url_of(client.get(CASE_URL).text)  # the page shows the move already
        updates = read_while(
            client,
            world,
            live,
            lambda: world.ingest(
                (world.seal.event_topic, world.seal.event(EventType.HEARTBEAT)),
                (world.seal.event_topic, world.seal.event(EventType.INTRUSION, {"armed": True, "warning": "played"})),
            ),
        )
    assert updates == [], "case A's stream moved when case B's seal spoke"


def test_the_timeline_sends_only_rows_the_page_does_not_have(world: PagesWorld) -> None:
    with world.client("judge") as client:
        live = live_url_of(client.get(CASE_URL).text)
        # A change of the case that changes no row: no timeline in the update (the rows are on the page already). Other
        # parts may come: the seals' table says "1 秒前" once a second has passed since the page was drawn.
        sent = read_while(client, world, live, lambda: world.hub.publish([Change("event", SEAL, CASE)]))
        assert [update for update in sent if 'id="timeline"' in update["data"]] == []
        page = client.get(CASE_URL).text
        updates = read_while(
            client,
            world,
            live_url_of(page),
            lambda: world.ingest((world.seal.event_topic, world.seal.event(EventType.TAMPER, {"armed": True}))),
        )
    # (an update may come in more than one message, and the seals' table may move on its own: see above; a row of the
    # page may be sent again when what it shows changed meanwhile — CI re-sent one, under load — never as it was)
    # The stream subscribes before its first render, and the tamper is stored once it has subscribed: under load it
    # is stored before that render, and the stream then sends the timeline whole (its part differs from the page's
    # digest: it replaces the page's timeline, every row in it) — by design. Only the rows of updates that add to the
    # page's timeline (not the whole one, data-live-list) must be new or changed.
    on_page = _rows(page)
    sent_rows = {row: html for update in updates for row, html in _rows(update["data"]).items()}
    assert len(sent_rows.keys() - on_page.keys()) == 1, f"one new row is sent, not {sorted(sent_rows)}"
    added = {
        row: html
        for update in updates
        if "data-live-list" not in update["data"]
        for row, html in _rows(update["data"]).items()
    }
    again = [row for row in added.keys() & on_page.keys() if added[row] == on_page[row]]
    assert again == [], f"rows the page has, unchanged, are sent again: {again}"
    assert any('data-type="tamper"' in update["data"] for update in updates)


def _rows(html: str) -> dict[str, str]:
    """The timeline's rows in ``html``: event id -> the row's markup."""
    return {match.group(1): match.group(0) for match in re.finditer(r'(?s)<li id="event-(\d+)".*?</li>', html)}


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every time the overview's live view reads what it shows."""
    calls: list[object] = []
    real = overview._tiles_and_counts

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(overview, "_tiles_and_counts", counted)
    return calls


def test_another_case_s_overview_does_nothing_for_this_case_s_events(world: PagesWorld, renders: list[object]) -> None:
    with world.client("other-judge") as client:
        live = live_url_of(client.get("/").text)
        renders.clear()
        heartbeat = (world.seal.event_topic, world.seal.event(EventType.HEARTBEAT))
        updates = read_while(client, world, live, lambda: world.ingest(heartbeat))
    assert updates == [] and renders == [], "the other case's overview read the database for this case's heartbeat"
