"""The overview, live, in real Chromium against ``seal-server run``, a private Mosquitto and the real agent code on
mock pins: a PIR trigger appears with its snapshot without a reload; the judge acknowledges it; the server stops —
the stale banner; it starts again — what happened meanwhile arrives."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Request, Route, expect

from seal_dev.court_process import CourtProcess
from tests.web.conftest import CASE, PLACE, SEAL, InstalledSeal, SignIn, screenshot


def test_a_pir_trigger_appears_live_with_its_snapshot_and_is_acknowledged(
    court: CourtProcess, seal: InstalledSeal, signed_in: SignIn
) -> None:
    page, watch = signed_in("judge")
    tile = page.locator(f"#seal-{SEAL}")
    expect(tile).to_contain_text(CASE)
    expect(tile).to_contain_text(PLACE)
    expect(page.locator("#alarms")).to_contain_text("当前没有未关闭的告警")

    seal.walk_in()
    alarm = page.locator("#alarms [data-kind=intrusion]")
    expect(alarm).to_be_visible(timeout=20000)
    expect(page.locator("#alert-banner")).to_be_visible()
    expect(page.locator("#alert-banner")).to_contain_text("入侵")
    expect(tile.locator("img.shot")).to_be_visible(timeout=20000)
    screenshot(page, "overview-alarm-zh")

    alarm.locator("input[name=note]").fill("已联系执行干警前往现场")
    alarm.locator("button[type=submit]").click()
    acknowledged = page.locator("#alarms [data-kind=intrusion][data-state=acknowledged]")
    expect(acknowledged).to_contain_text("已联系执行干警前往现场")
    assert watch.console_errors == [] and watch.page_errors == []
    assert watch.foreign_hosts(f"127.0.0.1:{court.port}") == set()


def test_a_stopped_server_shows_the_stale_banner_and_its_restart_brings_the_missed_events(
    court: CourtProcess, seal: InstalledSeal, signed_in: SignIn
) -> None:
    page, watch = signed_in("judge", lang="en")
    banner = page.locator("#stale-banner")
    expect(page.locator(f"#seal-{SEAL}")).to_be_visible()
    expect(banner).to_be_hidden()

    page.evaluate(RECORD_LIVE_STATES)  # from now on: "up" until the stream ends
    assert court.stop() == 0  # SIGTERM: the live streams end, uvicorn stops at once
    expect(banner).to_be_visible(timeout=20000)
    states = page.evaluate("() => window.__liveStates")
    assert states[states.index("stale") - 1] == "connecting", states  # not "up" once the stream had ended
    expect(banner).to_have_text("Connection lost, data may be stale")
    screenshot(page, "overview-stale-en")

    seal.walk_in()  # while the court is away: the seal keeps the event until the court's receipt
    court.start()
    expect(page.locator("#alarms [data-kind=intrusion]")).to_be_visible(timeout=20000)
    expect(banner).to_be_hidden()
    expect(page.locator(f"#seal-{SEAL} [data-last-event]")).not_to_have_attribute("data-last-event", "")
    assert watch.page_errors == []
    assert watch.foreign_hosts(f"127.0.0.1:{court.port}") == set()


#: Records every value the page's body takes for data-live, from before the page's scripts run.
RECORD_LIVE_STATES = """window.__liveStates = [];
new MutationObserver(function () { window.__liveStates.push(document.body.dataset.live); })
  .observe(document, { subtree: true, attributes: true, attributeFilter: ["data-live"] });"""


def _is_stream(url: str) -> bool:
    return urlsplit(url).path == "/live"


def test_the_page_says_its_stream_is_up_only_once_the_stream_has_spoken(court: CourtProcess, signed_in: SignIn) -> None:
    """``data-live="up"`` comes from the stream's first message (the server's heartbeat once the page is subscribed),
    not from the page having loaded: while its stream has not connected, the page says ``connecting``."""
    page, watch = signed_in("judge")
    expect(page.locator("body")).to_have_attribute("data-live", "up")
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route(_is_stream, hold)
    page.add_init_script(RECORD_LIVE_STATES)
    page.reload()
    for _ in range(600):  # 30 s for the page to ask for its stream (which is held: no answer, no error)
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the page did not open its stream"
    page.wait_for_function("() => window.__liveStates.length >= 2")  # app.js has looked at the stream twice
    states = page.evaluate("() => window.__liveStates")
    assert "up" not in states and states[0] == "connecting", states

    held[0].continue_()
    page.unroute(_is_stream, hold)
    expect(page.locator("body")).to_have_attribute("data-live", "up")
    assert watch.page_errors == []


def test_each_page_load_names_its_tab_in_its_stream(court: CourtProcess, signed_in: SignIn) -> None:
    """The stream's URL carries this page load's tab id (a reconnect of the same tab displaces its former stream on
    the server): of the shape the server takes, and another one after a reload."""
    page, watch = signed_in("judge")
    tabs: list[str] = []

    def seen(request: Request) -> None:
        if _is_stream(request.url):
            tabs.extend(parse_qs(urlsplit(request.url).query).get("tab", ["(none)"]))

    page.on("request", seen)
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-live", "up")
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-live", "up")
    assert len(tabs) >= 2 and all(re.fullmatch(r"[A-Za-z0-9_-]{16,32}", tab) for tab in tabs), tabs
    assert tabs[0] != tabs[-1], "two page loads named the same tab"
    assert watch.page_errors == []
