"""The overview, live, in real Chromium against ``seal-server run``, a private Mosquitto and the real agent code on
mock pins: a PIR trigger appears with its snapshot without a reload; the judge acknowledges it; the server stops —
the stale banner; it starts again — what happened meanwhile arrives."""

from __future__ import annotations

from playwright.sync_api import expect

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
    expect(alarm).to_be_visible(timeout=5000)
    expect(page.locator("#alert-banner")).to_be_visible()
    expect(page.locator("#alert-banner")).to_contain_text("入侵")
    expect(tile.locator("img.shot")).to_be_visible(timeout=10000)
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

    assert court.stop() == 0  # SIGTERM: the live streams end, uvicorn stops at once
    expect(banner).to_be_visible(timeout=5000)
    expect(banner).to_have_text("Connection lost, data may be stale")
    screenshot(page, "overview-stale-en")

    seal.walk_in()  # while the court is away: the seal keeps the event until the court's receipt
    court.start()
    expect(page.locator("#alarms [data-kind=intrusion]")).to_be_visible(timeout=20000)
    expect(banner).to_be_hidden()
    expect(page.locator(f"#seal-{SEAL} [data-last-event]")).not_to_have_attribute("data-last-event", "")
    assert watch.page_errors == []
    assert watch.foreign_hosts(f"127.0.0.1:{court.port}") == set()
