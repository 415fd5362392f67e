"""A page whose user loses what it shows — taken off the case, the seal moved to a case they do not see — is told
so by its live stream (``gap``: ``access``, the stream ends; the browser reloads and the page refuses), instead of
going quiet while it still shows what it showed. A stream opened for a case that is not the user's says the same,
whether the case exists or not."""

from __future__ import annotations

import threading
from urllib.parse import quote

import pytest

from server.config import WebSettings
from tests.agent.helpers import wait_until
from tests.web.conftest import CASE, OTHER_CASE, SEAL, PagesWorld
from tests.web.test_live_stream import events, live_url_of

API = {"X-Requested-With": "XMLHttpRequest"}


@pytest.fixture
def web_settings() -> WebSettings:
    return WebSettings(heartbeat_s=0.3, stream_max_s=5)


def _read_while(world: PagesWorld, client: object, url: str, then: object) -> list[dict[str, str]]:
    """The messages of ``client``'s stream at ``url``, while ``then()`` runs once the stream has subscribed."""
    text: list[str] = []
    reader = threading.Thread(target=lambda: text.append(client.get(url).text))  # type: ignore[attr-defined]
    reader.start()
    assert wait_until(lambda: world.hub.subscribers >= 1, 10)
    then()  # type: ignore[operator]
    reader.join(30)
    assert text, "the stream did not end"
    return events(text[0])


def test_a_judge_taken_off_the_case_is_told_to_reload(world: PagesWorld) -> None:
    case = quote(CASE, safe="")
    with world.client("clerk") as clerk, world.client("judge") as judge:
        page = judge.get(f"/cases/{case}")
        assert page.status_code == 200
        messages = _read_while(
            world,
            judge,
            live_url_of(page.text),
            lambda: clerk.delete(f"/api/cases/{case}/assignments/judge", headers=API),
        )
        assert messages[-1] == {"event": "gap", "data": "access"}, messages
        assert judge.get(f"/cases/{case}").status_code == 404  # what the reload shows


def test_a_seal_moved_to_a_case_the_user_does_not_see_ends_its_page_stream(world: PagesWorld) -> None:
    with world.client("clerk") as clerk, world.client("judge") as judge:
        page = judge.get(f"/seals/{SEAL}")
        assert page.status_code == 200

        def move() -> None:
            assert clerk.delete(f"/api/seals/{SEAL}/binding", headers=API).status_code == 204
            body = {"case_no": OTHER_CASE, "location": "B"}
            assert clerk.put(f"/api/seals/{SEAL}/binding", json=body, headers=API).status_code == 200

        messages = _read_while(world, judge, live_url_of(page.text), move)
        assert messages[-1] == {"event": "gap", "data": "access"}, messages


def test_a_stream_for_a_case_not_the_users_says_the_same_whether_it_exists_or_not(world: PagesWorld) -> None:
    with world.client("judge") as judge:
        answers = [
            events(judge.get(f"/live?view=case&case_no={quote(case_no, safe='')}").text)
            for case_no in (OTHER_CASE, "(2099)苏0214执9999号")
        ]
    assert answers[0] == answers[1] == [{"event": "gap", "data": "access"}]
