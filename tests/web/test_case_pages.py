"""The case page in-process (no browser): what each role sees of a case (what the API would show them, no more), a
foreign case's pages look like no case at all, the forms (alarms, commands, the removal's acts) act through the
services and need the CSRF proof, the picture's verdict comes from the stored bytes, and the live view sends what
changed."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import select, text, update

from seal_protocol import EventType
from seal_protocol.commands import CommandAction
from seal_protocol.signing import generate_signing_key
from server.alarms.models import Alarm
from server.audit.models import AuditEntry
from server.audit.service import record_audit
from server.auth.users import get_user
from server.commands.models import CourtCommand
from server.commands.service import issue_command
from server.config import RemovalSettings
from server.core.append_only import append_only_statements, drop_statements
from server.core.base import utc_now
from server.core.db import session_scope
from server.core.files import DirectoryObjects
from server.evidence.models import Event
from server.removal.disarm import settle
from server.removal.grounds import RemovalGround
from server.removal.models import RemovalRequest
from server.removal.proofs import ProofStore
from server.removal.service import file_request
from server.seals.models import Seal
from server.seals.registry import register_seal
from tests.server.helpers import SimulatedSeal, jpeg_bytes
from tests.server.test_command_alarms import TTL, run_round
from tests.web.conftest import CASE, SEAL, PagesWorld, csrf_of, ping_form
from tests.web.test_live_stream import events, live_url_of

CASE_URL = f"/cases/{quote(CASE, safe='')}"
HTMX = {"X-Requested-With": "htmx", "HX-Request": "true"}


def named_picture(world: PagesWorld) -> tuple[int, str]:
    """An event of the world's seal that names the world's snapshot; (its id, the snapshot's SHA-256)."""
    payload = {"snapshots": [world.snapshot], "trigger": "intrusion", "trigger_seq": 2}
    world.ingest((world.seal.event_topic, world.seal.event(EventType.SNAPSHOT_TAKEN, payload)))
    with world.session_factory() as session:
        event_id = session.scalars(select(Event.id).where(Event.type == "snapshot_taken")).one()
    return event_id, world.snapshot


def dialog_url(event_id: int, sha: str) -> str:
    return f"{CASE_URL}/events/{event_id}/snapshots/{sha}"


def file_removal(world: PagesWorld) -> int:
    with session_scope(world.session_factory) as session:
        request = file_request(
            session,
            actor=get_user(session, username="debtor"),
            case_no=CASE,
            ground=RemovalGround.PAID_IN_FULL,
            statement="款项已全部付清，请求解除查封。",
            proofs=[],
            store=ProofStore(snapshot_dir(world).parent / "proofs"),  # none filed
            settings=RemovalSettings(),
            now=utc_now(),
        )
        return request.id


def test_the_judge_sees_every_part_of_the_case(world: PagesWorld) -> None:
    event_id, sha = named_picture(world)
    with world.client("judge") as client:
        page = client.get(CASE_URL)
    assert page.status_code == 200
    html = page.text
    for part in ("case-status", "case-seals", "case-alarms", "case-commands", "case-removal", "timeline"):
        assert f'id="{part}"' in html
    assert f'href="/seals/{SEAL}"' in html and "无锡市新吴区人民法院" in html and "查封中" in html
    assert f'data-alarm-id="{world.alarm_id}"' in html and 'data-kind="intrusion"' in html
    assert f'id="event-{event_id}"' in html and f'src="/api/snapshots/{sha}"' in html
    assert 'data-type="heartbeat"' not in html  # the timeline leaves heartbeats to the seal page
    assert "/live?view=case&amp;case_no=" in html
    assert 'name="action" value="ping"' in html


def test_roles_see_what_the_api_shows_them(world: PagesWorld) -> None:
    event_id, sha = named_picture(world)
    with world.client("creditor") as client:
        html = client.get(CASE_URL).text
        assert "现场照片仅供法院查看" in html and "/api/snapshots/" not in html  # no pictures
        assert f'data-alarm-id="{world.alarm_id}"' in html and "/ack" not in html  # reads alarms, acts on none
        assert 'name="action"' not in html  # sends no command
        assert client.get(dialog_url(event_id, sha)).status_code == 403
    with world.client("debtor") as client:  # the seals' connection and commands are not theirs: the portal is
        assert client.get(CASE_URL).status_code == 403
        assert client.get(f"{CASE_URL}/timeline").status_code == 403


def test_another_case_s_judge_finds_no_case_and_no_seal(world: PagesWorld) -> None:
    event_id, sha = named_picture(world)
    with world.client("other-judge") as client:
        token = csrf_of(client.get("/").text)
        missing = client.get(f"/cases/{quote('(1999)苏0214执9号', safe='')}")
        assert missing.status_code == 404
        for url in (CASE_URL, f"{CASE_URL}/timeline", dialog_url(event_id, sha), f"/seals/{SEAL}"):
            answer = client.get(url)
            assert (answer.status_code, answer.text) == (404, missing.text), url
        ack = client.post(f"{CASE_URL}/alarms/{world.alarm_id}/ack", data={"csrf_token": token})
        assert ack.status_code == 404
    with world.client("judge") as client:  # the alarm of one's own case under another case's number: not found
        token = csrf_of(client.get("/").text)
        wrong = f"/cases/{quote('(2022)苏0214执567号', safe='')}/alarms/{world.alarm_id}/ack"
        assert client.post(wrong, data={"csrf_token": token}).status_code == 404


def test_every_form_of_the_case_page_needs_the_csrf_proof(world: PagesWorld) -> None:
    request_id = file_removal(world)
    forms = [
        (f"{CASE_URL}/alarms/{world.alarm_id}/ack", {"note": "x"}),
        (f"{CASE_URL}/alarms/{world.alarm_id}/close", {"note": "x"}),
        (f"{CASE_URL}/commands", {"device_id": SEAL, "action": "ping"}),
        (f"{CASE_URL}/removal/{request_id}/review", {}),
        (f"{CASE_URL}/removal/{request_id}/approve", {"reasons": "x"}),
        (f"{CASE_URL}/removal/{request_id}/reject", {"reasons": "x"}),
        (f"{CASE_URL}/removal/{request_id}/resend", {}),
        (f"{CASE_URL}/removal/{request_id}/lifted", {}),
    ]
    with world.client("judge") as client:
        for url, data in forms:
            assert client.post(url, data=data).status_code == 403, url
            assert client.post(url, data={**data, "csrf_token": "0" * 64}).status_code == 403, url
    with world.session_factory() as session:
        assert session.get(Alarm, world.alarm_id).state == "open"  # type: ignore[union-attr]
        assert session.scalars(select(CourtCommand)).all() == []
        assert session.get(RemovalRequest, request_id).state == "submitted"  # type: ignore[union-attr]


def test_an_alarm_is_acknowledged_then_closed_with_notes(world: PagesWorld) -> None:
    url = f"{CASE_URL}/alarms/{world.alarm_id}"
    with world.client("officer") as client:  # acknowledges, may not close
        token = csrf_of(client.get(CASE_URL).text)
        acked = client.post(f"{url}/ack", data={"note": "干警已到场", "csrf_token": token})
        assert (acked.status_code, acked.headers["location"]) == (303, f"{CASE_URL}#case-alarms")
        assert client.post(f"{url}/close", data={"note": "x", "csrf_token": token}).status_code == 403
    with world.client("judge") as client:
        closed = client.post(f"{url}/close", data={"note": "误报：保洁人员"}, headers=HTMX)
        assert closed.status_code == 200 and closed.text.startswith('<section id="case-alarms"')
        assert 'data-state="closed"' in closed.text and "误报：保洁人员" in closed.text and "干警已到场" in closed.text
        again = client.post(f"{url}/close", data={"note": "again"}, headers=HTMX)
        assert again.status_code == 409 and "当前状态下不能执行此操作" in again.text
        assert "该告警目前为“已关闭”，不能再改为“已关闭”。 / " in again.text  # the service's refusal, Chinese first
    with world.session_factory() as session:
        actions = session.scalars(select(AuditEntry.action).where(AuditEntry.target == str(world.alarm_id))).all()
    assert actions == ["alarm.ack", "alarm.close"]


def test_a_command_stays_pending_until_the_seal_s_signed_answer(world: PagesWorld) -> None:
    with world.client("officer") as client:
        sent = client.post(
            f"{CASE_URL}/commands",
            data=ping_form(client),
            headers=HTMX,
        )
        assert sent.status_code == 200 and sent.text.startswith('<section id="case-commands"')
        [command_id] = re.findall(r'data-command-id="(\d+)"', sent.text)
        assert 'data-state="pending"' in sent.text and "尚未发布到消息服务器" in sent.text
        with session_scope(world.session_factory) as session:  # the broker took it: still not delivered
            session.execute(update(CourtCommand).values(broker_accepted_at=datetime.now(UTC)))
        page = client.get(CASE_URL).text
        assert "尚未送达" in page
        answer = {"command_id": int(command_id), "action": "ping", "result": "pong", "armed": True, "camera": "ok"}
        world.ingest((world.seal.event_topic, world.seal.event(EventType.COMMAND_ACK, answer)))
        stream = events(client.get(live_url_of(page)).text)  # the page's stream starts from what the page shows
    [update_message] = [m for m in stream if m["event"] == "update"]
    html = update_message["data"]
    assert 'id="case-commands" class="panel" hx-swap-oob="true"' in html
    assert f'data-command-id="{command_id}" data-action="ping" data-state="acknowledged"' in html
    assert '<section id="case-timeline" class="panel"' in html and 'data-type="command_ack"' in html
    with world.session_factory() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "command.issue")).one()
    assert entry.actor == "officer" and entry.target == SEAL


def test_the_live_view_sends_nothing_of_other_cases(world: PagesWorld) -> None:
    other = SimulatedSeal("seal-other", "(2022)苏0214执567号")
    with session_scope(world.session_factory) as session:
        register_seal(
            session, actor=None, device_id=other.device_id, case_no=other.case_no, public_key=other.public_key
        )
    with world.client("judge") as client:
        live = live_url_of(client.get(CASE_URL).text)
        world.ingest((other.event_topic, other.event(EventType.INTRUSION, {"armed": True})))
        stream = events(client.get(live).text)
    updates = [m["data"] for m in stream if m["event"] == "update"]
    # At most the seals' "N s ago", should the clock have moved on between the page and its stream.
    assert all(re.findall(r'<section id="([^"]+)"', data) == ["case-seals"] for data in updates), updates


def test_the_picture_dialog_verifies_the_stored_bytes_again(world: PagesWorld) -> None:
    event_id, sha = named_picture(world)
    with world.client("judge") as client:
        dialog = client.get(dialog_url(event_id, sha), headers=HTMX)
        assert (
            dialog.status_code == 200
            and 'data-verdict="verified"' in dialog.text
            and 'data-verified="yes"' in dialog.text
        )
        assert "签名验证通过" in dialog.text and sha in dialog.text
        assert client.get(dialog_url(event_id, sha)).text.startswith("<!doctype html>")  # without htmx: a page
        assert client.get(dialog_url(event_id, "0" * 64)).status_code == 404  # a picture the event does not name
        with session_scope(world.session_factory) as session:  # a changed byte in the stored envelope, by someone
            dialect = session.get_bind().dialect.name  # who owns the database and sets its trigger aside first
            for statement in drop_statements("events", dialect):
                session.execute(text(statement))
            raw = session.get(Event, event_id).raw  # type: ignore[union-attr]
            session.execute(
                update(Event).where(Event.id == event_id).values(raw=raw.replace(b"intrusion", b"intrusioN"))
            )
        tampered = client.get(dialog_url(event_id, sha), headers=HTMX).text
        assert 'data-verdict="failed"' in tampered and "验证未通过" in tampered
        with session_scope(world.session_factory) as session:
            session.execute(update(Event).where(Event.id == event_id).values(raw=raw))
            for statement in append_only_statements("events", dialect):
                session.execute(text(statement))
        (snapshot_dir(world) / f"{sha}.jpg").write_bytes(jpeg_bytes(shade=99))
        changed = client.get(dialog_url(event_id, sha), headers=HTMX).text
        assert 'data-verdict="verified"' in changed and 'data-verified="no"' in changed and "文件已被改动" in changed


def test_a_re_provisioned_seal_s_older_pictures_verify_with_its_earlier_key(world: PagesWorld) -> None:
    event_id, sha = named_picture(world)
    new = SimulatedSeal(SEAL, CASE)
    with session_scope(world.session_factory) as session:
        # A court's records from before a new key was refused for a seal with stored events (``register_seal``): the
        # enrolled key changed, the earlier one kept in the seal's enrolment.
        session.execute(update(Seal).where(Seal.device_id == SEAL).values(public_key=new.public_key))
        details = {"case_no": CASE, "public_key": new.public_key}
        record_audit(session, actor=None, action="seal.register", target=SEAL, case_no=CASE, details=details)
    with world.client("judge") as client:
        dialog = client.get(dialog_url(event_id, sha), headers=HTMX).text
    assert 'data-verdict="verified"' in dialog and "为封条此前登记的公钥" in dialog
    assert hashlib.sha256(bytes(world.seal.key.verify_key)).hexdigest()[:16] in dialog


def test_the_timeline_pages_back(world: PagesWorld) -> None:
    world.ingest(*[(world.seal.event_topic, world.seal.event(EventType.TAMPER, {"state": "open"})) for _ in range(35)])
    with world.client("judge") as client:
        html = client.get(CASE_URL).text
        shown = re.findall(r'<li id="event-(\d+)"', html)
        [cursor] = re.findall(r"timeline\?before=(\d+)", html)[:1]
        older = client.get(f"{CASE_URL}/timeline?before={cursor}", headers=HTMX).text
        rest = re.findall(r'<li id="event-(\d+)"', older)
    assert len(shown) == 30 and int(cursor) == int(shown[-1])
    assert rest and set(rest).isdisjoint(shown) and max(map(int, rest)) < int(cursor)
    assert 'id="timeline-more"' not in older  # 36 events (35 tamper, 1 intrusion) fit in two pages


@pytest.mark.parametrize("who", ["clerk", "creditor"])
def test_only_the_judge_decides_a_removal(world: PagesWorld, who: str) -> None:
    request_id = file_removal(world)
    with world.client(who) as client:
        html = client.get(CASE_URL).text
        assert f'data-request-id="{request_id}"' in html and "款项已全部付清" in html
        assert 'data-act="approve"' not in html
        answer = client.post(f"{CASE_URL}/removal/{request_id}/approve", data={"reasons": "x"}, headers=HTMX)
        assert answer.status_code == 403


def test_the_judge_takes_up_and_approves_and_each_seal_s_signed_ack_disarms(world: PagesWorld) -> None:
    request_id = file_removal(world)
    base = f"{CASE_URL}/removal/{request_id}"
    with world.client("judge") as client:
        assert 'data-act="review"' in client.get(CASE_URL).text
        reviewed = client.post(f"{base}/review", data={"note": "受理"}, headers=HTMX)
        assert 'data-removal-state="under_review"' in reviewed.text and 'data-act="approve"' in reviewed.text
        assert client.post(f"{base}/approve", data={"reasons": ""}, headers=HTMX).status_code == 422
        approved = client.post(f"{base}/approve", data={"reasons": "债务已清偿"}, headers=HTMX)
        assert approved.status_code == 200 and 'data-removal-state="disarm_pending"' in approved.text
        assert f'data-device="{SEAL}" data-progress="sent"' in approved.text
        with world.session_factory() as session:
            command = session.scalars(select(CourtCommand).where(CourtCommand.action == "disarm")).one()
        ack = {"command_id": command.id, "action": "disarm", "result": "disarmed"}
        world.ingest((world.seal.event_topic, world.seal.event(EventType.COMMAND_ACK, ack)))
        with session_scope(world.session_factory) as session:
            assert settle(session, request_id=request_id, now=utc_now())
        html = client.get(CASE_URL).text
        assert 'data-removal-state="disarmed"' in html and 'data-progress="disarmed"' in html
        assert 'data-act="lift"' not in html  # the officer's
    with world.client("officer") as client:
        lifted = client.post(f"{base}/lifted", data={"note": "现场已拆除"}, headers=HTMX)
        assert 'data-removal-state="lifted"' in lifted.text
        assert "已解除查封" in client.get(CASE_URL).text
    with world.session_factory() as session:
        query = select(AuditEntry.action).where(AuditEntry.action.like("removal.%")).order_by(AuditEntry.id)
        actions = session.scalars(query).all()
    assert actions == ["removal.file", "removal.review", "removal.approve", "removal.issue_disarm"] + [
        "removal.confirm_disarmed",
        "removal.lift",
    ]


def snapshot_dir(world: PagesWorld) -> Path:
    backend = world.ingestor.snapshots.backend
    assert isinstance(backend, DirectoryObjects)
    return backend.directory


def test_a_command_the_seal_refused_says_why_in_the_pages_language(world: PagesWorld) -> None:
    """The seal's reason is a token of the protocol (``wrong_case``); the commands' panel says it in words, Chinese
    first, as it says the command's state (every reason has words: test_i18n)."""
    with world.client("officer") as client:
        sent = client.post(
            f"{CASE_URL}/commands",
            data=ping_form(client),
            headers=HTMX,
        )
        [command_id] = re.findall(r'data-command-id="(\d+)"', sent.text)
        refusal = {"command_id": int(command_id), "reason": "wrong_case", "detail": "issued for case (2020)…"}
        world.ingest((world.seal.event_topic, world.seal.event(EventType.COMMAND_REJECTED, refusal)))
        page = client.get(CASE_URL).text
    panel = page.split('<section id="case-commands"')[1].split("</section>")[0]
    assert f'data-command-id="{command_id}" data-action="ping" data-state="rejected"' in panel
    assert "案号不符（封条已用于其他案件）" in panel and "wrong_case" not in panel


def test_a_command_s_result_is_said_in_words_in_the_pages_language(world: PagesWorld) -> None:
    """The result the seal signed in its ack is a token of the protocol (``pong``); the commands' panel says it in
    words, as it says the command's state (every result has words: test_i18n)."""
    with world.client("officer") as client:
        sent = client.post(
            f"{CASE_URL}/commands",
            data=ping_form(client),
            headers=HTMX,
        )
        [command_id] = re.findall(r'data-command-id="(\d+)"', sent.text)
        answer = {"command_id": int(command_id), "action": "ping", "result": "pong", "armed": True, "camera": "ok"}
        world.ingest((world.seal.event_topic, world.seal.event(EventType.COMMAND_ACK, answer)))
        panels = {}
        for lang in ("zh-CN", "en"):
            client.cookies.set("seal_lang", lang)
            panels[lang] = client.get(CASE_URL).text.split('<section id="case-commands"')[1].split("</section>")[0]
    assert f'data-command-id="{command_id}" data-action="ping" data-state="acknowledged"' in panels["zh-CN"]
    assert "连通正常" in panels["zh-CN"] and "Reachable" in panels["en"]
    assert all("pong" not in panel for panel in panels.values())


def test_a_removal_request_s_history_says_its_steps_in_words_in_the_pages_language(world: PagesWorld) -> None:
    """A step of the history is a token (``file``, ``review``); the page says it in words, as the portal's history
    and the evidence report do (every step has words: test_i18n)."""
    request_id = file_removal(world)
    with world.client("judge") as client:
        client.post(f"{CASE_URL}/removal/{request_id}/review", data={"note": "受理"}, headers=HTMX)
        histories = {}
        for lang in ("zh-CN", "en"):
            client.cookies.set("seal_lang", lang)
            page = client.get(CASE_URL).text
            histories[lang] = page.split(f'id="removal-{request_id}"')[1].split("<summary>")[1].split("</ol>")[0]
    assert '<span data-step="file">提交申请</span>' in histories["zh-CN"]
    assert '<span data-step="review">受理审查</span>' in histories["zh-CN"]
    assert '<span data-step="file">Filed</span>' in histories["en"]
    assert '<span data-step="review">Taken up for review</span>' in histories["en"]


def test_an_arm_the_seal_never_answered_is_an_alarm_that_names_the_command(world: PagesWorld) -> None:
    """The judge's case page, the overview and the creditor's page say which command went unanswered."""
    with session_scope(world.session_factory) as session:
        seal = session.scalars(select(Seal).where(Seal.device_id == SEAL)).one()
        clerk = get_user(session, username="clerk")
        key, now = generate_signing_key(), utc_now()
        arm = issue_command(
            session, seal=seal, action=CommandAction.ARM, args={}, key=key, ttl=TTL, user=clerk, now=now
        )
        command_id = arm.id
    assert run_round(world.session_factory) == [command_id]
    shown = f'data-command-id="{command_id}"'
    for username, path in (
        ("judge", f"/cases/{quote(CASE)}"),
        ("judge", "/"),
        ("creditor", f"/creditor/cases/{quote(CASE)}"),
    ):
        with world.client(username) as client:
            html = client.get(path).text
        assert 'data-kind="arm_failed"' in html and shown in html, (username, path)
        assert f"指令 #{command_id}：超时未应答" in html and "布防指令未执行" in html, (username, path)


def test_a_removal_step_the_request_s_state_refuses_is_said_in_the_court_s_words(world: PagesWorld) -> None:
    """The case page's 409 for a removal step says what the request's state is and what cannot be done, in
    Chinese (in English on an English page) — not the workflow's internal names."""
    request_id = file_removal(world)
    with world.client("officer") as client:
        token = csrf_of(client.get(CASE_URL).text)
        refused = client.post(f"{CASE_URL}/removal/{request_id}/lifted", data={"csrf_token": token})
        assert refused.status_code == 409
        assert "该申请目前为“已提交”，已不能确认现场拆除。" in refused.text
        assert "submitted" not in refused.text and "allows" not in refused.text
        client.cookies.set("seal_lang", "en")
        english = client.post(f"{CASE_URL}/removal/{request_id}/lifted", data={"csrf_token": token})
        assert english.status_code == 409
        assert "The request is now “Submitted”: confirming the removal on site is no longer possible." in english.text
