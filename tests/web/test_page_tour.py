"""Every page built so far, in Chromium, in zh-CN and in English, on a desk screen and a phone: no raw catalogue key,
no mojibake, no console error, no request to any host but the court's server. A screenshot of each is saved under
var/screenshots/ (git-ignored)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, Route, expect
from sqlalchemy import func, select

from seal_dev.browser import PageWatch
from seal_dev.court_process import CourtProcess
from server.audit.models import AuditEntry
from tests.server.auth_helpers import PASSWORD
from tests.web.conftest import CASE, SEAL, InstalledSeal, SignIn, held_posts, screenshot

#: A catalogue key shown as it is ("overview.title"), or the translator's mark for a missing one.
RAW_KEY = re.compile(
    r"⟦|\b(?:app|nav|role|login|password|error|live|time|overview|alarm|alarm_kind|alarm_state|"
    r"severity|event)\.[a-z_]+\b"
)
#: UTF-8 read as Latin-1 or CP-1252 ("æ³•é™¢"), or bytes that were no text at all.
MOJIBAKE = re.compile(r"[\ufffd]|[ÃÂâåæçèé][\u0080-\u00bf€™‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜š›œžŸ]")
LANGUAGES = {"zh-CN": "总览", "en": "Overview"}


def check_page(page: Page, watch: PageWatch, court: CourtProcess, lang: str, name: str, status: int = 200) -> None:
    """``status``: the page's own status; Chromium reports a page answered 404 as a console error, rightly."""
    text = page.locator("body").inner_text()
    assert page.locator("html").get_attribute("lang") == lang
    assert not RAW_KEY.search(text), RAW_KEY.search(text)
    assert not MOJIBAKE.search(text), MOJIBAKE.search(text)
    if lang == "zh-CN":
        assert re.search(r"[\u4e00-\u9fff]", text)
    screenshot(page, f"{name}-{lang}")
    own = f"status of {status} (Not Found) ({page.url})"
    errors = [e for e in watch.console_errors if not (status == 404 and own in e)]
    watch.console_errors.clear()
    assert errors == [] and watch.page_errors == [], (errors, watch.page_errors)
    assert watch.foreign_hosts(f"127.0.0.1:{court.port}") == set()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_page_in_both_languages(
    lang: str, browser: Browser, court: CourtProcess, seal: InstalledSeal, signed_in: SignIn
) -> None:
    # The sign-in page, before anyone signs in (its language from the cookie, else Chinese).
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_cookies([{"name": "seal_lang", "value": lang, "url": court.url}])
    page = context.new_page()
    watch = PageWatch(page)
    page.goto(f"{court.url}/login")
    expect(page.locator("form[action='/login']")).to_be_visible()
    check_page(page, watch, court, lang, "login")
    page.goto(f"{court.url}/no/such/page")
    check_page(page, watch, court, lang, "not-found", status=404)
    context.close()

    seal.walk_in()  # an alarm on the overview, and a snapshot on its tile
    page, watch = signed_in("judge", lang=lang)
    expect(page.locator("h1")).to_contain_text(LANGUAGES[lang])
    expect(page.locator("#alarms [data-kind=intrusion]")).to_be_visible(timeout=20000)
    expect(page.locator(f"#seal-{SEAL} img.shot")).to_be_visible(timeout=20000)
    page.wait_for_timeout(1500)  # a few heartbeats and updates go by: still no error
    check_page(page, watch, court, lang, "overview-judge")
    page.goto(f"{court.url}/account/password")
    check_page(page, watch, court, lang, "password")

    page, watch = signed_in("creditor", lang=lang, viewport=(390, 844))
    expect(page.locator(f"#seal-{SEAL}")).to_contain_text(CASE)
    expect(page.locator(f"#seal-{SEAL} img")).to_have_count(0)  # pictures stay with the court
    check_page(page, watch, court, lang, "overview-creditor-phone")
    page, watch = signed_in("debtor", lang=lang, viewport=(390, 844))  # the overview is not theirs: the portal is
    expect(page).to_have_url(f"{court.url}/portal")
    check_page(page, watch, court, lang, "portal-debtor-phone")


def test_the_language_switch_keeps_the_page(court: CourtProcess, seal: InstalledSeal, signed_in: SignIn) -> None:
    page, watch = signed_in("judge")
    expect(page.locator("h1")).to_contain_text("总览")
    page.click("header form[action='/lang'] button")
    page.wait_for_url(f"{court.url}/")
    expect(page.locator("h1")).to_contain_text("Overview")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    assert watch.console_errors == []


def test_a_double_click_changes_the_password_once(court: CourtProcess, signed_in: SignIn) -> None:
    """The password form is posted once however its button is clicked twice. A second post would find the password
    already changed and answer "当前密码不正确" over a change that was made (and count as a failed try). The posts
    are held until both clicks are in, as a slow network would hold them."""
    page, watch = signed_in("officer")
    page.goto(f"{court.url}/account/password")
    held: list[Route] = []
    page.route("**/account/password", lambda route: held.append(route) if route.request.method == "POST" else None)
    new = "a-new-password-of-the-officer"
    page.fill("input[name=current]", PASSWORD)
    page.fill("input[name=new]", new)
    page.fill("input[name=repeat]", new)
    button = page.locator("form[action='/account/password'] button[type=submit]")
    box = button.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.click(x, y)
    page.wait_for_timeout(150)  # a person's double click; the first post is on its way
    page.mouse.click(x, y)
    held_posts(page, held, 1)
    held[0].continue_()
    expect(page.locator(".flash.ok")).to_be_visible()
    expect(page.locator(".flash.error")).to_have_count(0)
    with court.session_factory() as session:
        actions = session.execute(
            select(AuditEntry.action, func.count())
            .where(AuditEntry.actor == "officer", AuditEntry.action.like("user.password%"))
            .group_by(AuditEntry.action)
        ).all()
    assert dict(actions) == {"user.password": 1}
    assert watch.console_errors == [] and watch.page_errors == []
