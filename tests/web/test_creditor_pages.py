"""The creditor's view in-process (no browser): only their case, its alarms without pictures, its removal requests
with the debtor's ground, statement and proofs, a written view while the window is open (refusals beside the
field), the window shown; live alarms; the CSRF rule; the words of every state of the workflow."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from seal_protocol import EventType
from server.core.base import utc_now
from server.core.court_clock import court_clock
from server.core.db import session_scope
from server.core.live import Change
from server.removal.disarm import SealStatus
from server.removal.grounds import RemovalGround
from server.removal.models import RemovalRequest, RemovalView
from server.removal.state import RemovalAction, RemovalState
from server.seals.models import CaseStatus
from server.web.i18n import Translator
from server.web.templating import environment
from tests.web.conftest import CASE, OTHER_CASE, SEAL, PagesWorld, csrf_of
from tests.web.portal_world import OTHER_SEAL, Portal, make_portal, q
from tests.web.test_live_stream import events
from tests.web.test_portal_pages import field_error, in_chinese


@pytest.fixture
def portal(world: PagesWorld) -> Portal:
    return make_portal(world)


def test_the_creditor_sees_their_case_its_alarms_without_pictures_and_its_request(portal: Portal) -> None:
    request_id = portal.file()
    with portal.world.client("creditor") as client:
        home = client.get("/creditor")
        assert home.status_code == 200 and CASE in home.text and OTHER_CASE not in home.text
        assert "未关闭的告警 1 条" in home.text and "可提出书面意见" in home.text
        page = client.get(f"/creditor/cases/{q(CASE)}")
        assert page.status_code == 200
        text = page.text
        assert f'id="alarm-{portal.world.alarm_id}"' in text and 'data-kind="intrusion"' in text
        assert "/api/snapshots/" not in text and "<img" not in text and portal.world.snapshot not in text
        assert 'name="note"' not in text  # acknowledging is the court's
        assert f'id="request-{request_id}"' in text and "债务已经清偿" in text and "已全部清偿。" in text
        assert "可在法官作出决定前、且不晚于" in text and "提出书面意见" in text  # the window
        assert f'action="/creditor/requests/{request_id}/views"' in text
        assert f'data-device="{SEAL}"' in text and "view=creditor_case" in text


def test_a_creditor_adds_a_view_while_allowed_and_each_refusal_shows_beside_the_field(portal: Portal) -> None:
    request_id = portal.file()
    url = f"/creditor/requests/{request_id}/views"
    with portal.world.client("creditor") as client:
        token = csrf_of(client.get(f"/creditor/cases/{q(CASE)}").text)
        assert client.post(url, data={"text": "同意"}).status_code == 403  # no proof: refused
        empty = client.post(url, data={"text": "  ", "csrf_token": token})
        assert empty.status_code == 422 and field_error(empty.text, "view") == "请填写意见"
        added = client.post(url, data={"text": "款项已收到，同意解除查封。", "csrf_token": token})
        assert added.status_code == 303 and added.headers["location"].endswith(f"#request-{request_id}")
        page = client.get(added.headers["location"]).text
        assert "您的意见已提交" in page and "款项已收到，同意解除查封。" in page
        with session_scope(portal.world.session_factory) as session:
            request = session.get(RemovalRequest, request_id)
            assert request is not None
            request.views_due_at = due = utc_now() - timedelta(seconds=1)
        page = client.get(f"/creditor/cases/{q(CASE)}").text
        assert 'id="view-form"' not in page and "提出意见的期限已于" in page
        late = client.post(url, data={"text": "补充意见", "csrf_token": token})
        assert late.status_code == 409 and "提出意见的期限已于" in in_chinese(field_error(late.text, "view"))
        assert court_clock(due) in field_error(late.text, "view")  # the court's time, not UTC
        assert "补充意见" in late.text  # what was written stays
    with portal.world.session_factory() as session:
        views = session.scalars(select(RemovalView.text).where(RemovalView.request_id == request_id)).all()
    assert views == ["款项已收到，同意解除查封。"]


def test_a_creditor_sees_only_their_case(portal: Portal) -> None:
    with portal.world.client("creditor") as client:
        token = csrf_of(client.get("/creditor").text)
        assert client.get(f"/creditor/cases/{q(OTHER_CASE)}").status_code == 404
        view = client.post(f"/creditor/requests/{portal.other_request}/views", data={"text": "x", "csrf_token": token})
        assert view.status_code == 404
        since = portal.world.hub.position
        portal.world.hub.publish([])
        stream = events(client.get(f"/live?view=creditor_case&case_no={q(OTHER_CASE)}&since={since}").text)
        assert all(OTHER_SEAL not in m.get("data", "") for m in stream)
        assert client.get("/portal").status_code == 403
    for username in ("judge", "debtor", "clerk"):  # the creditor's pages are the creditor's
        with portal.world.client(username) as client:
            assert client.get("/creditor").status_code == 403
            assert client.get(f"/creditor/cases/{q(CASE)}").status_code == 403
    with portal.world.client("other-creditor") as client:
        home = client.get("/creditor").text
        assert OTHER_CASE in home and CASE not in home


def test_a_new_alarm_and_a_new_state_reach_the_creditor_s_page_live(portal: Portal) -> None:
    world = portal.world
    with world.client("creditor") as client:
        since = world.hub.position
        world.ingest((world.seal.event_topic, world.seal.event(EventType.TAMPER, {"armed": True, "warning": "played"})))
        request_id = portal.file()
        world.hub.publish([Change("removal", case_no=CASE)])  # as the page or the API filing it does
        [update] = [
            m
            for m in events(client.get(f"/live?view=creditor_case&case_no={q(CASE)}&since={since}").text)
            if m["event"] == "update"
        ]
        data = update["data"]
        assert (
            '<ul id="case-alarms" class="alarms" hx-swap-oob="true">' in data
            and 'data-kind="tamper"' in data
            and "<img" not in data
        )
        assert f'id="request-{request_id}"' in data
        assert 'id="view-form"' not in data  # the view being written is never replaced


def test_every_value_of_the_workflow_has_words_in_both_languages() -> None:
    words = environment().get_template("portal/_words.html")
    for language in ("zh-CN", "en"):
        t = Translator(language)
        module = words.make_module({"t": t, "lang": language})
        said = [
            *(module.case_status(s.value) for s in CaseStatus),  # type: ignore[attr-defined]
            *(module.request_state(s.value) for s in RemovalState),  # type: ignore[attr-defined]
            *(module.next_step(s.value) for s in RemovalState),  # type: ignore[attr-defined]
            *(module.seal_status(s.value) for s in SealStatus),  # type: ignore[attr-defined]
            *(module.action(a) for a in [*(a.value for a in RemovalAction), "file"]),  # type: ignore[attr-defined]
            *(module.ground(g) for g in RemovalGround),  # type: ignore[attr-defined]
        ]
        values = {s.value for s in CaseStatus} | {s.value for s in RemovalState} | {a.value for a in RemovalAction}
        articles = [str(module.article(g)) for g in RemovalGround]  # type: ignore[attr-defined]
        if language == "en":
            assert all(re.fullmatch(r"Provisions on seizure, Art\. 28 \([12456]\)", a) for a in articles), articles
        else:
            assert all(a.startswith("查封规定第二十八条") for a in articles), articles
        wrong = [text for text in map(str, said) if not text.strip() or "⟦" in text or text.strip() in values]
        assert wrong == [], language
