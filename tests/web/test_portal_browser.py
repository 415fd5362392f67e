"""The debtor's portal and the creditor's view in real Chromium on a phone (390×844), against ``seal-server run``, a
private Mosquitto and the real agent code on mock pins: from a printed notice's URL to a filed request with proof
files (a refused file said beside its field), watched live until every seal has disarmed; the creditor sees only
their case, a live alarm without its picture, and adds a view. Both in zh-CN and in English: no raw catalogue key,
no mojibake, no console error, no request to another host; screenshots under var/screenshots/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, Route, expect
from sqlalchemy import func, select

from seal_dev.browser import PageWatch
from seal_dev.court_process import CourtProcess
from server.audit.models import AuditEntry
from server.auth.access import Role
from server.auth.access_codes import issue_access_code
from server.config import NoticeSettings
from server.core.base import utc_now
from server.core.db import session_scope
from server.notices.keys import NoticeKey
from server.notices.printing import print_notice
from tests.server.auth_helpers import PASSWORD, add_user
from tests.server.removal_world import pdf_bytes, picture_bytes
from tests.web.conftest import CASE, OTHER_CASE, SEAL, InstalledSeal, SignIn, held_posts, screenshot
from tests.web.test_page_tour import MOJIBAKE

PHONE = {"width": 390, "height": 844}
#: A catalogue key shown as it is, or the translator's mark for a missing one.
RAW_KEY = re.compile(r"⟦|\b(?:app|nav|role|login|error|live|time|overview|alarm|portal|creditor)\.[a-z_]+\b")
WRONG_STATUS = re.compile(r"the server responded with a status of (?:409|422)")


def check_page(page: Page, watch: PageWatch, court: CourtProcess, lang: str, name: str) -> None:
    """The page in ``lang``: no raw key, no mojibake, no console error, no other host; its screenshot saved."""
    text = page.locator("body").inner_text()
    assert page.locator("html").get_attribute("lang") == lang
    assert not RAW_KEY.search(text), RAW_KEY.search(text)
    assert not MOJIBAKE.search(text), MOJIBAKE.search(text)
    if lang == "en":
        assert "Sign out" in text or "Sign in" in text
    screenshot(page, f"{name}-{lang}")
    assert watch.console_errors == [] and watch.page_errors == [], (watch.console_errors, watch.page_errors)
    assert watch.foreign_hosts(f"127.0.0.1:{court.port}") == set()


@pytest.fixture
def phone(browser: Browser, court: CourtProcess) -> Iterator[object]:
    contexts: list[BrowserContext] = []

    def make(lang: str) -> tuple[Page, PageWatch]:
        context = browser.new_context(viewport=PHONE, locale=lang, is_mobile=True, has_touch=True)
        contexts.append(context)
        if lang != "zh-CN":
            context.add_cookies([{"name": "seal_lang", "value": lang, "url": court.url}])
        page = context.new_page()
        return page, PageWatch(page)

    try:
        yield make
    finally:
        for context in contexts:
            context.close()


def printed_notice_url(court: CourtProcess) -> str:
    """The seal's notice printed through the service; its QR code's URL, on this server."""
    settings = NoticeSettings(key_file=court.directory / "notice.key", public_base_url="https://seal.court.example")
    with session_scope(court.session_factory) as session:
        printed = print_notice(
            session, actor=None, device_id=SEAL, key=NoticeKey(settings.key_file), settings=settings, now=utc_now()
        )
    assert printed.url.startswith("https://seal.court.example/notice/") and printed.pdf.startswith(b"%PDF")
    return court.url + printed.url.removeprefix("https://seal.court.example")


def judge_approves(court: CourtProcess) -> None:
    """The judge takes the case's request up and approves it, through the API (as the judge's page does)."""
    with httpx.Client(base_url=court.url, timeout=10) as api:
        token = api.post("/api/auth/login", json={"username": "judge", "password": PASSWORD}).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        [request] = api.get(f"/api/cases/{CASE}/removal-requests", headers=headers).json()
        url = f"/api/removal-requests/{request['request_id']}"
        assert api.post(f"{url}/review", json={"note": "受理"}, headers=headers).status_code == 200
        approved = api.post(f"{url}/approve", json={"reasons": "债务已清偿，准予解除查封"}, headers=headers)
        # disarm_pending, or already disarmed if the seal (on this same machine) answered before the response
        assert approved.status_code == 200 and approved.json()["state"] in ("disarm_pending", "disarmed"), approved.text


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_the_debtor_goes_from_the_notice_to_a_filed_request_and_watches_it_disarm(
    lang: str, court: CourtProcess, seal: InstalledSeal, phone: object, tmp_path: Path
) -> None:
    with session_scope(court.session_factory) as session:
        code = issue_access_code(session, actor=None, case_no=CASE, now=utc_now()).code
    page, watch = phone(lang)  # type: ignore[operator]
    page.goto(printed_notice_url(court))
    expect(page.locator(".verdict.ok")).to_be_visible()
    page.click("#portal-link")

    # The portal's form, the case number filled in from the notice; a wrong code first.
    expect(page.locator("input[name=case_no]")).to_have_value(CASE)
    check_page(page, watch, court, lang, "portal-signin-phone")
    page.fill("input[name=code]", "WRONG-CODE-WRONG-CODE")
    page.click("#code-form button[type=submit]")
    expect(page.locator("#code-error")).to_be_visible()
    assert [e for e in watch.console_errors if "status of 401" not in e] == []
    watch.console_errors.clear()
    page.fill("input[name=code]", code.lower())
    page.click("#code-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/portal/cases/.*"))
    expect(page.locator("#case-status [data-case-status=sealed]")).to_be_visible()
    expect(page.locator(f"#case-status [data-device='{SEAL}']")).to_be_visible()
    expect(page.locator("#files-limits")).to_contain_text("10 MB")  # the limits, before any upload
    check_page(page, watch, court, lang, "portal-case-phone")

    # A file the page refuses before sending it; one only the server can refuse (a PNG named .pdf).
    notes = tmp_path / "notes.txt"
    notes.write_text("not a proof")
    page.check("input[name=ground][value=paid_in_full]")
    page.fill("#statement", "已于 3 月 1 日通过银行转账全部清偿，附回单。")
    page.set_input_files("#files", str(notes))
    expect(page.locator("#files-error")).to_contain_text("notes.txt")
    page.click("#file-form button[type=submit]")
    expect(page).to_have_url(re.compile(r".*/portal/cases/[^/]*$"))  # not sent
    liar = tmp_path / "回单.pdf"
    liar.write_bytes(picture_bytes("PNG"))
    page.set_input_files("#files", str(liar))
    expect(page.locator("#files-error")).to_be_hidden()
    page.click("#file-form button[type=submit]")
    expect(page.locator("#files-error")).to_contain_text("回单.pdf")
    expect(page.locator("#statement")).to_have_value("已于 3 月 1 日通过银行转账全部清偿，附回单。")
    assert [e for e in watch.console_errors if not WRONG_STATUS.search(e)] == []
    watch.console_errors.clear()
    screenshot(page, f"portal-refused-file-phone-{lang}")

    receipt, photo = tmp_path / "银行回单.pdf", tmp_path / "转账截图.png"
    receipt.write_bytes(pdf_bytes())
    photo.write_bytes(picture_bytes("PNG", size=(300, 200)))
    page.check("input[name=ground][value=paid_in_full]")
    page.set_input_files("#files", [str(receipt), str(photo)])
    page.click("#file-form button[type=submit]")
    page.wait_for_url(re.compile(r".*\?filed=\d+.*"))
    request = page.locator("#case-requests article.request").first
    expect(request).to_have_attribute("data-state", "submitted")
    expect(request.locator(".proofs")).to_contain_text("银行回单.pdf")
    expect(request.locator(".proofs")).to_contain_text("转账截图.png")
    check_page(page, watch, court, lang, "portal-filed-phone")
    page.set_viewport_size({"width": 1280, "height": 900})  # the same page on a desk screen
    expect(request).to_be_visible()
    check_page(page, watch, court, lang, "portal-filed-desk")
    page.set_viewport_size(PHONE)

    # The judge approves; the page follows without a reload until every seal has signed its disarm.
    page.evaluate("document.body.dataset.marker = 'no reload'")
    judge_approves(court)
    expect(request).to_have_attribute("data-state", "disarmed", timeout=30000)
    expect(request.locator(f"[data-device='{SEAL}']")).to_have_attribute("data-status", "pending")  # nor its answer
    # While the case is being lifted the debtor is not told whether the seal stands disarmed (the officer has not
    # come yet), as the notice's public page does not: the status part, swapped live, says so instead.
    expect(page.locator(f"#case-status [data-device='{SEAL}']")).to_have_attribute("data-armed", "hidden")
    expect(page.locator("#case-status [data-case-status=lifting]")).to_be_visible()
    expect(page.locator("#armed-hidden")).to_be_visible()
    assert page.evaluate("document.body.dataset.marker") == "no reload"
    check_page(page, watch, court, lang, "portal-disarmed-phone")

    page.goto(f"{court.url}/inbox")
    expect(page.locator(".message").first).to_be_visible()
    check_page(page, watch, court, lang, "portal-inbox-phone")
    page.click("header form[action='/portal/logout'] button")
    page.wait_for_url(re.compile(r".*/portal\?bye=1$"))
    check_page(page, watch, court, lang, "portal-signed-out-phone")


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_the_creditor_sees_only_their_case_a_live_alarm_without_its_picture_and_adds_a_view(
    lang: str, court: CourtProcess, seal: InstalledSeal, signed_in: SignIn
) -> None:
    add_user(court.session_factory, "other-creditor", Role.CREDITOR, (OTHER_CASE,))
    with httpx.Client(base_url=court.url, timeout=10) as api:  # the debtor files through the API
        token = api.post("/api/auth/login", json={"username": "debtor", "password": PASSWORD}).json()["access_token"]
        filed = api.post(
            f"/api/cases/{CASE}/removal-requests",
            data={"ground": "settlement", "statement": "已与申请执行人达成和解。"},
            files=[("files", ("和解协议.pdf", pdf_bytes(), "application/pdf"))],
            headers={"Authorization": f"Bearer {token}"},
        )
        assert filed.status_code == 201, filed.text
    page, watch = signed_in("creditor", lang=lang, viewport=(390, 844))
    page.click("header a[href='/creditor']")
    cards = page.locator(".case-card")
    expect(cards).to_have_count(1)
    expect(cards.first).to_contain_text(CASE)
    check_page(page, watch, court, lang, "creditor-home-phone")
    cards.first.locator("a.button").click()
    expect(page.locator("h1")).to_have_text(CASE)
    assert page.request.get(f"{court.url}/creditor/cases/{OTHER_CASE}").status == 404

    seal.walk_in()
    alarm = page.locator("#case-alarms [data-kind=intrusion]")
    expect(alarm).to_be_visible(timeout=20000)
    expect(page.locator("#alert-banner")).to_be_visible()
    expect(page.locator("main img")).to_have_count(0)  # pictures stay with the court
    request = page.locator("#case-requests article.request").first
    expect(request).to_contain_text("已与申请执行人达成和解。")
    expect(request.locator(".proofs")).to_contain_text("和解协议.pdf")
    expect(request.locator(".window")).to_be_visible()
    check_page(page, watch, court, lang, "creditor-case-phone")

    page.fill("#view-text", "和解款项已全部收到，同意解除查封。")
    page.click("#view-form button[type=submit]")
    page.wait_for_url(re.compile(r".*\?added=\d+.*"))
    expect(page.locator("#case-requests .views")).to_contain_text("和解款项已全部收到，同意解除查封。")
    check_page(page, watch, court, lang, "creditor-view-added-phone")


def double_click(page: Page, button: Locator) -> None:
    """A person's double click on ``button``: the second click 150 ms after the first, whose post is on its way."""
    button.scroll_into_view_if_needed()
    box = button.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.click(x, y)
    page.wait_for_timeout(150)
    page.mouse.click(x, y)


def test_a_double_click_files_a_request_once_and_withdraws_it_once(
    court: CourtProcess, seal: InstalledSeal, signed_in: SignIn, tmp_path: Path
) -> None:
    """The portal's forms are posted once however their button is clicked twice (data-send-once, as the password
    form is): a second withdrawal would find the request withdrawn already and answer 409 over the withdrawal that
    was made, a second filing would find one open. The posts are held until both clicks are in, as a slow network
    would hold them."""
    page, watch = signed_in("debtor")
    page.goto(f"{court.url}/portal/cases/{quote(CASE, safe='')}")
    held: list[Route] = []
    posts = re.compile(r".*/portal/(cases/[^/]+/requests|requests/\d+/cancel)$")
    page.route(posts, lambda route: held.append(route) if route.request.method == "POST" else route.continue_())

    receipt = tmp_path / "银行回单.pdf"
    receipt.write_bytes(pdf_bytes())
    page.check("input[name=ground][value=paid_in_full]")
    page.fill("#statement", "已于 3 月 1 日通过银行转账全部清偿，附回单。")
    page.set_input_files("#files", str(receipt))
    double_click(page, page.locator("#file-form button[type=submit]"))
    held_posts(page, held, 1)
    held[0].continue_()
    page.wait_for_url(re.compile(r".*\?filed=\d+.*"))

    request = page.locator("#case-requests article.request").first
    request.locator("form.cancel summary").click()
    request.locator("form.cancel textarea[name=note]").fill("已与申请执行人另行协商")
    double_click(page, request.locator("form.cancel button[type=submit]"))
    held_posts(page, held, 2)
    held[1].continue_()
    expect(page.locator("#case-requests article.request").first).to_have_attribute("data-state", "cancelled")
    with court.session_factory() as session:
        actions = session.execute(
            select(AuditEntry.action, func.count())
            .where(AuditEntry.actor == "debtor", AuditEntry.action.like("removal.%"))
            .group_by(AuditEntry.action)
        ).all()
    assert dict(actions) == {"removal.file": 1, "removal.cancel": 1}
    assert watch.console_errors == [] and watch.page_errors == [], (watch.console_errors, watch.page_errors)
