"""Pages left open for hours, on a real server (uvicorn, the page tests' database). A case page, in Debian's
chromium, while a busy case's events stream in: its timeline keeps at most :data:`TIMELINE_MAX` rows, newest first,
each once, with a link to the older ones; a burst of more events than one update carries brings the newest page
afresh rather than a hole. An open overview is sent the alarm list only when it changed; after a burst of alarms,
and after a reload forced by more changes than its stream holds ("gap"), it shows what the database holds."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page
from playwright.sync_api import Error as PlaywrightError
from sqlalchemy import select

from seal_dev.browser import PageWatch, sign_in
from seal_protocol import EventType
from server.alarms.models import Alarm
from server.alarms.service import close_alarm
from server.alarms.state import LIVE_STATES, AlarmState
from server.auth.users import get_user
from server.config import WebSettings
from server.core.db import session_scope
from server.core.live import Change
from server.evidence.models import Event
from server.seals.models import Seal
from server.seals.registry import register_seal
from server.web.case_model import LIVE_MAX, PAGE, TIMELINE_MAX
from tests.agent.helpers import wait_until
from tests.conftest import full_run
from tests.server.auth_helpers import PASSWORD
from tests.server.helpers import SimulatedSeal
from tests.web.conftest import CASE, SEAL, PagesWorld
from tests.web.court_scale import Scale, seal_id, seed
from tests.web.test_live_stream_served import served, signed_in_client  # noqa: F401 - served: the fixture

BURST_SEALS = 20
ROWS = "() => [...document.querySelectorAll('#timeline > li[data-event-id]')].map(li => Number(li.dataset.eventId))"


@pytest.fixture
def web_settings() -> WebSettings:
    """A stream that lasts the test (a heartbeat every second, as in the browser tests)."""
    return WebSettings(heartbeat_s=1.0, stream_max_s=300, write_timeout_s=2)


def live_up(page: Page) -> bool:
    """The page's stream is up (``False`` too while the page is being reloaded)."""
    try:
        return bool(page.evaluate("() => document.body.dataset.live === 'up' && !window.__beforeReload"))
    except PlaywrightError:  # the page is between two documents
        return False


def intrusions(world: PagesWorld, n: int) -> None:
    """``n`` intrusions of the world's seal, stored (and published) at once."""
    seal = world.seal
    world.ingest(*[(seal.event_topic, seal.event(EventType.INTRUSION, {"armed": True})) for _ in range(n)])


def newest_ids(world: PagesWorld, n: int) -> list[int]:
    with world.session_factory() as session:
        query = select(Event.id).where(Event.case_no == CASE, Event.type != EventType.HEARTBEAT.value)
        return list(session.scalars(query.order_by(Event.id.desc()).limit(n)))


def shows_newest(page: Page, world: PagesWorld) -> bool:
    rows = page.evaluate(ROWS)
    return bool(rows) and rows[0] == newest_ids(world, 1)[0]


def test_a_case_page_left_open_keeps_a_bounded_timeline_newest_first_without_holes(
    world: PagesWorld,
    served: str,  # noqa: F811 - the fixture imported above
    browser: Browser,
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        watch = PageWatch(page)
        sign_in(page, served, "judge", PASSWORD)
        page.goto(f"{served}/cases/{CASE}")
        assert wait_until(lambda: live_up(page), 10)
        for _ in range(TIMELINE_MAX // 25 + 2):  # more than the timeline keeps, an update at a time
            intrusions(world, 25)
        assert wait_until(lambda: shows_newest(page, world), 20)
        rows = page.evaluate(ROWS)
        assert rows == newest_ids(world, TIMELINE_MAX), "the timeline grows, repeats a row or is out of order"
        older = page.get_attribute("#timeline > #timeline-more > a", "href")
        assert older is not None and older.endswith(f"/timeline?before={rows[-1]}")

        intrusions(world, LIVE_MAX + 50)  # more at once than an update carries
        assert wait_until(lambda: shows_newest(page, world), 20)
        assert page.evaluate(ROWS) == newest_ids(world, PAGE), "a burst left a hole in the timeline"
        assert page.locator("#timeline-more").count() == 1
        assert not watch.console_errors and not watch.page_errors
    finally:
        context.close()


def next_update(lines: Iterator[str]) -> str:
    """The data of the stream's next ``update`` message."""
    for line in lines:
        if line == "event: update":
            return "\n".join(itertools.takewhile(bool, lines))
    raise AssertionError("the stream ended without an update")


def test_an_open_overview_is_sent_the_alarm_list_only_when_it_changed(
    world: PagesWorld,
    served: str,  # noqa: F811 - the fixture imported above
) -> None:
    """A court's 2,000 seals send a heartbeat every few minutes: the overview's alarm list (up to 200 rows, 144 KB)
    must not travel to every open tab with each of them."""
    seal = world.seal
    with signed_in_client(served) as client, client.stream("GET", "/live?view=overview") as response:
        lines = response.iter_lines()
        assert wait_until(lambda: world.hub.subscribers == 1, 5)
        world.ingest((seal.event_topic, seal.event(EventType.HEARTBEAT)))
        first = next_update(lines)
        assert f'id="seal-{SEAL}"' in first and 'id="alarms"' in first  # the stream's first: everything
        time.sleep(1.1)  # a tile shows its last heartbeat to the second: one in the same second changes nothing
        world.ingest((seal.event_topic, seal.event(EventType.HEARTBEAT)))
        beat = next_update(lines)
        assert f'id="seal-{SEAL}"' in beat and 'id="counts"' not in beat  # the counts did not change: not sent
        assert 'id="alarms"' not in beat, "the unchanged alarm list was sent again with a heartbeat"
        world.ingest((seal.event_topic, seal.event(EventType.TAMPER, {"armed": True, "warning": "played"})))
        alarm = next_update(lines)
        assert 'id="alarms"' in alarm and alarm.count("data-alarm-id=") == 2
        world.ingest((seal.event_topic, seal.event(EventType.TAMPER, {"armed": True, "warning": "played"})))
        folded = next_update(lines)  # the repeat folds into the open alarm: no new row, the row changes
        assert 'id="alarms"' in folded, "a live alarm that changed (a repeat folded into it) was not sent"
        assert folded.count("data-alarm-id=") == 2


SHOWN = """() => ({
  counts: Object.fromEntries(
    [...document.querySelectorAll('#counts [data-count]')].map(e => [e.dataset.count, e.textContent])),
  alarms: [...document.querySelectorAll('#alarms [data-alarm-id]')].map(e => Number(e.dataset.alarmId)),
  alarming: [...document.querySelectorAll('#tiles > article.alarming')].map(e => e.dataset.device).sort(),
})"""


def stored(world: PagesWorld) -> dict[str, object]:
    """What the judge's overview should show, read from the database."""
    with world.session_factory() as session:
        live = select(Alarm).where(Alarm.state.in_(LIVE_STATES)).order_by(Alarm.id.desc())
        alarms = list(session.scalars(live))
    in_alarm = sorted({a.device_id for a in alarms if a.state == AlarmState.OPEN.value})
    return {"alarms": sorted(a.id for a in alarms), "alarming": in_alarm, "in_alarm": str(len(in_alarm))}


def test_an_open_overview_after_a_burst_and_after_an_overflow_shows_what_is_stored(
    world: PagesWorld,
    served: str,  # noqa: F811 - the fixture imported above
    browser: Browser,
) -> None:
    seals = [SimulatedSeal(f"seal-burst-{i:02d}", CASE) for i in range(BURST_SEALS)]
    with session_scope(world.session_factory) as session:
        for seal in seals:
            register_seal(session, actor=None, device_id=seal.device_id, case_no=CASE, public_key=seal.public_key)
    context = browser.new_context()
    try:
        page = context.new_page()
        watch = PageWatch(page)
        sign_in(page, served, "judge", PASSWORD)
        assert wait_until(lambda: live_up(page), 10)
        for i in range(5 * BURST_SEALS):  # one commit (and one live change) each, as fast as they come
            seal = seals[i % BURST_SEALS]
            kind = EventType.TAMPER if i % 3 == 0 else EventType.INTRUSION
            world.ingest((seal.event_topic, seal.event(kind, {"armed": True, "warning": "played"})))
        want = stored(world)

        def matches() -> bool:
            shown = page.evaluate(SHOWN)
            return (sorted(shown["alarms"]), shown["alarming"], shown["counts"]["in_alarm"]) == (
                want["alarms"],
                want["alarming"],
                want["in_alarm"],
            )

        assert wait_until(matches, 20), (page.evaluate(SHOWN), want)
        shown = page.evaluate(SHOWN)
        assert len(shown["alarms"]) == len(set(shown["alarms"])), "an alarm row is shown twice"
        assert shown["alarms"] == sorted(shown["alarms"], reverse=True), "the open alarms are out of order"

        page.evaluate("() => { window.__beforeReload = true; }")  # gone with the document when the page reloads
        world.hub.publish(Change("event", f"elsewhere-{i}") for i in range(5000))  # more than a stream holds
        assert wait_until(lambda: live_up(page), 20), "the page did not reload"
        assert matches()
        assert not watch.console_errors and not watch.page_errors
    finally:
        context.close()


def test_a_stalled_tab_is_let_go_and_the_others_keep_up(
    world: PagesWorld,
    served: str,  # noqa: F811 - the fixture imported above
    request: pytest.FixtureRequest,
) -> None:
    """A tab of a laptop whose lid closed: its connection stays, nothing is read. The kernel's buffers take a few MB
    first (the clerk's updates of 200 tiles fill them in seconds); then its writes time out, it is let go, and the
    tab that reads gets its updates meanwhile. (Long: some seconds, as the machine's socket buffers go.)"""
    if not full_run(request.config):
        pytest.skip("a stalled tab's socket buffers take seconds to fill: in the full run (SEAL_LONG_TESTS=1)")
    seed(world.session_factory, Scale(cases=5, seals=200, alarms=0))
    with httpx.Client(base_url=served) as client:  # the clerk: every seal's tile
        assert client.post("/api/auth/login", json={"username": "clerk", "password": PASSWORD}).status_code == 200
        cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    host, port = served.removeprefix("http://").split(":")
    stalled = socket.create_connection((host, int(port)))
    try:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(f"GET /live?view=overview HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n\r\n".encode())
        assert wait_until(lambda: world.hub.subscribers == 1, 5)
        updates: list[str] = []
        reading = threading.Thread(target=read_updates, args=(served, cookie, updates), daemon=True)
        reading.start()
        assert wait_until(lambda: world.hub.subscribers == 2, 5)
        published = 0
        while world.hub.subscribers == 2 and published < 600:
            world.hub.publish([Change("event", seal_id(k)) for k in range(200)])
            published += 1
            time.sleep(0.05)  # a busy court's pace, not a wait for a condition
        assert world.hub.subscribers == 1, "the stalled tab was never let go"
        got = len(updates)
        with session_scope(world.session_factory) as session:  # a change the clerk's tile shows (a stream sends
            seal = session.scalars(select(Seal).where(Seal.device_id == seal_id(0))).one()  # only what changed)
            seal.armed = not seal.armed
        world.hub.publish([Change("event", seal_id(0))])
        assert wait_until(lambda: len(updates) > got, 10), "the tab that reads does not keep up"
        assert reading.is_alive() and world.hub.subscribers == 1
    finally:
        stalled.close()


def read_updates(base: str, cookie: str, updates: list[str]) -> None:
    with httpx.Client(base_url=base, timeout=30, headers={"Cookie": cookie}) as client:
        with client.stream("GET", "/live?view=overview") as response:
            for line in response.iter_lines():
                if line == "event: update":
                    updates.append(line)


def tile_order(page: Page) -> list[str]:
    return list(page.evaluate("() => [...document.querySelectorAll('#tiles > article')].map(e => e.dataset.device)"))


def test_an_open_overview_keeps_its_tiles_in_the_order_a_reload_gives(
    world: PagesWorld,
    served: str,  # noqa: F811 - the fixture imported above
    browser: Browser,
) -> None:
    """Seals with open alarms first: a seal far down the grid that raises an alarm moves to the top, without a
    reload, and back among the calm ones when its alarm is closed."""
    seals = [SimulatedSeal(f"seal-order-{i}", CASE) for i in range(6)]
    with session_scope(world.session_factory) as session:
        for seal in seals:
            register_seal(session, actor=None, device_id=seal.device_id, case_no=CASE, public_key=seal.public_key)
    context = browser.new_context()
    try:
        page = context.new_page()
        sign_in(page, served, "judge", PASSWORD)
        assert wait_until(lambda: live_up(page), 10)
        assert tile_order(page) == [SEAL] + [s.device_id for s in seals]
        last = seals[-1]
        world.ingest((last.event_topic, last.event(EventType.INTRUSION, {"armed": True, "warning": "played"})))
        assert wait_until(lambda: tile_order(page)[:2] == sorted([SEAL, last.device_id]), 10), tile_order(page)
        live = tile_order(page)
        page.reload()
        assert wait_until(lambda: live_up(page), 10)
        assert tile_order(page) == live, "the order of the tiles after a live update is not the page's order"
        with session_scope(world.session_factory) as session:
            clerk = get_user(session, username="clerk").id
            close_alarm(session, alarm_id=world.alarm_id, user_id=clerk, note="误报")
        world.hub.publish([Change("alarm", SEAL, CASE)])
        assert wait_until(lambda: tile_order(page)[-1] == SEAL, 10), tile_order(page)  # calm, last by its case
        live = tile_order(page)
        page.reload()
        assert wait_until(lambda: live_up(page), 10)
        assert tile_order(page) == live
    finally:
        context.close()


def test_a_note_typed_on_the_overview_survives_the_alarm_list_sent_again_and_is_sent(
    world: PagesWorld,
    served: str,  # noqa: F811 - the fixture imported above
    browser: Browser,
) -> None:
    """A court's alarm list changes often (any new alarm, any repeat folded in): a note half typed into an
    acknowledgement must not be wiped by it."""
    context = browser.new_context()
    try:
        page = context.new_page()
        watch = PageWatch(page)
        sign_in(page, served, "judge", PASSWORD)
        assert wait_until(lambda: live_up(page), 10)
        note = page.locator(f"#alarm-{world.alarm_id} input[name=note]")
        note.fill("已联系执行干警")
        seal = world.seal
        world.ingest((seal.event_topic, seal.event(EventType.TAMPER, {"armed": True, "warning": "played"})))
        assert wait_until(lambda: page.locator("#alarms [data-kind=tamper]").count() == 1, 10)
        assert note.input_value() == "已联系执行干警", "the list sent again wiped the note being typed"
        page.locator(f"#alarm-{world.alarm_id} button[type=submit]").click()
        done = page.locator(f"#alarms #alarm-{world.alarm_id}[data-state=acknowledged]")
        assert wait_until(lambda: done.count() == 1 and "已联系执行干警" in done.inner_text(), 10)
        assert page.locator(f"#alarm-{world.alarm_id}").count() == 1
        assert not watch.console_errors and not watch.page_errors
    finally:
        context.close()
