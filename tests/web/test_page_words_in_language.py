"""A page in one language says everything in it: the zone of its times, a removal ground's article, the notes the
server writes on a request's history, the messages of the inbox — never the other language beside it, never a time
without its zone. Pages rendered over HTTP in zh-CN and en."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import select

from server.core.base import utc_now
from server.core.court_clock import court_clock
from server.core.db import session_scope
from server.removal.disarm import settle
from server.removal.models import RemovalRequest, RemovalStep
from tests.web.conftest import CASE, SEAL, PagesWorld
from tests.web.portal_world import Portal, make_portal, q

ZONE = {"zh-CN": "时间均为北京时间（UTC+8）", "en": "All times are China Standard Time (UTC+8)"}


@pytest.fixture
def portal(world: PagesWorld) -> Portal:
    return make_portal(world)


def text_of(page: str) -> str:
    """The page's text, tags dropped, white space as one space."""
    page = re.sub(r"<(script|style)[^>]*>.*?</\1>", "", page, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def test_every_page_says_its_times_are_beijing_time_in_its_language(portal: Portal) -> None:
    world = portal.world
    portal.file()
    pages = ["/", f"/cases/{q(CASE)}", f"/cases/{q(CASE)}/timeline", f"/seals/{SEAL}", "/inbox", "/audit"]
    for lang, other in (("zh-CN", "en"), ("en", "zh-CN")):
        with world.client("clerk") as client:
            client.cookies.set("seal_lang", lang)
            for path in pages:
                page = client.get(path)
                assert page.status_code == 200, path
                assert ZONE[lang] in text_of(page.text) and ZONE[other] not in text_of(page.text), (lang, path)
        with portal.code_client() as client:
            client.cookies.set("seal_lang", lang)
            for path in (f"/portal/cases/{q(CASE)}", "/inbox", "/portal"):
                page = client.get(path, follow_redirects=True)
                assert page.status_code == 200, path
                assert ZONE[lang] in text_of(page.text) and ZONE[other] not in text_of(page.text), (lang, path)
        with world.client() as client:  # signed out: the sign-in pages too
            client.cookies.set("seal_lang", lang)
            for path in ("/login", "/portal"):
                assert ZONE[lang] in text_of(client.get(path).text), (lang, path)


def test_the_case_page_cites_the_ground_s_article_in_its_language(portal: Portal) -> None:
    portal.file()
    with portal.world.client("judge") as client:
        client.cookies.set("seal_lang", "en")
        page = text_of(client.get(f"/cases/{q(CASE)}").text)
        assert "The debt has been paid in full" in page and "Provisions on seizure, Art. 28 (4)" in page
        assert "第二十八条" not in page
        client.cookies.set("seal_lang", "zh-CN")
        page = text_of(client.get(f"/cases/{q(CASE)}").text)
        assert "债务已经清偿" in page and "查封规定第二十八条第（四）项" in page and "Art. 28" not in page


def test_the_server_s_notes_on_a_request_read_in_the_page_s_language(portal: Portal) -> None:
    request_id = portal.file()
    commands = portal.approve(request_id)
    portal.acknowledge(commands[SEAL])
    with session_scope(portal.world.session_factory) as session:  # as the settler would
        assert settle(session, request_id=request_id, now=utc_now())
    english = (
        "the signed disarm was issued to 1 seal(s)",
        "each seal acknowledged the disarm with its signed command_ack",
    )
    chinese = ("已向 1 个电子封条发出解除布防指令", "各电子封条均已以签名应答确认解除布防")
    with portal.world.client("judge") as client:
        client.cookies.set("seal_lang", "en")
        page = text_of(client.get(f"/cases/{q(CASE)}").text)
        assert all(said in page for said in english) and not any(said in page for said in chinese), page
        client.cookies.set("seal_lang", "zh-CN")
        page = text_of(client.get(f"/cases/{q(CASE)}").text)
        assert all(said in page for said in chinese) and not any(said in page for said in english), page
    with portal.code_client() as client:  # the debtor: no seal named, in its own language too
        client.cookies.set("seal_lang", "en")
        page = text_of(client.get(f"/portal/cases/{q(CASE)}").text)
        assert english[0] in page and "The court is processing" in page
        assert chinese[0] not in page and "法院处理中" not in page
        client.cookies.set("seal_lang", "zh-CN")
        page = text_of(client.get(f"/portal/cases/{q(CASE)}").text)
        assert chinese[0] in page and "法院处理中" in page
        assert english[0] not in page and "The court is processing" not in page


def test_a_note_stored_before_the_notes_had_keys_reads_as_stored(portal: Portal) -> None:
    """A step stored with the note written out in both languages (before the notes were stored as keys) reads as it
    was stored; one stored English only, with its Chinese before it."""
    request_id = portal.file()
    portal.approve(request_id)
    with session_scope(portal.world.session_factory) as session:
        steps = list(session.scalars(select(RemovalStep).where(RemovalStep.request_id == request_id)))
        issued = next(s for s in steps if s.action == "issue_disarm")
        issued.note, issued.note_said = (
            "已向 3 个电子封条发出解除布防指令 / the signed disarm was issued to 3 seal(s)",
            None,
        )
    with portal.world.client("judge") as client:
        client.cookies.set("seal_lang", "en")
        page = text_of(client.get(f"/cases/{q(CASE)}").text)
        assert "已向 3 个电子封条发出解除布防指令 / the signed disarm was issued to 3 seal(s)" in page
    with session_scope(portal.world.session_factory) as session:
        session.get(RemovalStep, issued.id).note = "disarm sent to 3 seal(s)"  # type: ignore[union-attr]
    with portal.world.client("judge") as client:
        page = text_of(client.get(f"/cases/{q(CASE)}").text)
        assert "已向电子封条发出解除布防指令 / disarm sent to 3 seal(s)" in page


def test_the_inbox_says_the_ground_and_the_creditor_s_period_in_its_language(portal: Portal) -> None:
    request_id = portal.file()
    with portal.world.session_factory() as session:
        due = session.scalars(select(RemovalRequest.views_due_at).where(RemovalRequest.id == request_id)).one()
    assert due > utc_now()
    when = court_clock(due, seconds=False)
    for who in ("creditor", "judge", "debtor"):
        with portal.world.client(who) as client:
            client.cookies.set("seal_lang", "en")
            page = text_of(client.get("/inbox").text)
            assert "(ground: The debt has been paid in full)" in page and "债务已经清偿" not in page, page
            assert (
                f"The creditor may give a written view before the judge decides and no later than {when} "
                "(China Standard Time, UTC+8)" in page
            ), page
            client.cookies.set("seal_lang", "zh-CN")
            page = text_of(client.get("/inbox").text)
            assert "理由：债务已经清偿。" in page and "The debt has been paid" not in page, page
            assert f"申请执行人可在法官作出决定前、且不晚于 {when}（北京时间）提出书面意见" in page, page
