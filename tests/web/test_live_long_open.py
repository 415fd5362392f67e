"""Pages left open for hours, on a real server (uvicorn, the page tests' database). A case page, in Debian's
chromium, while a busy case's events stream in: its timeline keeps at most :data:`TIMELINE_MAX` rows, newest first,
each once, with a link to the older ones; a burst of more events than one update carries brings the newest page
afresh rather than a hole. An open overview is sent the alarm list only when it changed."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page
from sqlalchemy import select

from seal_dev.browser import PageWatch, sign_in
from seal_protocol import EventType
from server.config import WebSettings
from server.evidence.models import Event
from server.web.case_model import LIVE_MAX, PAGE, TIMELINE_MAX
from tests.agent.helpers import wait_until
from tests.server.auth_helpers import PASSWORD
from tests.web.conftest import CASE, SEAL, PagesWorld
from tests.web.test_live_stream_served import served, signed_in_client  # noqa: F401 - served: the fixture

ROWS = "() => [...document.querySelectorAll('#timeline > li[data-event-id]')].map(li => Number(li.dataset.eventId))"


@pytest.fixture
def web_settings() -> WebSettings:
    """A stream that lasts the test (a heartbeat every second, as in the browser tests)."""
    return WebSettings(heartbeat_s=1.0, stream_max_s=300)


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
        page.wait_for_function("document.body.dataset.live === 'up'")
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
        world.ingest((seal.event_topic, seal.event(EventType.HEARTBEAT)))
        beat = next_update(lines)
        assert f'id="seal-{SEAL}"' in beat and 'id="counts"' in beat
        assert 'id="alarms"' not in beat, "the unchanged alarm list was sent again with a heartbeat"
        world.ingest((seal.event_topic, seal.event(EventType.TAMPER, {"armed": True, "warning": "played"})))
        alarm = next_update(lines)
        assert 'id="alarms"' in alarm and alarm.count("data-alarm-id=") == 2
