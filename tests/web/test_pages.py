"""The pages in-process (no browser): sign-in, its throttle and CSRF, sign-out, the password, the language, the
overview as each role sees it (what the API would show them, no more), the alarm's acknowledgement, static files
and headers."""

from __future__ import annotations

import re
from urllib.parse import quote

from sqlalchemy import select

from seal_protocol import EventType, encode_status
from seal_protocol.envelope import SIMULATED_FIELD
from seal_protocol.status import SealStatus
from server.alarms.models import Alarm
from server.audit.models import AuditEntry
from server.auth.sessions import revoke_user_sessions
from server.auth.users import get_user
from server.core.base import utc_now
from server.core.db import session_scope
from server.web.security import CONTENT_SECURITY_POLICY
from tests.server.auth_helpers import PASSWORD
from tests.web.conftest import CASE, PLACE, SEAL, PagesWorld, csrf_of

NEW_PASSWORD = "another horse battery staple"


def test_a_page_without_a_session_leads_to_the_sign_in_page_and_back(world: PagesWorld) -> None:
    with world.client() as client:
        assert (client.get("/").status_code, client.get("/").headers["location"]) == (303, "/login")
        answer = client.get("/account/password")
        assert (answer.status_code, answer.headers["location"]) == (303, "/login?next=/account/password")
        form = client.get("/login?next=/account/password")
        assert 'name="next" value="/account/password"' in form.text
        token = csrf_of(form.text)
        data = {"username": "judge", "password": PASSWORD, "csrf_token": token, "next": "/account/password"}
        signed_in = client.post("/login", data=data)
        assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/account/password")
        cookie = signed_in.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie


def test_sign_in_refuses_a_form_from_elsewhere_and_never_leads_off_site(world: PagesWorld) -> None:
    with world.client() as client:
        token = csrf_of(client.get("/login").text)
        for forged in ({}, {"csrf_token": "0" * 64}):
            answer = client.post("/login", data={"username": "judge", "password": PASSWORD, **forged})
            assert answer.status_code == 403 and "seal_session" not in answer.headers.get("set-cookie", "")
        for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "/logout"):
            data = {"username": "judge", "password": PASSWORD, "csrf_token": token, "next": target}
            assert client.post("/login", data=data).headers["location"] == "/"
            client.cookies.delete("seal_session")  # signed out again: the form's token is the pre-session one


def test_sign_in_is_throttled_like_the_api(world: PagesWorld) -> None:
    with world.client() as client:
        token = csrf_of(client.get("/login").text)
        wrong = {"username": "judge", "password": "wrong password", "csrf_token": token}
        assert [client.post("/login", data=wrong).status_code for _ in range(3)] == [401, 401, 401]
        refused = client.post("/login", data={**wrong, "password": PASSWORD})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert "秒后再试" in refused.text
    with world.session_factory() as session:
        failures = session.scalars(select(AuditEntry).where(AuditEntry.action == "login.failed")).all()
    assert len(failures) == 3


def test_every_post_needs_the_form_token_or_the_htmx_header(world: PagesWorld) -> None:
    with world.client("judge") as client:
        url = f"/alarms/{world.alarm_id}/ack"
        assert client.post(url, data={"note": "forged"}).status_code == 403
        assert client.post("/logout", data={}).status_code == 403
        assert client.post("/lang", data={"lang": "en"}).status_code == 403
        with world.session_factory() as session:
            assert session.get(Alarm, world.alarm_id).state == "open"  # type: ignore[union-attr]
        htmx = client.post(url, data={"note": "已联系干警"}, headers={"X-Requested-With": "htmx", "HX-Request": "true"})
        assert htmx.status_code == 200 and f'id="alarm-{world.alarm_id}"' in htmx.text and "已联系干警" in htmx.text
        page = client.get("/")
        assert client.post("/logout", data={"csrf_token": csrf_of(page.text)}).headers["location"] == "/login?bye=1"
        assert client.get("/").status_code == 303  # the session ended with the sign-out
    with world.session_factory() as session:
        alarm = session.get(Alarm, world.alarm_id)
        assert alarm is not None and (alarm.state, alarm.acknowledged_note) == ("acknowledged", "已联系干警")
        actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions[-2:] == ["alarm.ack", "logout"]


def test_a_plain_form_acknowledges_with_the_token_and_comes_back_to_the_overview(world: PagesWorld) -> None:
    with world.client("officer") as client:
        token = csrf_of(client.get("/").text)
        answer = client.post(f"/alarms/{world.alarm_id}/ack", data={"note": "到场", "csrf_token": token})
        assert (answer.status_code, answer.headers["location"]) == (303, "/")
        again = client.post(f"/alarms/{world.alarm_id}/ack", data={"note": "again", "csrf_token": token})
        assert again.status_code == 409 and "当前状态下不能执行此操作" in again.text
    with world.client("creditor") as client:  # may read alarms, not acknowledge them
        token = csrf_of(client.get("/").text)
        assert client.post(f"/alarms/{world.alarm_id}/ack", data={"csrf_token": token}).status_code == 403
    with world.client("other-judge") as client:  # another case's alarm is not found, as in the API
        token = csrf_of(client.get("/").text)
        assert client.post(f"/alarms/{world.alarm_id}/ack", data={"csrf_token": token}).status_code == 404


def test_the_overview_shows_each_role_what_the_api_would_and_no_more(world: PagesWorld) -> None:
    seen = {}
    for username in ("clerk", "judge", "officer", "creditor", "other-judge"):
        with world.client(username) as client:
            page = client.get("/")
            assert page.status_code == 200
            seen[username] = page.text
    with world.client("debtor") as client:  # whether and when a seal is heard from is not the debtor's: the portal is
        page = client.get("/", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/portal"
    picture = f"/api/snapshots/{world.snapshot}"
    for username in ("clerk", "judge", "officer"):
        text = seen[username]
        assert f'id="seal-{SEAL}"' in text and CASE in text and PLACE in text and picture in text
        assert 'data-kind="intrusion"' in text and "有人进入" in text  # the alarm, and the seal's last event
    assert 'data-kind="intrusion"' in seen["creditor"] and picture not in seen["creditor"]
    assert "现场照片仅供法院查看" in seen["creditor"] and 'name="note"' not in seen["creditor"]  # no ack form
    assert SEAL not in seen["other-judge"] and CASE not in seen["other-judge"]


def test_the_password_page_changes_it_and_ends_the_other_sign_ins(world: PagesWorld) -> None:
    with world.client("judge") as elsewhere, world.client("judge") as client:
        token = csrf_of(client.get("/account/password").text)
        form = {"current": "not it", "new": NEW_PASSWORD, "repeat": NEW_PASSWORD, "csrf_token": token}
        assert "当前密码不正确" in client.post("/account/password", data=form).text
        short = client.post("/account/password", data={**form, "current": PASSWORD, "new": "short", "repeat": "short"})
        assert short.status_code == 422 and "至少需要 12 个字符" in short.text
        done = client.post("/account/password", data={**form, "current": PASSWORD})
        assert done.status_code == 200 and "密码已修改" in done.text
        assert client.get("/").status_code == 200 and elsewhere.get("/").status_code == 303


def test_the_language_switch_and_the_pages_headers(world: PagesWorld) -> None:
    with world.client("judge") as client:
        page = client.get("/")
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert page.headers["cache-control"] == "no-store" and '<html lang="zh-CN">' in page.text
        switched = client.post("/lang", data={"lang": "en", "next": "/", "csrf_token": csrf_of(page.text)})
        assert switched.headers["location"] == "/"
        english = client.get("/")
        assert '<html lang="en">' in english.text and "Overview" in english.text and "Intrusion" in english.text
        assert not re.search(r"<script>|style=|\son[a-z]+=", english.text)  # nothing inline: the CSP allows none


def test_static_files_are_versioned_and_revalidated(world: PagesWorld) -> None:
    with world.client("judge") as client:
        url = re.search(r'src="(/static/app\.js\?v=[0-9a-f]{16})"', client.get("/").text)
        assert url is not None
        versioned = client.get(url.group(1))
        assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
        plain = client.get("/static/app.js")
        assert plain.headers["cache-control"] == "no-cache" and plain.content == versioned.content
        etag = plain.headers["etag"]
        assert client.get("/static/app.js", headers={"If-None-Match": etag}).status_code == 304
        assert client.get("/static/README.md").status_code == 404
        assert client.get("/static/../app.py").status_code == 404


def test_an_unknown_page_is_a_page_and_an_unknown_api_url_stays_json(world: PagesWorld) -> None:
    with world.client("judge") as client:
        page = client.get("/no/such/page", headers={"Accept": "text/html"})
        assert page.status_code == 404 and "没有找到" in page.text
        api = client.get("/api/no/such", headers={"Accept": "text/html"})
        assert api.status_code == 404 and api.json() == {"detail": "Not Found"}


def test_a_revoked_session_is_signed_out_of_the_pages(world: PagesWorld) -> None:
    with world.client("judge") as client:
        assert client.get("/").status_code == 200
        with session_scope(world.session_factory) as session:
            revoke_user_sessions(session, user_id=get_user(session, username="judge").id, now=utc_now())
        assert client.get("/").status_code == 303


def test_a_seal_within_its_grace_says_so_instead_of_alarming(world: PagesWorld) -> None:
    world.ingest((world.seal.status_topic, encode_status(SealStatus.OFFLINE)))  # its Last Will: it may be restarting
    with world.client("judge") as client:
        page = client.get("/").text
    assert "离线不足 60 秒：若封条未恢复" in page and 'data-kind="offline"' not in page
    assert "封条重启后在 60 秒内恢复的，不发离线告警" in page


def test_page_inputs_are_bounded_and_refused_as_pages(world: PagesWorld) -> None:
    with world.client("judge") as client:
        token = csrf_of(client.get("/").text)
        huge = client.post(f"/alarms/{2**64}/ack", data={"csrf_token": token})
        assert huge.status_code == 422 and "输入有误" in huge.text
        largest = client.post(f"/alarms/{2**63 - 1}/ack", data={"csrf_token": token})
        assert largest.status_code == 404
        long_note = client.post(f"/alarms/{world.alarm_id}/ack", data={"csrf_token": token, "note": "注" * 2001})
        assert long_note.status_code == 422
        assert client.get("/live?view=" + "x" * 100).status_code == 422
        assert client.get("/live?since=" + "1" * 100).status_code == 422
        long_name = client.post("/login", data={"csrf_token": token, "username": "u" * 65, "password": "p"})
        assert long_name.status_code == 422


def test_a_disarmed_seal_s_intrusion_on_a_sealed_case_says_so_on_the_overview_and_the_case_page(
    world: PagesWorld,
) -> None:
    """The alarm of a seal that reports itself disarmed while the seizure stands (tests/server/test_disarmed_alarms.py)
    is an intrusion like any other, and says what the court found, in the page's language."""
    disarmed = {"armed": False, "warning": "suppressed_disarmed", "warning_languages": []}
    world.ingest((world.seal.event_topic, world.seal.event(EventType.INTRUSION, disarmed)))
    with world.client("judge") as client:
        overview, case = client.get("/").text, client.get(f"/cases/{quote(CASE, safe='')}").text
        client.cookies.set("seal_lang", "en")
        english = client.get("/").text
    for text in (overview, case):
        assert 'data-kind="intrusion"' in text and "封条报告自身已撤防，但当时本案并无进行中的解除查封" in text
    assert "the seal reported itself disarmed while no removal of this case was under way" in english


def test_a_simulated_seal_s_intrusion_says_so_on_the_overview_and_the_case_page(world: PagesWorld) -> None:
    """Every event ``seal-agent simulate`` signs says ``simulated: true`` (docs/protocol.md, "Simulated seals"): its
    alarm is shown, and says that nothing happened on site."""
    simulated = {"armed": True, "warning": "played", "warning_languages": [], SIMULATED_FIELD: True}
    world.ingest((world.seal.event_topic, world.seal.event(EventType.INTRUSION, simulated)))
    with world.client("judge") as client:
        overview, case = client.get("/").text, client.get(f"/cases/{quote(CASE, safe='')}").text
        client.cookies.set("seal_lang", "en")
        english = client.get("/").text
    for text in (overview, case):
        assert 'data-kind="intrusion"' in text
        assert "模拟封条的事件（seal-agent simulate，模拟引脚）：并非现场实际发生" in text
    assert "event (seal-agent simulate, mock pins): it did not happen on site" in english


def test_a_simulated_seal_s_speaker_failed_alarm_says_so_too(world: PagesWorld) -> None:
    """Not only the alarms whose details copy the event's payload: the speaker_failed of the same intrusion too."""
    failed = [{"language": "zh", "result": "failed"}]
    payload = {"armed": True, "warning": "failed", "warning_languages": failed, SIMULATED_FIELD: True}
    world.ingest((world.seal.event_topic, world.seal.event(EventType.INTRUSION, payload)))
    label = "模拟封条的事件（seal-agent simulate，模拟引脚）：并非现场实际发生"
    with world.client("judge") as client:
        for text in (client.get("/").text, client.get(f"/cases/{quote(CASE, safe='')}").text):
            assert 'data-kind="intrusion"' in text and 'data-kind="speaker_failed"' in text
            assert text.count(label) == 2, text.count(label)
