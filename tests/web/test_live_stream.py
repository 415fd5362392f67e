"""The live stream (``GET /live``) and its bus: replay after a reconnect, "gap" when it cannot, only what the user
may see, heartbeats, and a subscriber that is always let go — when the browser leaves, when the server stops, when
a client stops reading, when the session ends (on a real server: test_live_stream_served.py)."""

from __future__ import annotations

import asyncio
import html
import re
import threading
import time
from collections.abc import AsyncGenerator, Coroutine
from typing import Any, TypeVar

from seal_protocol import EventType
from server.core.live import Change, LiveHub, Position
from server.web.sse import EventStream, message
from tests.web.conftest import SEAL, PagesWorld

T = TypeVar("T")


def events(text: str) -> list[dict[str, str]]:
    """The SSE messages in ``text``: each one's fields (``data`` lines joined), the ``retry:`` line left out."""
    found = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            if name == "data":
                fields["data"] = fields["data"] + "\n" + value if "data" in fields else value
            elif name in ("event", "id"):
                fields[name] = value
        if "event" in fields:
            found.append(fields)
    return found


def token_now(world: PagesWorld) -> str:
    """The live bus's position now, as a page gives it to its stream (sealed by the hub)."""
    return world.hub.token(world.hub.position)


def live_url_of(page: str) -> str:
    """The URL of the live stream a page's HTML connects to."""
    [url] = re.findall(r'sse-connect="([^"]+)"', page)
    return html.unescape(url)


def run_apart(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on an event loop of its own thread (Playwright's sync API may hold this thread's loop)."""
    results: list[T] = []
    thread = threading.Thread(target=lambda: results.append(asyncio.run(coroutine)))
    thread.start()
    thread.join(30)
    assert results, "the scenario did not finish"
    return results[0]


# -- the bus ----------------------------------------------------------------------------------------------------


def test_the_bus_replays_from_a_position_of_its_epoch_and_says_when_it_cannot() -> None:
    hub = LiveHub(ring_size=4)
    start = hub.position
    hub.publish([Change("event", "a"), Change("status", "b")])
    now = hub.position
    assert [c.device_id for _, c in hub.since(start, now) or []] == ["a", "b"]
    assert hub.since(now, now) == []
    assert hub.since(Position("another-epoch", 1), now) is None  # the server restarted: reload
    assert hub.since(Position(hub.epoch, now.seq + 1), now) is None  # from the future
    hub.publish(Change("event", str(i)) for i in range(5))
    assert hub.since(start, hub.position) is None  # older than the ring
    assert Position.parse(str(now)) == now and Position.parse("nonsense") is None and Position.parse(None) is None


def test_a_subscriber_that_does_not_keep_up_is_marked_and_closing_wakes_every_one() -> None:
    async def scenario() -> tuple[bool, bool, float]:
        hub = LiveHub(max_pending=3)
        slow, _ = hub.subscribe()
        hub.publish(Change("event", str(i)) for i in range(4))
        waiting, _ = hub.subscribe()
        began = time.monotonic()
        asyncio.get_running_loop().call_later(0.05, hub.close)
        await waiting.wait(10)
        return slow.overflowed, waiting.closed, time.monotonic() - began

    overflowed, closed, waited = run_apart(scenario())
    assert overflowed and closed and waited < 5  # woken by the close, not the wait's 10 s


def test_a_gap_ends_every_open_subscription_and_nothing_from_before_it_is_replayed() -> None:
    async def scenario() -> tuple[str | None, str | None, bool]:
        hub = LiveHub()
        open_one, _ = hub.subscribe()
        hub.publish([Change("event", "a")])
        before = hub.position
        hub.gap("feed")
        # A stream that took its last changes just before the gap and read the epoch just after it:
        mixed = Position(hub.epoch, before.seq)
        later, _ = hub.subscribe()
        now = hub.position
        return open_one.gap, later.gap, hub.since(before, now) is None and hub.since(mixed, now) is None

    open_gap, later_gap, not_replayed = run_apart(scenario())
    assert open_gap == "feed" and later_gap is None
    assert not_replayed, "a position from before the gap was replayed: the changes missed would be a silent hole"


def test_a_stream_whose_client_stops_reading_is_dropped_and_unsubscribed() -> None:
    finished = threading.Event()

    async def messages() -> AsyncGenerator[bytes, None]:
        try:
            while True:
                yield message("heartbeat", "x")
        finally:
            finished.set()

    async def scenario() -> float:
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            await asyncio.sleep(3600)  # the client never says it left: its network vanished
            return {"type": "http.disconnect"}

        async def send(event: dict[str, Any]) -> None:
            sent.append(event)
            if event.get("more_body") and len(sent) > 3:
                await asyncio.sleep(3600)  # the kernel's buffer is full: the write never completes

        began = time.monotonic()
        await EventStream(messages(), write_timeout_s=0.2)({"type": "http"}, receive, send)
        return time.monotonic() - began

    assert run_apart(scenario()) < 20  # the write timeout, not the hour the write would take
    assert finished.is_set()


# -- the stream through the app ------------------------------------------------------------------------------------


def test_a_reconnecting_page_gets_what_it_missed_and_heartbeats(world: PagesWorld) -> None:
    with world.client("judge") as client:
        before = token_now(world)
        world.ingest((world.seal.event_topic, world.seal.event(EventType.HEARTBEAT)))
        after = world.hub.position
        stream = events(client.get(f"/live?view=overview&since={before}").text)
        update, *rest = stream
        assert update["event"] == "update" and world.hub.position_of(update["id"]) == after
        assert f'id="seal-{SEAL}"' in update["data"] and 'hx-swap-oob="true"' in update["data"]
        assert 'id="counts"' in update["data"] and 'id="alarms"' in update["data"]
        assert [m["event"] for m in rest] and {m["event"] for m in rest} == {"heartbeat"}
        # A heartbeat carries the position the stream has covered (here: the update's), sealed anew each time.
        assert all(world.hub.position_of(m["id"]) == after for m in rest)
        assert update["id"] not in {m["id"] for m in rest}
        # The browser's own Last-Event-ID wins over the page's position: nothing missed, nothing sent again.
        again = events(client.get(f"/live?since={before}", headers={"Last-Event-ID": update["id"]}).text)
        assert {m["event"] for m in again} == {"heartbeat"}
    assert world.hub.subscribers == 0


def test_a_stream_carries_only_what_its_user_may_see(world: PagesWorld) -> None:
    before = token_now(world)
    world.ingest((world.seal.event_topic, world.seal.event(EventType.TAMPER, {"armed": True, "warning": "played"})))
    with world.client("other-judge") as client:  # not even an update (something happened, at that moment)
        assert [m for m in events(client.get(f"/live?since={before}").text) if m["event"] == "update"] == []
    with world.client("debtor") as client:  # the overview is not the debtor's (the portal is): nothing of the seal
        updates = [m for m in events(client.get(f"/live?since={before}").text) if m["event"] == "update"]
    assert all(SEAL not in m["data"] and "data-alarm-id" not in m["data"] for m in updates), updates


def test_a_stream_that_cannot_replay_says_gap(world: PagesWorld) -> None:
    with world.client("judge") as client:
        restarted = events(client.get("/live?since=0badcafe.3").text)  # no position this process gave out
        assert [m["event"] for m in restarted] == ["gap"] and "id" not in restarted[0]
        another = LiveHub().token(world.hub.position)  # another process's (or one made up)
        assert [m["event"] for m in events(client.get(f"/live?since={another}").text)] == ["gap"]
        old = token_now(world)
        world.hub.publish(Change("event", SEAL) for _ in range(world.app.state.live._ring.maxlen + 1))
        assert [m["event"] for m in events(client.get(f"/live?since={old}").text)] == ["gap"]
        assert client.get("/live?view=nonsense").status_code == 404
    with world.client() as anonymous:
        assert anonymous.get("/live").status_code == 303
