"""An intrusion or tamper stored while the overview reloads itself alerts as one its stream delivered: the banner and
the outlined row (and the sound, if on). In Debian's chromium, on a real server (uvicorn, the page tests' database).
The page reloads itself on a stream's ``gap`` (the court's feed lost a change, the stream fell behind…) and when the
server answers again after its stream was lost; the alarms the tab knew are kept in its sessionStorage. A first
visit, or a reload the user makes, alerts for none of the alarms it finds."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from playwright.sync_api import Error as PlaywrightError

from seal_dev.browser import sign_in
from seal_protocol import EventType
from server.config import WebSettings
from server.core.metrics import IngestMetrics
from server.ingest.ingestor import Ingestor
from tests.agent.helpers import wait_until
from tests.server.auth_helpers import PASSWORD
from tests.server.helpers import message
from tests.web.conftest import SEAL, PagesWorld
from tests.web.test_live_long_open import live_up
from tests.web.test_live_stream_served import served, signed_in_client  # noqa: F401 - served: the fixture

TAMPER = "#alarms [data-kind=tamper][data-state=open]"


@pytest.fixture
def web_settings() -> WebSettings:
    """A heartbeat every second, as in the browser tests; a stream ends after 4 s (the browser opens another)."""
    return WebSettings(heartbeat_s=1.0, stream_max_s=4, write_timeout_s=2)


def _overview(browser: Browser, base: str) -> Page:
    page = browser.new_context().new_page()
    sign_in(page, base, "judge", PASSWORD)
    page.goto(f"{base}/")
    assert wait_until(lambda: live_up(page), 20)
    return page


def _calm(page: Page, world: PagesWorld) -> None:
    """The page shows the world's open intrusion, and alerts for nothing."""
    expect(page.locator(f"#alarm-{world.alarm_id}")).to_be_visible()
    expect(page.locator("#alert-banner")).to_be_hidden()
    assert page.locator("[data-alarm-id].new").count() == 0


def _store_tamper(world: PagesWorld, tmp_path: Path) -> None:
    """A tamper stored, and its change not published (lost by the court's feed, or no stream to take it): by an
    ingest with no ``on_commit`` (the world's own publishes what it stores, as the court's does)."""
    seal = world.seal
    quiet = Ingestor(world.session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "quiet-snapshots")
    try:
        quiet.ingest([message(seal.event_topic, seal.event(EventType.TAMPER, {"armed": True}))])
    finally:
        quiet.close()


def reloaded(page: Page) -> bool:
    try:
        return bool(page.evaluate("() => document.readyState === 'complete' && !window.__beforeReload"))
    except PlaywrightError:  # the page is between two documents
        return False


def _alerted_for_the_tamper(page: Page, world: PagesWorld) -> None:
    banner = page.locator("#alert-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text(f"新告警：防拆（外壳被打开） — {SEAL}")
    expect(page.locator(TAMPER)).to_have_class("alarm open critical new")
    expect(page.locator(f"#alarm-{world.alarm_id}")).not_to_have_class("new")  # known before the reload


def test_a_tamper_stored_while_the_feed_lost_it_alerts_after_the_gap_s_reload(
    world: PagesWorld,
    served: str,  # noqa: F811 - the fixture imported above
    browser: Browser,
    tmp_path: Path,
) -> None:
    page = _overview(browser, served)
    try:
        _calm(page, world)  # a first visit: the open intrusion is there, but not new to anyone
        page.evaluate("() => { window.__beforeReload = true; }")  # gone with the document when the page reloads
        _store_tamper(world, tmp_path)
        world.hub.gap("feed")
        assert wait_until(lambda: live_up(page), 20), "the page did not reload"
        _alerted_for_the_tamper(page, world)
    finally:
        page.context.close()


def test_a_tamper_stored_while_the_stream_was_lost_alerts_after_the_reload_once_the_server_answers(
    world: PagesWorld,
    served: str,  # noqa: F811 - the fixture imported above
    browser: Browser,
    tmp_path: Path,
) -> None:
    page = _overview(browser, served)
    try:
        _calm(page, world)
        # the stream's next connection fails (its current one ends within stream_max_s); /api/health answers
        page.route("**/live?*", lambda route: route.abort())
        page.evaluate("() => { window.__beforeReload = true; }")
        expect(page.locator("#stale-banner")).to_be_visible()
        _store_tamper(world, tmp_path)
        assert wait_until(lambda: reloaded(page), 30), "the page did not reload"
        _alerted_for_the_tamper(page, world)

        page.unroute("**/live?*")
        page.reload()  # the user's own reload: nothing new to alert for
        assert wait_until(lambda: live_up(page), 20)
        expect(page.locator(TAMPER)).to_be_visible()
        expect(page.locator("#alert-banner")).to_be_hidden()
        assert page.locator("[data-alarm-id].new").count() == 0
    finally:
        page.context.close()
