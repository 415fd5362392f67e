"""The case, seal, audit and administration pages in Chromium, in zh-CN and in English: no raw catalogue key, no
mojibake, no console error, no request to any host but the court's server. A screenshot of each is saved under
var/screenshots/ (git-ignored)."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, expect

from seal_dev.browser import PageWatch
from seal_dev.court_process import CourtProcess
from server.web.i18n import catalogue
from tests.web.conftest import CASE, SEAL, InstalledSeal, SignIn, screenshot
from tests.web.test_page_tour import MOJIBAKE

#: Any catalogue key shown as it is ("case.title"), or the translator's mark for a missing one.
RAW_KEY = re.compile(r"⟦|\b(?:" + "|".join(sorted({k.split(".")[0] for k in catalogue()})) + r")\.[a-z_]+\b")
CASE_PATH = f"/cases/{quote(CASE, safe='')}"
TITLES = {"zh-CN": "案件", "en": "Case"}


def check(page: Page, watch: PageWatch, court: CourtProcess, lang: str, name: str, words: str = "body") -> None:
    """``words``: where raw keys are looked for (the audit log shows action names such as ``case.create`` as data)."""
    assert page.locator("html").get_attribute("lang") == lang
    everything = page.locator("body").inner_text()
    shown = "\n".join(page.locator(words).all_inner_texts())
    assert "⟦" not in everything
    assert not RAW_KEY.search(shown), RAW_KEY.search(shown)
    assert not MOJIBAKE.search(everything), MOJIBAKE.search(everything)
    if lang == "zh-CN":
        assert re.search(r"[\u4e00-\u9fff]", everything)
    screenshot(page, f"{name}-{lang}")
    assert watch.console_errors == [] and watch.page_errors == [], (watch.console_errors, watch.page_errors)
    assert watch.foreign_hosts(f"127.0.0.1:{court.port}") == set()


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_every_case_seal_audit_and_admin_page_in_both_languages(
    lang: str, court: CourtProcess, seal: InstalledSeal, signed_in: SignIn
) -> None:
    seal.walk_in()  # an alarm, and pictures in the timeline
    page, watch = signed_in("judge", lang=lang)
    page.goto(f"{court.url}{CASE_PATH}")
    expect(page.locator("h1")).to_contain_text(TITLES[lang])
    expect(page.locator("#case-alarms [data-kind=intrusion]")).to_be_visible(timeout=20000)
    thumb = page.locator("#timeline a.thumb").first
    expect(thumb).to_be_visible(timeout=20000)
    check(page, watch, court, lang, "case-judge")
    picture = thumb.get_attribute("href")
    page.goto(f"{court.url}{picture}")
    expect(page.locator(".verdict")).to_have_attribute("data-verdict", "verified")
    check(page, watch, court, lang, "snapshot-page")
    page.goto(f"{court.url}{CASE_PATH}/timeline?before=1000")
    check(page, watch, court, lang, "timeline-page")
    page.goto(f"{court.url}/seals/{SEAL}")
    expect(page.locator("#seal-live")).to_be_visible()
    check(page, watch, court, lang, "seal-judge")
    page.goto(f"{court.url}/")
    page.locator(f"#seal-{SEAL} dd a").first.click()  # the overview's tile leads to the case page
    page.wait_for_url(f"**{CASE_PATH}")

    page, watch = signed_in("creditor", lang=lang, viewport=(390, 844))
    page.goto(f"{court.url}{CASE_PATH}")
    expect(page.locator("#timeline")).to_be_visible()
    expect(page.locator("#timeline img")).to_have_count(0)  # pictures stay with the court
    check(page, watch, court, lang, "case-creditor-phone")

    page, watch = signed_in("clerk", lang=lang)
    for path, name in (
        ("/admin/users", "admin-users"),
        ("/admin/cases", "admin-cases"),
        ("/admin/courts", "admin-courts"),
    ):
        page.goto(f"{court.url}{path}")
        expect(page.locator("nav.sub")).to_be_visible()
        check(page, watch, court, lang, name)
    page.goto(f"{court.url}/admin/cases")
    page.locator(f"tr[data-case='{CASE}'] form[action$='/access-code'] button").click()
    expect(page.locator("[data-access-code]")).to_have_text(re.compile(r"^[A-Z2-9]{4}(-[A-Z2-9]{4}){3}$"))
    check(page, watch, court, lang, "admin-access-code")
    page.goto(f"{court.url}/audit")
    expect(page.locator("table.audit")).to_be_visible()
    check(page, watch, court, lang, "audit", words="header, h1, thead, form.filters button")
