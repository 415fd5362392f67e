"""The debtor's portal in-process (no browser): from the notice's page to the form, signing in with the access code
(the API's throttle), the case and its seals, filing with proof files (each refusal beside its field, never a
500), following the request to ``disarmed`` (settled on read, and live), withdrawing it, the inbox, signing out —
and only the debtor's own case, with the CSRF rule on every form."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from seal_protocol import EventType
from server.audit.models import AuditEntry
from server.core.base import utc_now
from server.core.db import session_scope
from server.core.live import Change
from server.notices.service import issue_notice
from server.removal.models import RemovalRequest
from server.removal.settler import RemovalSettler
from server.removal.steps import get_request
from tests.server.removal_world import pdf_bytes, picture_bytes
from tests.web.conftest import CASE, OTHER_CASE, SEAL, PagesWorld, csrf_of
from tests.web.portal_world import HTMX, OTHER_SEAL, Portal, make_portal, q
from tests.web.test_live_stream import events, live_url_of


@pytest.fixture
def portal(world: PagesWorld) -> Portal:
    return make_portal(world)


def field_error(html: str, field: str) -> str:
    """The text of the error shown beside ``field`` (``<p class="field-error" id="<field>-error">``)."""
    start = html.index(f'id="{field}-error"')
    return html[html.index(">", start) + 1 : html.index("</p>", start)]


#: Latin words a reason in Chinese may hold: the names of the files the debtor chose, and their types.
_LATIN_ALLOWED = re.compile(r"[\w.-]*\.(?:pdf|png|jpe?g|txt|hta)\b|\b(?:PDF|JPEG|PNG|MB|KB)\b")


def in_chinese(reason: str) -> str:
    """``reason`` (a refusal as the page shows it), checked to be said in Chinese to the member of the public who
    reads it: no English sentence, no internal name (``disarm_pending``, ``cancel``), no time in UTC (``…Z``)."""
    text = html.unescape(reason)
    rest = _LATIN_ALLOWED.sub("", text)
    assert re.search(r"[\u4e00-\u9fff]", rest) and not re.search(r"[A-Za-z]", rest), text
    return text


def shown_error(page: str) -> str:
    """The message of an error page (``<p class="flash error">``)."""
    found = re.search(r'<p class="flash error" role="alert"[^>]*>(.*?)</p>', page, re.S)
    assert found is not None, page[:500]
    return found.group(1)


def test_the_notice_leads_to_the_form_filled_in_and_the_code_signs_in(portal: Portal) -> None:
    world = portal.world
    with world.client() as client:
        with session_scope(world.session_factory) as session:
            key = client.app.state.context.notice_key.get()  # type: ignore[attr-defined]
            token = issue_notice(
                session, actor=None, device_id=SEAL, key=key, default_validity=timedelta(days=30), now=utc_now()
            ).token
        notice = client.get(f"/notice/{token}")
        link = f"/portal?case_no={q(CASE)}"
        assert notice.status_code == 200 and f'href="{link}"' in notice.text
        form = client.get(link)
        assert form.status_code == 200 and f'name="case_no" value="{CASE}"' in form.text
        assert "seal_csrf" in form.headers["set-cookie"]  # the form's token is bound to a pre-session cookie
        data = {"case_no": f"  {CASE} ", "code": portal.code.lower().replace("-", ""), "csrf_token": csrf_of(form.text)}
        signed_in = client.post("/portal/login", data=data)
        assert (signed_in.status_code, signed_in.headers["location"]) == (303, f"/portal/cases/{q(CASE)}")
        page = client.get(signed_in.headers["location"])
        assert page.status_code == 200 and CASE in page.text and "查封中" in page.text
        assert f'data-device="{SEAL}" data-armed="unknown"' in page.text  # no signed event said armed or not yet
        assert 'name="ground"' in page.text and "最多 5 个文件，每个不超过 10 MB" in page.text  # the limits, before
        assert "/account/password" not in page.text  # the code's account has no password to change
        assert f'action="/portal/cases/{q(CASE)}/requests"' in page.text


def test_a_wrong_code_is_said_beside_its_field_and_throttled_with_the_api(portal: Portal) -> None:
    with portal.world.client() as client:
        token = csrf_of(client.get("/portal").text)
        empty = client.post("/portal/login", data={"case_no": "", "code": "", "csrf_token": token})
        assert empty.status_code == 422 and field_error(empty.text, "case_no") == "请输入案号"
        api = client.post("/api/auth/access-code", json={"case_no": CASE, "code": "WRONG-CODE-0000-0000"})
        assert api.status_code == 401
        wrong = {"case_no": CASE, "code": "WRONG-CODE-0000-0000", "csrf_token": token}
        answers = [client.post("/portal/login", data=wrong) for _ in range(2)]
        assert [a.status_code for a in answers] == [401, 401]
        assert field_error(answers[0].text, "code") == "案号或查询码不正确" and CASE in answers[0].text
        refused = client.post("/portal/login", data={**wrong, "code": portal.code})  # the API's failure counted
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert "秒后再试" in field_error(refused.text, "code") and "seal_session" not in client.cookies
        forged = client.post("/portal/login", data={"case_no": CASE, "code": portal.code})
        assert forged.status_code == 403  # no form token, no htmx header
    with portal.world.session_factory() as session:
        failed = session.scalars(select(AuditEntry).where(AuditEntry.action == "login.failed")).all()
    assert len(failed) == 3 and all(entry.target == f"case:{CASE}" for entry in failed)


def test_the_debtor_files_with_proofs_and_each_refusal_is_shown_beside_its_field(portal: Portal) -> None:
    url = f"/portal/cases/{q(CASE)}/requests"
    with portal.code_client() as client:
        token = csrf_of(client.get(f"/portal/cases/{q(CASE)}").text)
        base = {"csrf_token": token, "ground": "paid_in_full", "statement": "已于 3 月 1 日全部清偿。"}
        receipt = ("files", ("回单.pdf", pdf_bytes(), "application/pdf"))
        no_ground = client.post(url, data={**base, "ground": ""}, files=[receipt])
        assert no_ground.status_code == 422 and field_error(no_ground.text, "ground") == "请选择申请理由"
        assert "已于 3 月 1 日全部清偿。" in no_ground.text  # what was written stays
        lie = client.post(url, data=base, files=[("files", ("回单.pdf", picture_bytes("PNG"), "application/pdf"))])
        assert lie.status_code == 422 and "证明材料未通过检查" in field_error(lie.text, "files")
        assert "扩展名是 .pdf，内容却是 PNG 文件" in in_chinese(field_error(lie.text, "files"))
        hidden = client.post(url, data=base, files=[("files", ("回单.hta. ", pdf_bytes(), "application/pdf"))])
        assert hidden.status_code == 422 and "扩展名是 .hta，不予接收" in in_chinese(field_error(hidden.text, "files"))
        declared = client.post(url, data=base, files=[("files", ("回单", picture_bytes("PNG"), "application/pdf"))])
        assert declared.status_code == 422 and "PNG" in in_chinese(field_error(declared.text, "files"))
        broken = client.post(url, data=base, files=[("files", ("回单.pdf", b"%PDF-1.4\nnot a pdf", "application/pdf"))])
        assert broken.status_code == 422 and "不是完整有效的 PDF" in in_chinese(field_error(broken.text, "files"))
        text = client.post(url, data=base, files=[("files", ("a.txt", b"hello", "text/plain"))])
        assert "不是 PDF、JPEG 或 PNG 格式" in field_error(text.text, "files")
        many = [("files", (f"{i}.png", picture_bytes("PNG", shade=i), "image/png")) for i in range(6)]
        too_many = client.post(url, data=base, files=many)
        assert (
            too_many.status_code == 422 and field_error(too_many.text, "files") == "选择了 6 个文件，最多只能上传 5 个"
        )
        huge = ("files", ("big.pdf", b"%PDF-1.4\n" + b"0" * (10 * 1024 * 1024), "application/pdf"))
        assert "过大" in field_error(client.post(url, data=base, files=[huge]).text, "files")
        with portal.world.session_factory() as session:
            assert session.scalars(select(RemovalRequest).where(RemovalRequest.case_no == CASE)).all() == []
        photo = ("files", ("转账截图.jpg", picture_bytes("JPEG"), "image/jpeg"))
        empty_part = ("files", ("", b"", "application/octet-stream"))  # a browser's part when no file is chosen
        filed = client.post(url, data=base, files=[receipt, photo, empty_part])
        assert filed.status_code == 303 and filed.headers["location"].startswith(f"/portal/cases/{q(CASE)}?filed=")
        page = client.get(filed.headers["location"])
        assert (
            "申请已提交" in page.text
            and "已提交" in page.text
            and "回单.pdf" in page.text
            and "转账截图.jpg" in page.text
        )
        assert 'id="file-form"' not in page.text  # one open request per case: no second form
        again = client.post(url, data=base, files=[receipt])
        assert again.status_code == 409 and "现在不能提交申请" in again.text
        assert "已有一份正在办理的解除查封申请" in in_chinese(field_error(again.text, "form"))
        client.cookies.set("seal_lang", "en")
        english = client.post(url, data=base, files=[receipt])
        assert "already has a removal request in progress" in field_error(english.text, "form")
        client.cookies.delete("seal_lang")
    with portal.world.session_factory() as session:
        [request] = session.scalars(select(RemovalRequest).where(RemovalRequest.case_no == CASE)).all()
        assert (request.state, request.ground, len(request.proofs)) == ("submitted", "paid_in_full", 2)
        actions = session.scalars(select(AuditEntry.action).where(AuditEntry.action.like("removal.%"))).all()
    assert actions.count("removal.file") == 2  # this one, and the other case's


def test_the_request_is_followed_to_disarmed_settled_on_read_and_live(portal: Portal) -> None:
    world = portal.world
    request_id = portal.file()
    with portal.code_client() as client:
        page = client.get(f"/portal/cases/{q(CASE)}").text
        assert f'id="request-{request_id}"' in page and 'data-state="submitted"' in page and "等待法官受理" in page
        assert 'hx-ext="sse"' in page and "view=portal_case" in page
        live = live_url_of(page)
        commands = portal.approve(request_id)
        world.hub.publish([])  # nothing: the approval was written behind the pages' back …
        portal.acknowledge(commands[SEAL])  # … but the seal's answer is published by the ingest after its commit
        [update] = [m for m in events(client.get(live).text) if m["event"] == "update"]
        assert 'id="case-requests" hx-swap-oob="true"' in update["data"] and 'id="case-status"' in update["data"]
        assert f'data-device="{SEAL}" data-status="pending"' in update["data"]  # (no seal's answer while open)
        assert 'data-state="disarm_pending"' in update["data"] and "file-form" not in update["data"]
        assert portal.state(request_id) == "disarm_pending"  # the settler has not run: the page settles on read
        page = client.get(f"/portal/cases/{q(CASE)}").text
        assert 'data-state="disarmed"' in page and "执行干警将到场拆除封条" in page and "解除查封办理中" in page
        assert portal.state(request_id) == "disarmed"
        live = live_url_of(page)
        world.ingest((world.seal.event_topic, world.seal.event(EventType.HEARTBEAT)))  # not the debtor's to learn
        world.hub.publish([Change("removal", case_no=CASE)])  # nothing of what the debtor sees changed
        assert [m for m in events(client.get(live).text) if m["event"] == "update"] == []


def test_the_settler_tells_the_pages_when_a_request_is_disarmed(portal: Portal) -> None:
    request_id = portal.file()
    portal.acknowledge(portal.approve(request_id)[SEAL])
    told: list[list[str]] = []
    settler = RemovalSettler(portal.world.session_factory, interval_s=60, on_settled=told.append)
    assert settler.run_round() == [request_id] and told == [[CASE]]
    assert settler.run_round() == [] and told == [[CASE]]  # nothing moved: nobody told


def test_the_debtor_withdraws_before_the_decision_only(portal: Portal) -> None:
    request_id = portal.file()
    with portal.code_client() as client:
        page = client.get(f"/portal/cases/{q(CASE)}").text
        assert f'action="/portal/requests/{request_id}/cancel"' in page
        forged = client.post(f"/portal/requests/{request_id}/cancel", data={"note": "x"})
        assert forged.status_code == 403 and portal.state(request_id) == "submitted"
        withdrawn = client.post(
            f"/portal/requests/{request_id}/cancel", data={"note": "已和解", "csrf_token": csrf_of(page)}
        )
        assert withdrawn.status_code == 303 and portal.state(request_id) == "cancelled"
        page = client.get(f"/portal/cases/{q(CASE)}").text
        assert "已撤回" in page and "已和解" in page and 'id="file-form"' in page  # a new one may be filed
        second = portal.file()
        portal.approve(second)
        late = client.post(f"/portal/requests/{second}/cancel", data={"csrf_token": csrf_of(page)})
        assert late.status_code == 409 and "当前状态下不能执行此操作" in late.text
        assert "已不能撤回申请" in in_chinese(shown_error(late.text))
        assert portal.state(second) == "disarm_pending"


def test_a_debtor_sees_only_their_own_case_and_its_requests(portal: Portal) -> None:
    other = portal.other_request
    for client in (portal.code_client(), portal.world.client("debtor")):
        with client:
            token = csrf_of(client.get(f"/portal/cases/{q(CASE)}").text)
            home = client.get("/portal")
            assert home.status_code == 200 and CASE in home.text and OTHER_CASE not in home.text
            assert client.get(f"/portal/cases/{q(OTHER_CASE)}").status_code == 404
            assert client.get(f"/portal/cases/{q('(1999)无此案号')}").status_code == 404
            cancel = client.post(f"/portal/requests/{other}/cancel", data={"csrf_token": token})
            assert cancel.status_code == 404
            filing = client.post(
                f"/portal/cases/{q(OTHER_CASE)}/requests",
                data={"csrf_token": token, "ground": "other", "statement": "x"},
            )
            assert filing.status_code == 404
            live = events(
                client.get(f"/live?view=portal_case&case_no={q(OTHER_CASE)}&since={portal.world.hub.position}").text
            )
            assert all(OTHER_SEAL not in m.get("data", "") for m in live)
            assert client.get("/creditor").status_code == 403
            assert OTHER_CASE not in client.get(f"/portal?case_no={q(OTHER_CASE)}").text.replace(
                f"不是案件 {OTHER_CASE}", ""
            )
    assert portal.state(other) == "submitted"
    for username in ("judge", "clerk", "creditor"):  # the portal is the debtor's: other roles have their pages
        with portal.world.client(username) as client:
            assert client.get("/portal").status_code == 403
            assert client.get(f"/portal/cases/{q(CASE)}").status_code == 403


def test_signed_out_or_never_signed_in_the_portal_leads_to_its_own_form(portal: Portal) -> None:
    with portal.world.client() as anonymous:
        assert anonymous.get(f"/portal/cases/{q(CASE)}").headers["location"] == "/portal"
    with portal.code_client() as client:
        page = client.get("/portal")
        assert 'action="/portal/logout"' in page.text and "/inbox" in page.text
        bye = client.post("/portal/logout", data={"csrf_token": csrf_of(page.text)})
        assert (bye.status_code, bye.headers["location"]) == (303, "/portal?bye=1")
        assert "您已退出登录" in client.get("/portal?bye=1").text
        assert client.get(f"/portal/cases/{q(CASE)}").headers["location"] == "/portal"


def test_the_inbox_tells_the_debtor_and_marks_read_their_own_messages_only(portal: Portal) -> None:
    request_id = portal.file()
    with portal.code_client() as client:
        page = client.get("/inbox")
        assert page.status_code == 200 and "提交了解除查封申请" in page.text and "未读 1 条" in page.text
        assert f'href="/portal/cases/{q(CASE)}#request-{request_id}"' in page.text
        with portal.world.session_factory() as session:
            mine = get_request(session, request_id=request_id)
            assert mine.state == "submitted"
        message_id = int(page.text.split('id="message-')[1].split('"')[0])
        assert client.post(f"/inbox/{message_id}/read", data={}).status_code == 403  # no proof: refused
        read = client.post(f"/inbox/{message_id}/read", headers=HTMX)
        assert read.status_code == 200 and f'id="message-{message_id}"' in read.text and "标为已读" not in read.text
        assert "未读 0 条" in client.get("/inbox").text
    with portal.world.client("other-debtor") as client:
        assert client.post(f"/inbox/{message_id}/read", headers=HTMX).status_code == 404
        assert "提交了解除查封申请" in client.get("/inbox").text  # their own case's message, not this one
        assert CASE not in client.get("/inbox").text


def test_the_portal_in_english(portal: Portal) -> None:
    with portal.code_client() as client:
        client.cookies.set("seal_lang", "en")
        page = client.get(f"/portal/cases/{q(CASE)}").text
        assert "under seizure" in page and "The debt has been paid in full" in page and "Ask for the seizure" in page
        assert "⟦" not in page


def test_the_portal_s_inputs_are_bounded_and_refused_as_pages(portal: Portal) -> None:
    with portal.code_client() as client:
        token = csrf_of(client.get(f"/portal/cases/{q(CASE)}").text)
        assert client.post(f"/portal/requests/{2**64}/cancel", data={"csrf_token": token}).status_code == 422
        assert client.post(f"/portal/requests/{2**63 - 1}/cancel", data={"csrf_token": token}).status_code == 404
        long_note = client.post(
            f"/portal/requests/{portal.other_request}/cancel", data={"csrf_token": token, "note": "注" * 2001}
        )
        assert long_note.status_code == 422 and "输入有误" in long_note.text
        assert client.get(f"/portal/cases/{'案' * 65}").status_code == 422
        assert client.get(f"/portal?case_no={'案' * 65}").status_code == 422
        long_statement = {"csrf_token": token, "ground": "other", "statement": "述" * 4001}
        assert client.post(f"/portal/cases/{q(CASE)}/requests", data=long_statement).status_code == 422
        assert client.post("/inbox/0/read", data={"csrf_token": token}).status_code == 422
    with portal.world.client() as anonymous:
        token = csrf_of(anonymous.get("/portal").text)
        long_code = anonymous.post("/portal/login", data={"csrf_token": token, "case_no": CASE, "code": "C" * 65})
        assert long_code.status_code == 422
