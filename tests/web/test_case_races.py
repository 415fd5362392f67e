"""The case page when a form's answer and the live stream's update of the same part cross: each form publishes its
change on the live bus before it answers, so the stream's update (``hx-swap-oob``) may be swapped in before the
click's own answer arrives. Here that order is forced — the answer is held back in the browser (``page.route``)
until the stream has replaced the part — and the page must still have its fields, with what was typed in them."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

from playwright.sync_api import APIResponse, Page, Route, expect

from seal_dev.court_process import CourtProcess
from server.alarms.book import AlarmBook
from server.alarms.state import AlarmKind
from server.auth.users import get_user
from server.config import RemovalSettings
from server.core.base import utc_now
from server.core.db import session_scope
from server.removal.grounds import RemovalGround
from server.removal.proofs import ProofStore
from server.removal.service import file_request
from server.seals.registry import register_seal
from tests.server.helpers import SimulatedSeal
from tests.web.conftest import CASE, PLACE, SEAL, SignIn

CASE_PATH = f"/cases/{quote(CASE, safe='')}"
REASONS = "被执行人已履行全部义务，准予解除查封。"


class HeldAnswer:
    """The answer to the first request matching a route, fetched from the server at once (so the server commits
    and publishes), but given to the page only when :meth:`release` is called."""

    def __init__(self) -> None:
        self.route: Route | None = None
        self.response: APIResponse | None = None

    def __call__(self, route: Route) -> None:
        if self.route is not None:
            route.continue_()
            return
        self.route = route
        self.response = route.fetch()

    def release(self, page: Page) -> None:
        """Give the page its answer and wait until htmx has handled it (``loadend`` follows the handler htmx sets
        as ``onload``; htmx's own events may not reach the document when the form was replaced meanwhile).

        The live stream's update may come while the handler still waits for the server's answer (the server
        publishes before it answers): the handler runs only while the test waits in Playwright, so wait here."""
        for _ in range(600):  # 30 s
            if self.response is not None:
                break
            page.wait_for_timeout(50)
        assert self.route is not None and self.response is not None, "the request was not made"
        self.route.fulfill(response=self.response)
        page.wait_for_function("() => window.answersHandled === 1", timeout=20000)


COUNT_ANSWERS = """() => {
  const send = XMLHttpRequest.prototype.send;
  window.answersHandled = 0;
  XMLHttpRequest.prototype.send = function (...args) {
    this.addEventListener("loadend", () => { window.answersHandled += 1; });
    return send.apply(this, args);
  };
}"""


def install_seal(court: CourtProcess) -> None:
    """A seal of the case, registered and never started: no seal's answer is needed here."""
    with session_scope(court.session_factory) as session:
        key = SimulatedSeal(SEAL, CASE).public_key
        register_seal(session, actor=None, device_id=SEAL, case_no=CASE, public_key=key, location=PLACE)


def file_removal(court: CourtProcess) -> None:
    install_seal(court)
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


def open_intrusion_alarm(court: CourtProcess) -> None:
    """An open intrusion alarm of the seal, as the ingest raises it."""
    install_seal(court)
    with session_scope(court.session_factory) as session:
        book = AlarmBook(session, fold_window=timedelta(minutes=5))
        book.raise_alarm(AlarmKind.INTRUSION, device_id=SEAL, case_no=CASE, at=utc_now(), details={})


def open_case(signed_in: SignIn, court: CourtProcess, lang: str = "zh-CN") -> Page:
    page, _watch = signed_in("judge", lang=lang)
    page.goto(f"{court.url}{CASE_PATH}")
    expect(page.locator("body")).to_have_attribute("data-live", "up", timeout=20000)
    page.evaluate(COUNT_ANSWERS)
    return page


def test_the_live_update_before_the_clicks_answer_keeps_the_form_and_what_was_typed(
    court: CourtProcess, signed_in: SignIn
) -> None:
    file_removal(court)
    page = open_case(signed_in, court)
    held = HeldAnswer()
    page.route("**/removal/*/review", held)
    request = page.locator("#case-removal article.request")
    request.locator("button[data-act=review]").click()
    # The answer is held: only the live stream can have brought the new state (and the new field).
    expect(request).to_have_attribute("data-state", "under_review", timeout=20000)
    reasons = request.locator("form.decide textarea[name=reasons]")
    reasons.fill(REASONS)
    held.release(page)  # the click's answer arrives after the stream's update of the same part
    expect(request).to_have_attribute("data-state", "under_review")
    expect(reasons).to_have_value(REASONS, timeout=20000)
    assert page.locator("textarea[name=reasons]").count() == 1
    assert page.locator("#--htmx-preserve-pantry--").count() == 0
    request.locator("button[data-act=approve]").click()  # the form is whole: its reasons go with it
    expect(request.locator(f"tr[data-device='{SEAL}']")).to_be_visible(timeout=20000)
    expect(request).to_contain_text(REASONS)


def test_an_alarms_close_note_survives_the_acks_answer_coming_after_the_live_update(
    court: CourtProcess, signed_in: SignIn
) -> None:
    open_intrusion_alarm(court)
    page = open_case(signed_in, court, lang="en")
    alarm = page.locator("#case-alarms [data-kind=intrusion]")
    expect(alarm).to_have_attribute("data-state", "open")
    alarm.locator("input[name=note]").first.fill("Officer on the way")  # the ack note (the close note is second)
    held = HeldAnswer()
    page.route("**/alarms/*/ack", held)
    alarm.get_by_role("button", name="Acknowledge").click()
    expect(alarm).to_have_attribute("data-state", "acknowledged", timeout=20000)  # the stream's update
    note = alarm.locator("input[name=note]")
    note.fill("False alarm: the cleaner")
    held.release(page)
    expect(note).to_have_value("False alarm: the cleaner", timeout=20000)
    expect(alarm).to_contain_text("Officer on the way")
    alarm.get_by_role("button", name="Close").click()
    expect(alarm).to_have_attribute("data-state", "closed")
    expect(alarm).to_contain_text("False alarm: the cleaner")
