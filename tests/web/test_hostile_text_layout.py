"""Text a seal signed or a debtor wrote, in Chromium: an unbroken string as long as a payload allows does not widen the
judge's pages (on a desk screen or a phone), and a right-to-left override in it does not reorder the page's own words
around it. The pages are the app's answers (TestClient) handed to Chromium by a route: no server process."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

import pytest
from playwright.sync_api import Browser, Route

from seal_protocol import EventType
from tests.server.helpers import jpeg_bytes
from tests.web.conftest import CASE, SEAL, PagesWorld, csrf_of

LONG = "A" * 3000
LONG_NAME = "B" * 251 + ".jpg"  # a proof's file name at the length a file system allows
OVERRIDE = "\u202eNIM 5 DEYALED"  # reads "DELAYED 5 MIN" once reversed


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_long_and_reordering_text_stays_in_its_place(world: PagesWorld, browser: Browser) -> None:
    seal = world.seal
    world.ingest((seal.event_topic, seal.event(EventType.AGENT_STARTED, {"agent_version": LONG, "outbox_depth": 0})))
    payload = {"armed": True, "warning": "C" * 80, "reason": OVERRIDE}
    world.ingest((seal.event_topic, seal.event(EventType.TAMPER, payload)))
    case = quote(CASE, safe="")
    with world.client("debtor") as debtor:
        token = csrf_of(debtor.get(f"/portal/cases/{case}").text)
        filed = debtor.post(
            f"/portal/cases/{case}/requests",
            data={"ground": "paid_in_full", "statement": f"paid {OVERRIDE} on 1 May", "csrf_token": token},
            files=[("files", (LONG_NAME, jpeg_bytes(width=64, height=48), "image/jpeg"))],
        )
        assert filed.status_code in (200, 303), filed.text
    with world.client("judge") as judge:

        def answer(route: Route) -> None:
            url = urlsplit(route.request.url)
            if url.path.startswith("/live"):
                route.abort()
                return
            response = judge.get(url.path + (f"?{url.query}" if url.query else ""))
            route.fulfill(status=response.status_code, headers=dict(response.headers), body=response.content)

        for width in (1440, 390):
            context = browser.new_context(viewport={"width": width, "height": 900})
            try:
                page = context.new_page()
                page.route("**/*", answer)
                for path in (f"/seals/{SEAL}", f"/cases/{case}"):
                    page.goto(f"http://court.test{path}")
                    wide = page.evaluate("() => document.documentElement.scrollWidth")
                    assert wide <= width, (path, width, wide)
                # The override reorders only its own element: the words before it stay before it.
                statement = page.get_by_text("paid", exact=False).first
                box = statement.bounding_box()
                assert box is not None and box["width"] <= width
                assert page.evaluate(
                    "() => [...document.querySelectorAll('dd, .text')].every("
                    "e => getComputedStyle(e).unicodeBidi === 'isolate')"
                )
            finally:
                context.close()
