"""The case page live, in real Chromium against ``seal-server run``, a private Mosquitto and the real agent code on
mock pins: the judge approves a removal request and watches it reach ``disarmed`` as the seal acknowledges with its
signed answer; an alarm is acknowledged and closed with notes; a ping is pending until the seal's answer; a
picture's dialog says its signature is verified."""

from __future__ import annotations

import re
from urllib.parse import quote

from playwright.sync_api import Page, expect

from seal_dev.browser import PageWatch
from seal_dev.court_process import CourtProcess
from server.auth.users import get_user
from server.config import RemovalSettings
from server.core.base import utc_now
from server.core.db import session_scope
from server.removal.grounds import RemovalGround
from server.removal.proofs import ProofStore
from server.removal.service import file_request
from tests.web.conftest import CASE, SEAL, InstalledSeal, SignIn, screenshot

CASE_PATH = f"/cases/{quote(CASE, safe='')}"


def clean(watch: PageWatch, court: CourtProcess) -> None:
    assert watch.console_errors == [] and watch.page_errors == [], (watch.console_errors, watch.page_errors)
    assert watch.foreign_hosts(f"127.0.0.1:{court.port}") == set()


def open_case(
    signed_in: SignIn, court: CourtProcess, who: str = "judge", lang: str = "zh-CN"
) -> tuple[Page, PageWatch]:
    page, watch = signed_in(who, lang=lang)
    page.goto(f"{court.url}{CASE_PATH}")
    expect(page.locator("body")).to_have_attribute("data-live", "up", timeout=20000)  # the stream is open
    return page, watch


def test_the_judge_approves_a_removal_and_watches_the_seal_disarm(
    court: CourtProcess, seal: InstalledSeal, signed_in: SignIn
) -> None:
    with session_scope(court.session_factory) as session:  # the debtor filed it (the portal's part)
        file_request(
            session,
            actor=get_user(session, username="debtor"),
            case_no=CASE,
            ground=RemovalGround.PAID_IN_FULL,
            statement="执行款已全部付清，请求解除查封。",
            proofs=[],
            store=ProofStore(court.directory / "removal-proofs"),
            settings=RemovalSettings(),
            now=utc_now(),
        )
    page, watch = open_case(signed_in, court)
    request = page.locator("#case-removal article.request")
    expect(request).to_have_attribute("data-state", "submitted")
    request.locator("button[data-act=review]").click()
    expect(request).to_have_attribute("data-state", "under_review")
    request.locator("textarea[name=reasons]").fill("被执行人已履行全部义务，准予解除查封。")
    request.locator("button[data-act=approve]").click()
    progress = request.locator(f"tr[data-device='{SEAL}']")
    expect(progress).to_be_visible(timeout=20000)
    # No reload from here on: the seal's signed ack, the settling and the seal's "disarmed" event arrive live.
    expect(request).to_have_attribute("data-state", "disarmed", timeout=20000)
    expect(progress).to_have_attribute("data-progress", "disarmed")
    expect(page.locator(f"#case-seal-{SEAL} [data-armed]")).to_have_attribute("data-armed", "disarmed", timeout=20000)
    expect(page.locator("#case-status [data-case-status]")).to_have_attribute("data-case-status", "lifting")
    expect(page.locator("#timeline [data-type=command_ack]").first).to_be_visible()
    screenshot(page, "case-removal-disarmed-zh")
    clean(watch, court)


def test_an_alarm_is_acknowledged_and_closed_with_notes(
    court: CourtProcess, seal: InstalledSeal, signed_in: SignIn
) -> None:
    page, watch = open_case(signed_in, court, lang="en")
    expect(page.locator("#case-alarms")).to_contain_text("No alarm on this case.")
    seal.walk_in()
    alarm = page.locator("#case-alarms [data-kind=intrusion]")
    expect(alarm).to_have_attribute("data-state", "open", timeout=20000)
    expect(page.locator("#alert-banner")).to_be_visible()
    alarm.locator("input[name=note]").first.fill("Officer on the way")
    alarm.get_by_role("button", name="Acknowledge").click()
    expect(alarm).to_have_attribute("data-state", "acknowledged")
    expect(alarm).to_contain_text("Officer on the way")
    alarm.locator("input[name=note]").fill("False alarm: the cleaner")
    alarm.get_by_role("button", name="Close").click()
    expect(alarm).to_have_attribute("data-state", "closed")
    expect(alarm).to_contain_text("False alarm: the cleaner")
    screenshot(page, "case-alarm-closed-en")
    clean(watch, court)


def test_a_ping_is_pending_until_the_seal_answers(court: CourtProcess, seal: InstalledSeal, signed_in: SignIn) -> None:
    page, watch = open_case(signed_in, court, who="officer")
    with page.expect_response(lambda r: r.url.endswith("/commands") and r.request.method == "POST") as sent:
        page.locator(f"#case-commands form[data-device='{SEAL}'] button[value=ping]").click()
    # What the court knew when it answered the click: pending, unless the seal (on this same machine) answered before
    # the page was rendered; tests/web/test_case_pages.py shows the pending state with no seal to answer.
    answered = sent.value.text()
    shown = re.search(r'data-action="ping" data-state="([a-z_]+)"', answered)
    assert shown is not None and shown.group(1) in ("pending", "acknowledged"), answered
    row = page.locator("#case-commands tr[data-action=ping]")
    expect(row).to_have_attribute("data-state", "acknowledged", timeout=20000)
    expect(row).to_contain_text("已送达并执行")
    screenshot(page, "case-command-ping-zh")
    clean(watch, court)


def test_a_picture_opens_with_its_verified_signature(
    court: CourtProcess, seal: InstalledSeal, signed_in: SignIn
) -> None:
    page, watch = open_case(signed_in, court)
    seal.walk_in()
    thumb = page.locator("#timeline a.thumb").first
    expect(thumb).to_be_visible(timeout=20000)
    thumb.click()
    dialog = page.locator("#snapshot-dialog")
    expect(dialog).to_be_visible()
    verdict = dialog.locator(".verdict")
    expect(verdict).to_have_attribute("data-verdict", "verified")
    expect(verdict).to_contain_text("签名验证通过")
    expect(dialog.locator("img.full")).to_be_visible()
    screenshot(page, "case-snapshot-dialog-zh")
    dialog.get_by_role("button", name="关闭").click()
    expect(dialog).to_be_hidden()
    clean(watch, court)
