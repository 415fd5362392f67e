"""The live dashboard in real Chromium against ``seal-server run`` on a private Mosquitto (the hostile review of the
live dashboard, its tests made the project's):

- an intrusion a seal signs under a mistyped case number folds into its ``case_mismatch`` alarm, which comes to
  alert: every open overview shows it alerting at once, with the banner — before, no page learned of it until a
  reload (the ingest told the live bus only what its outcomes named, and a refused event names no case);
- a page's live stream speaks the page's language: switching the language in another tab changed the first tab's
  live parts at its stream's next reconnect;
- the English alert banner says "New alarm: ", not "New alarm：" (a Chinese full-width colon);
- the overview's acknowledgement of an alarm someone else has handled meanwhile says it was refused (a 409 htmx
  dropped without a word).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from gpiozero.pins.mock import MockFactory
from playwright.sync_api import Request, expect
from sqlalchemy import select

from seal_dev.broker import PrivateBroker
from seal_dev.court_process import CourtProcess, seal_config
from server.alarms.models import Alarm
from server.alarms.service import acknowledge_as
from server.auth.models import User
from server.core.db import session_scope
from server.seals.registry import register_seal
from tests.agent.helpers import RecordingSpeaker, RuntimeFactory, pulse, verify_key, wait_until
from tests.web.conftest import CASE, SEAL, InstalledSeal, SignIn, running_court

#: A stream that ends (and reconnects) every 4 s: what a page's stream does after [web] stream_max_s.
SHORT_STREAMS = "[web]\nheartbeat_s = 1.0\nstream_max_s = 4.0\n[liveness]\ncheck_interval_s = 1.0\n"
CASE_PATH = f"/cases/{quote(CASE, safe='')}"
MISTYPED = "(2021)苏0214执1243号"  # CASE with two digits swapped


@pytest.fixture
def court(tmp_path: Path, broker: PrivateBroker) -> Iterator[CourtProcess]:
    """The conftest's court, its streams reconnecting every 4 s."""
    yield from running_court(tmp_path, broker, SHORT_STREAMS)


def test_an_intrusion_under_a_mistyped_case_number_alerts_the_open_overview(
    tmp_path: Path,
    broker: PrivateBroker,
    court: CourtProcess,
    runtimes: RuntimeFactory,
    mock_pins: MockFactory,
    signed_in: SignIn,
) -> None:
    config = seal_config(
        tmp_path / SEAL, broker, device_id=SEAL, case_no=MISTYPED, court_public_key=court.court_public_key
    )
    runtime = runtimes(config, speaker=RecordingSpeaker())
    key = base64.b64encode(bytes(verify_key(config))).decode("ascii")
    with session_scope(court.session_factory) as session:
        register_seal(session, actor=None, device_id=SEAL, case_no=CASE, public_key=key, location="仓库")
    runtime.start()

    def mismatch() -> Alarm | None:
        with court.session_factory() as session:
            return session.scalars(select(Alarm).where(Alarm.kind == "case_mismatch")).first()

    assert wait_until(lambda: mismatch() is not None, 30), court.log_tail()
    page, watch = signed_in("judge")
    row = page.locator("#alarms [data-kind=case_mismatch]")
    expect(row).to_have_attribute("data-alert", "0")  # the seal's events reach no case: no one is on the premises
    expect(page.locator("body")).to_have_attribute("data-live", "up")
    pulse(mock_pins)  # someone walks in: the seal signs an intrusion under the mistyped number
    assert wait_until(lambda: (a := mismatch()) is not None and "intrusions" in a.details, 30), court.log_tail()
    expect(row).to_have_attribute("data-alert", "1")  # without a reload
    expect(page.locator("#alert-banner")).to_be_visible()
    expect(page.locator("#alert-banner")).to_contain_text(SEAL)
    assert watch.page_errors == []


def test_a_page_s_live_parts_keep_its_language_when_another_tab_switches(
    court: CourtProcess, seal: InstalledSeal, signed_in: SignIn
) -> None:
    page, _watch = signed_in("judge")  # zh-CN
    streams: list[str] = []
    page.on("request", lambda request: _count_stream(request, streams))
    page.goto(f"{court.url}{CASE_PATH}")
    expect(page.locator("body")).to_have_attribute("data-live", "up")
    expect(page.locator("#case-alarms h2")).to_have_text("告警")
    other = page.context.new_page()  # the same judge, the same browser: another tab switches to English
    other.goto(f"{court.url}/")
    other.locator("form[action='/lang'] button").click()
    expect(other.locator("html")).to_have_attribute("lang", "en")
    # The first tab does nothing; its stream ends after stream_max_s (4 s) and reconnects by itself, and renders its
    # parts again (a whole view: those that differ from what the page has are sent). Before, in the cookie's language.
    # The stream's first message after a reconnection: the update (if any part differs) comes before the heartbeat,
    # and the page's data-live is "up" again only once the new stream has delivered a message (app.js).
    with page.expect_request(lambda request: "/live?" in request.url, timeout=15_000):
        pass  # a stream opened after the switch
    expect(page.locator("body")).to_have_attribute("data-live", "up")
    expect(page.locator("#case-alarms h2")).to_have_text("告警", timeout=1000)
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    assert streams and all("lang=zh-CN" in url for url in streams), streams


def _count_stream(request: Request, streams: list[str]) -> None:
    if "/live?" in request.url:
        streams.append(request.url)


def test_the_english_alert_banner_says_new_alarm_with_a_latin_colon(
    court: CourtProcess, seal: InstalledSeal, signed_in: SignIn
) -> None:
    page, watch = signed_in("judge", lang="en")
    expect(page.locator("body")).to_have_attribute("data-live", "up")
    seal.walk_in()
    banner = page.locator("#alert-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("New alarm: Intrusion")
    assert "：" not in banner.inner_text()
    assert watch.page_errors == []


def test_the_overview_says_when_an_acknowledgement_is_refused(
    court: CourtProcess, seal: InstalledSeal, signed_in: SignIn
) -> None:
    """The officer acknowledged the alarm (in another process: the judge's page is not told) before the judge's
    click: the judge's acknowledgement is refused (409), and the overview says so."""
    seal.walk_in()

    def intrusion() -> int | None:
        with court.session_factory() as session:
            return session.scalar(select(Alarm.id).where(Alarm.kind == "intrusion"))

    assert wait_until(lambda: intrusion() is not None, 30), court.log_tail()
    alarm_id = intrusion()
    assert alarm_id is not None
    page, _watch = signed_in("judge")
    page.route("**/live?*", lambda route: route.abort())  # the page keeps the form it has
    page.goto(f"{court.url}/")
    form = page.locator(f"#alarm-{alarm_id} form")
    expect(form).to_be_visible()
    with session_scope(court.session_factory) as session:
        officer = session.scalars(select(User).where(User.username == "officer")).one()
        acknowledge_as(session, actor=officer, alarm_id=alarm_id, note="on my way")
    box = page.locator("#alarms-error")
    expect(box).to_be_empty()
    with page.expect_response(lambda response: f"/alarms/{alarm_id}/ack" in response.url) as answer:
        form.locator("button").click()
    assert answer.value.status == 409
    expect(box).not_to_be_empty()
    expect(box.locator(".error")).to_be_visible()
