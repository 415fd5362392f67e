"""The seal page, the audit log and the administration pages in-process: the seal's health from its heartbeat and
its connection history as each role may see them; the audit log for the clerk only, filtered, its details escaped;
users, cases, courts and the debtor's access code administered through the services the API uses, every form
behind the CSRF proof."""

from __future__ import annotations

import html as html_module
import re
from datetime import timedelta
from urllib.parse import quote

from sqlalchemy import select

from seal_protocol import EventType
from server.alarms.book import AlarmBook
from server.alarms.state import AlarmKind
from server.audit.models import AuditEntry
from server.auth.models import User
from server.auth.users import get_user
from server.core.base import utc_now
from server.core.db import session_scope
from server.seals.cases import update_case
from server.seals.models import Case
from tests.server.auth_helpers import PASSWORD
from tests.web.conftest import CASE, OTHER_CASE, SEAL, PagesWorld, csrf_of

HEARTBEAT = {
    "outbox_depth": 3,
    "snapshots_pending": 1,
    "uptime_s": 7200,
    "agent_version": "1.4.0",
    "pir_state": "idle",
    "tamper": "open",
    "camera": "blind",
    "armed": True,
    "disk_free_bytes": 5 * 1024**3,
    "speaker": "ok",
    "speaker_failure": None,
}


def test_the_seal_page_shows_its_health_history_and_notice(world: PagesWorld) -> None:
    seal = world.seal
    world.ingest(
        (
            seal.event_topic,
            seal.event(EventType.AGENT_STARTED, {"agent_version": "1.4.0", "armed": True, "outbox_depth": 7}),
        ),
        (seal.event_topic, seal.event(EventType.HEARTBEAT, HEARTBEAT)),
    )
    with session_scope(world.session_factory) as session:
        book = AlarmBook(session, fold_window=timedelta(0))
        book.raise_alarm(AlarmKind.OFFLINE, device_id=SEAL, case_no=CASE, at=utc_now(), details={})
    with world.client("judge") as client:
        html = client.get(f"/seals/{SEAL}").text
    assert 'data-field="camera" data-value="blind"' in html and "被遮挡" in html
    assert re.search(r'class="item bad" data-field="tamper" data-value="open"', html)
    assert 'data-field="outbox_depth" data-value="3"' in html and "5120.0 MiB" in html
    assert 'data-kind="started"' in html and "1.4.0 · 7" in html and 'data-kind="offline_alarm"' in html
    assert f'href="/seals/{SEAL}/notice.pdf"' in html
    assert f'href="/cases/{quote(CASE, safe="")}"' in html
    assert "/live?view=seal&amp;device_id=seal-web-1" in html
    with world.client("creditor") as client:  # reads the health and history; prints no notice
        html = client.get(f"/seals/{SEAL}").text
        assert 'data-field="camera"' in html and "notice.pdf" not in html
    with world.client("debtor") as client:  # its health and connection are not the debtor's (the portal shows
        assert client.get(f"/seals/{SEAL}").status_code == 403  # the seal in place, armed or not)


def test_the_seal_page_words_a_frozen_camera_and_marks_it(world: PagesWorld) -> None:
    """A camera whose frames repeat (not yet ``blind_after_s``) is signed ``frozen``: worded, and it needs a look."""
    world.ingest((world.seal.event_topic, world.seal.event(EventType.HEARTBEAT, {**HEARTBEAT, "camera": "frozen"})))
    with world.client("judge") as client:
        html = client.get(f"/seals/{SEAL}").text
    assert re.search(r'class="item bad" data-field="camera" data-value="frozen"', html) and "画面冻结" in html


def test_the_audit_log_is_the_clerk_s_filtered_and_escaped(world: PagesWorld) -> None:
    with world.client("clerk") as client:
        token = csrf_of(client.get("/admin/courts").text)
        data = {"code": "京0105", "name": "<script>alert(1)</script>法院", "csrf_token": token}
        assert client.post("/admin/courts", data=data).status_code == 303
        page = client.get("/audit?action=court.create")
        assert page.status_code == 200
        assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;法院" in page.text
        rows = re.findall(r'data-action="([a-z_.]+)"', page.text)
        assert rows and set(rows) == {"court.create"}
        by_actor = client.get("/audit?actor=clerk").text
        assert set(re.findall(r'data-action="([a-z_.]+)"', by_actor)) == {"court.create", "login"}
        assert client.get("/audit?target=%E4%BA%AC0105").text.count("data-entry-id=") == 1
        of_case = client.get("/audit", params={"case_no": CASE}).text
        with world.session_factory() as session:
            ids = session.scalars(select(AuditEntry.id).where(AuditEntry.case_no == CASE)).all()
        assert ids and sorted(int(i) for i in re.findall(r'data-entry-id="(\d+)"', of_case)) == sorted(ids)[-100:]
        assert client.get("/audit?action=a%0Ab").status_code == 422
    for who in ("judge", "officer"):
        with world.client(who) as client:
            assert client.get("/audit").status_code == 403
            assert client.get("/admin/users").status_code == 403


def test_the_clerk_creates_disables_and_assigns_users(world: PagesWorld) -> None:
    with world.client("clerk") as client:
        token = csrf_of(client.get("/admin/users").text)
        new = {
            "username": "li-officer",
            "full_name": "李干警",
            "role": "officer",
            "password": PASSWORD,
            "case_no": CASE,
        }
        assert client.post("/admin/users", data=new).status_code == 403  # no CSRF proof
        created = client.post("/admin/users", data={**new, "csrf_token": token})
        assert (created.status_code, created.headers["location"]) == (303, "/admin/users?ok=user_created")
        listed = client.get(created.headers["location"]).text
        assert "用户已创建" in listed and 'data-username="li-officer"' in listed
        again = client.post("/admin/users", data={**new, "csrf_token": token})
        assert again.status_code == 409 and 'value="李干警"' in again.text
        assert "用户 li-officer 已存在。 / user &#39;li-officer&#39; already exists" in again.text
        bad = client.post("/admin/users", data={**new, "username": "Bad Name", "csrf_token": token})
        assert bad.status_code == 422
        assign = client.post("/admin/users/li-officer/cases", data={"case_no": OTHER_CASE, "csrf_token": token})
        assert assign.status_code == 303
        clerk_to_case = client.post("/admin/users/clerk/cases", data={"case_no": CASE, "csrf_token": token})
        assert clerk_to_case.status_code == 409  # a clerk sees every case
        itself = client.post("/admin/users/clerk/disabled", data={"disabled": "1", "csrf_token": token})
        assert itself.status_code == 403
    with world.client("li-officer") as officer:
        assert officer.get(f"/cases/{quote(OTHER_CASE, safe='')}").status_code == 200
        with world.client("clerk") as client:
            token = csrf_of(client.get("/admin/users").text)
            off = client.post("/admin/users/li-officer/disabled", data={"disabled": "1", "csrf_token": token})
            assert off.status_code == 303
            removed = client.post("/admin/users/li-officer/cases/remove", data={"case_no": CASE, "csrf_token": token})
            assert removed.status_code == 303
        assert officer.get("/").status_code == 303  # disabling ended the officer's sign-in
    with world.session_factory() as session:
        user = get_user(session, username="li-officer")
        assert user.disabled and user.role == "officer" and user.full_name == "李干警"
        query = select(AuditEntry.action).where(AuditEntry.actor == "clerk").order_by(AuditEntry.id)
        actions = [a for a in session.scalars(query) if a not in ("login",)]
    assert actions == ["user.create", "case.assign", "case.assign", "user.update", "case.unassign"]  # created in one


def test_the_clerk_registers_and_closes_cases_and_courts(world: PagesWorld) -> None:
    new_case = "(2024)苏0214执77号"
    with world.client("clerk") as client:
        token = csrf_of(client.get("/admin/cases").text)
        data = {"case_no": new_case, "judge": "赵法官", "debtor": "某公司", "seizure_expires_on": "2027-06-30"}
        created = client.post("/admin/cases", data={**data, "csrf_token": token})
        assert created.status_code == 303 and "案件已登记" in client.get(created.headers["location"]).text
        duplicate = client.post("/admin/cases", data={**data, "csrf_token": token})
        assert duplicate.status_code == 409
        unknown_court = client.post("/admin/cases", data={"case_no": "(2024)京0105执1号", "csrf_token": token})
        assert unknown_court.status_code == 422 and 'value="(2024)京0105执1号"' in unknown_court.text
        not_a_number = client.post("/admin/cases", data={"case_no": "2024-77", "csrf_token": token})
        assert not_a_number.status_code == 422
        sealed = client.post(f"/admin/cases/{quote(CASE, safe='')}/close", data={"csrf_token": token})
        assert sealed.status_code == 409 and SEAL in sealed.text  # a seal is still bound
        closed = client.post(
            f"/admin/cases/{quote(new_case, safe='')}/close", data={"note": "执行完毕", "csrf_token": token}
        )
        assert closed.status_code == 303
        court = client.post("/admin/courts", data={"code": "苏0282", "name": "宜兴市人民法院", "csrf_token": token})
        assert court.status_code == 303 and "宜兴市人民法院" in client.get("/admin/courts").text
    with world.session_factory() as session:
        case = session.scalars(select(Case).where(Case.case_no == new_case)).one()
    assert (case.status, case.judge, case.debtor, str(case.seizure_expires_on)) == (
        "closed",
        "赵法官",
        "某公司",
        "2027-06-30",
    )


def test_the_debtor_s_access_code_is_shown_once_and_rotates(world: PagesWorld) -> None:
    url = f"/admin/cases/{quote(CASE, safe='')}/access-code"
    with world.client("clerk") as client:
        token = csrf_of(client.get("/admin/cases").text)
        assert client.post(url, data={}).status_code == 403  # no CSRF proof
        first = client.post(url, data={"csrf_token": token})
        assert first.status_code == 200 and first.headers["cache-control"] == "no-store"
        [code] = re.findall(r"data-access-code>([A-Z0-9-]+)<", first.text)
        assert code not in client.get("/admin/cases").text  # shown once
        signed_in = client.post("/api/auth/access-code", json={"case_no": CASE, "code": code})
        assert signed_in.status_code == 200
        client.cookies.clear()
    with world.client("clerk") as client:
        listing = client.get("/admin/cases").text
        token = csrf_of(listing)
        again = client.post(url, data={"csrf_token": token})  # a first issue again (the form of before): refused
        assert again.status_code == 409 and "已于" in again.text
        [replacing] = re.findall(r'name="replacing" value="([^"]+)"', listing)  # the rotate button's form
        second = client.post(url, data={"csrf_token": token, "replacing": replacing})
        assert "旧查询码及其登录已失效" in second.text
        assert client.post("/api/auth/access-code", json={"case_no": CASE, "code": code}).status_code == 401
    with world.session_factory() as session:
        accounts = session.scalars(select(User.username).where(User.username.like("debtor-case-%"))).all()
    assert len(accounts) == 1


def test_the_seal_page_s_notice_button_prints_or_says_why_not_in_a_page(world: PagesWorld) -> None:
    """The button's page route gives the API's PDF; a notice that cannot be printed (a fact its font cannot draw)
    is a page in the reader's language naming the field, not the API's JSON in a new tab."""
    with world.client("clerk") as client:
        printed = client.get(f"/seals/{SEAL}/notice.pdf")
        assert printed.status_code == 200 and printed.headers["content-type"] == "application/pdf"
        assert printed.content.startswith(b"%PDF")
        with session_scope(world.session_factory) as session:
            update_case(session, actor=None, case_no=CASE, changes={"judge": "张𠀀"})
        refused = client.get(f"/seals/{SEAL}/notice.pdf")
    assert refused.status_code == 409 and refused.headers["content-type"].startswith("text/html")
    assert "公告无法打印" in refused.text and "U+20000" in refused.text and '"detail"' not in refused.text


def test_the_seal_page_says_which_facts_the_notice_lacks_and_its_route_refuses_in_a_page(world: PagesWorld) -> None:
    """A notice lacking a fact it must print (here the ruling and the seizure's last day) is refused; the seal page
    says which before the officer tries, in the reader's language, and offers no button."""
    with session_scope(world.session_factory) as session:
        update_case(session, actor=None, case_no=CASE, changes={"ruling_no": "", "seizure_expires_on": None})
    with world.client("officer") as client:
        html = client.get(f"/seals/{SEAL}").text
        refused = client.get(f"/seals/{SEAL}/notice.pdf")
        client.cookies.set("seal_lang", "en")
        english = client.get(f"/seals/{SEAL}").text
    assert 'id="notice-missing" data-missing="ruling_no seizure_expires_on"' in html
    assert "打印公告前须先登记：执行裁定书文号、查封期限" in html and f'href="/seals/{SEAL}/notice.pdf"' not in html
    assert "record: the enforcement ruling's number, the seizure's last day" in html_module.unescape(english)
    assert refused.status_code == 409 and refused.headers["content-type"].startswith("text/html")
    assert "查封公告不能打印" in refused.text and "执行裁定书文号" in refused.text and '"detail"' not in refused.text
    with session_scope(world.session_factory) as session:
        update_case(
            session,
            actor=None,
            case_no=CASE,
            changes={"ruling_no": "(2021)苏0214执1234号之二", "seizure_expires_on": None},
        )
    with world.client("officer") as client:
        assert 'data-missing="seizure_expires_on"' in client.get(f"/seals/{SEAL}").text
