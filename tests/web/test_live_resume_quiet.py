"""A quiet overview in a busy court resumes where its stream left off: its heartbeats carry the position the stream
has covered (sealed, a new token each time), so the reconnect after ``stream_max_s`` replays only what came since —
not everything since the page was loaded, which a busy court overflows (``gap``: the page reloads, and a judge's
typed note is lost)."""

from __future__ import annotations

import threading

import pytest

from server.config import WebSettings
from server.core.live import Change
from tests.web.conftest import OTHER_CASE, PagesWorld
from tests.web.test_live_stream import events, live_url_of

#: The bus keeps the fewest changes it may (16); more than that are published while the first stream is open.
REPLAY_SIZE = 16
BUSY = 40


@pytest.fixture
def web_settings() -> WebSettings:
    return WebSettings(heartbeat_s=0.2, stream_max_s=1.0, replay_size=REPLAY_SIZE)


def test_a_quiet_judge_s_overview_reconnects_without_a_gap_in_a_busy_court(world: PagesWorld) -> None:
    with world.client("judge") as client:
        live = live_url_of(client.get("/").text)

        def busy_court() -> None:  # another case's seal heard from, again and again: nothing this judge sees
            for _ in range(BUSY):
                world.hub.publish([Change("status", "seal-elsewhere", OTHER_CASE)])

        timer = threading.Timer(0.3, busy_court)
        timer.start()
        try:
            first = events(client.get(live).text)
        finally:
            timer.join()
        assert {m["event"] for m in first} == {"heartbeat"}, first
        ids = [m["id"] for m in first if "id" in m]
        # The browser reconnects with its Last-Event-ID (the last id it was given), or else with the page's position.
        again = events(client.get(live, headers={"Last-Event-ID": ids[-1]} if ids else {}).text)
        assert [m["event"] for m in again if m["event"] != "heartbeat"] == [], again
        assert len(set(ids)) == len(ids), "two heartbeats' ids alike: they would show that nothing happened between"
