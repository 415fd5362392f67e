"""The removal request through the API, without a broker (the seals' signed answers go through the real ingest):
approval disarms every seal and waits for each one's signed ack; the rejected and cancelled paths; one open request
per case; the creditor's views; every illegal move a 409 naming the current state; the audit log and the inboxes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from server.app import create_app
from server.audit.models import AuditEntry
from server.auth.users import get_user
from server.commands.service import expire_due
from server.commands.state import CommandState
from server.config import CommandSettings, RemovalSettings
from server.core.base import utc_now
from server.core.db import SessionFactory, make_session_factory
from server.core.metrics import IngestMetrics
from server.errors import Conflict
from server.ingest.ingestor import Ingestor
from server.notices.service import issue_notice
from server.removal.models import RemovalRequest
from server.removal.service import add_view
from server.removal.settler import settle_waiting
from server.removal.steps import get_request
from server.seals.cases import update_case, update_court
from server.seals.models import Seal
from tests.agent.helpers import wait_until
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A, CASE_B, COURT_CODE, COURT_PHONE, message, notice_facts
from tests.server.removal_world import RemovalWorld, c, make_world

#: The disarm commands' lifetime: the test that waits for it to pass first acts while it is valid, which on a loaded
#: machine (PostgreSQL, four test workers) took more than one second at ordinary speed, several when slower.
TTL_S = 20


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    settings = make_settings(database_url, tmp_path)
    settings = settings.model_copy(
        update={
            "commands": CommandSettings(signing_key_file=settings.commands.signing_key_file, ttl_s=TTL_S),
            "removal": RemovalSettings(proof_max_bytes=64 * 1024, proof_max_files=3),
        }
    )
    with TestClient(create_app(settings, with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def audit(world: RemovalWorld, prefix: str = "removal.") -> list[tuple[str, str, str, str]]:
    with world.session_factory() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action.startswith(prefix)).order_by(AuditEntry.id)
        )
        return [(e.actor, e.action, e.details["from"] or "", e.details["to"]) for e in entries]


def case_status(world: RemovalWorld) -> str:
    status: str = world.client.get(f"/api/cases/{c(CASE_A)}", headers=world.as_("judge")).json()["status"]
    return status


def inbox(world: RemovalWorld, who: str) -> list[str]:
    response = world.client.get("/api/me/inbox", headers=world.as_(who))
    assert response.status_code == 200, response.text
    return [m["kind"] for m in reversed(response.json())]


def test_approval_disarms_every_seal_and_waits_for_each_signed_ack(world: RemovalWorld) -> None:
    request_id = world.filed()
    shown = world.read(request_id)
    assert (shown["state"], shown["ground"], shown["ground_zh"]) == ("submitted", "paid_in_full", "债务已经清偿")
    [proof] = shown["proofs"]
    assert (proof["media_type"], proof["filename"]) == ("application/pdf", "回单.pdf")
    download = world.client.get(proof["url"], headers=world.as_("judge"))
    assert download.status_code == 200 and download.headers["content-type"] == "application/pdf"
    assert download.headers["x-content-type-options"] == "nosniff"

    viewed = world.ok("creditor", request_id, "views", {"text": "同意解除，款项已收到。"})
    assert [v["text"] for v in viewed["views"]] == ["同意解除，款项已收到。"]
    assert world.read(request_id, "judge")["views"][0]["author"] == "creditor"

    assert case_status(world) == "sealed"
    approved = world.approved(request_id)
    assert approved["state"] == "disarm_pending" and approved["decision_reasons"] == "债务已清偿，准予解除查封。"
    assert case_status(world) == "lifting"
    assert [(s["device_id"], s["status"]) for s in approved["seals"]] == [("seal-a1", "sent"), ("seal-a2", "sent")]
    commands = world.commands(approved)
    assert {row.action for row in commands.values()} == {"disarm"}

    world.answer("seal-a1", commands["seal-a1"].id)
    half = world.read(request_id, "judge")
    assert half["state"] == "disarm_pending"
    assert [s["status"] for s in half["seals"]] == ["disarmed", "sent"]
    world.answer("seal-a2", commands["seal-a2"].id)
    done = world.read(request_id)  # settled on read: the last signed ack is in
    assert done["state"] == "disarmed" and done["disarmed_at"] is not None

    lifted = world.ok("officer", request_id, "lifted", {"note": "现场拆除封条两枚"})
    assert (lifted["state"], lifted["lifted_by"]) == ("lifted", "officer")
    assert case_status(world) == "lifted"
    assert world.file().status_code == 409  # nothing is sealed any more
    with world.session_factory() as session:
        assert session.scalars(select(Seal.case_no).where(Seal.device_id.in_(["seal-a1", "seal-a2"]))).all() == [
            None,
            None,
        ]
    assert audit(world) == [
        ("debtor", "removal.file", "", "submitted"),
        ("creditor", "removal.comment", "submitted", "submitted"),
        ("judge", "removal.review", "submitted", "under_review"),
        ("judge", "removal.approve", "under_review", "approved"),
        ("judge", "removal.issue_disarm", "approved", "disarm_pending"),
        ("-", "removal.confirm_disarmed", "disarm_pending", "disarmed"),
        ("officer", "removal.lift", "disarmed", "lifted"),
    ]
    assert [(s["actor"], s["action"], s["to_state"]) for s in lifted["history"]][-1] == ("officer", "lift", "lifted")
    assert inbox(world, "debtor") == [
        "removal.filed",
        "removal.under_review",
        "removal.approved",
        "removal.disarmed",
        "removal.lifted",
    ]
    assert inbox(world, "creditor") == ["removal.filed", "removal.approved", "removal.lifted"]
    assert inbox(world, "judge") == [
        "removal.filed",
        "removal.view",
        "removal.approved",
        "removal.disarmed",
        "removal.lifted",
    ]
    assert inbox(world, "officer") == ["removal.disarmed"]
    assert inbox(world, "judge-b") == []


def test_a_seal_offline_past_the_expiry_is_waited_for_and_sent_a_new_disarm(world: RemovalWorld) -> None:
    request_id = world.filed()
    approved = world.approved(request_id)
    first = world.commands(approved)
    world.answer("seal-a1", first["seal-a1"].id)
    early = world.act("judge", request_id, "resend-disarm", {})
    assert early.status_code == 409 and "seal-a2: sent" in early.json()["detail"]  # still valid: nothing to re-send

    assert wait_until(lambda: world.read(request_id, "judge")["seals"][1]["status"] == "waiting_for_seal", TTL_S + 30)
    waiting = world.read(request_id, "judge")
    assert [(s["device_id"], s["status"]) for s in waiting["seals"]] == [
        ("seal-a1", "disarmed"),
        ("seal-a2", "waiting_for_seal"),
    ]
    assert waiting["seals"][1]["status_zh"].startswith("等待封条上线")
    assert world.act("officer", request_id, "lifted").json()["state"] == "disarm_pending"  # 409: not yet

    again = world.ok("clerk", request_id, "resend-disarm", {"note": "封条离线，重新发送"})
    a2 = again["seals"][1]
    assert (a2["status"], a2["commands"]) == ("sent", 2) and a2["command_id"] != first["seal-a2"].id
    world.answer("seal-a2", a2["command_id"])
    assert world.read(request_id)["state"] == "disarmed"
    assert ("clerk", "removal.resend_disarm", "disarm_pending", "disarm_pending") in audit(world)


def test_a_refused_disarm_can_be_sent_again(world: RemovalWorld) -> None:
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    world.answer("seal-a1", commands["seal-a1"].id, ack=False)
    shown = world.read(request_id, "judge")
    assert shown["seals"][0]["status"] == "refused" and shown["seals"][0]["reason"] == "expired"
    again = world.ok("judge", request_id, "resend-disarm", {"device_id": "seal-a1"})
    assert [s["commands"] for s in again["seals"]] == [2, 1]


def test_rejected_path_keeps_the_seals_and_allows_a_new_request(world: RemovalWorld) -> None:
    request_id = world.filed()
    world.ok("judge", request_id, "review")
    assert world.act("judge", request_id, "reject", {"reasons": ""}).status_code == 422
    assert world.act("judge", request_id, "reject", {"reasons": " \n "}).status_code == 422
    assert world.act("judge", request_id, "approve", {"reasons": "  "}).status_code == 422
    rejected = world.ok("judge", request_id, "reject", {"reasons": "回单与案件金额不符。"})
    assert (rejected["state"], rejected["decided_by"], rejected["next_actions"]) == ("rejected", "judge", [])
    assert rejected["seals"] == []
    with world.session_factory() as session:
        assert session.scalars(select(Seal.case_no).where(Seal.device_id == "seal-a1")).one() == CASE_A
    assert inbox(world, "debtor")[-1] == "removal.rejected" and inbox(world, "creditor")[-1] == "removal.rejected"
    assert case_status(world) == "sealed"
    assert world.file().status_code == 201  # decided: a new request may be filed


def test_cancelled_path_and_one_open_request_per_case(world: RemovalWorld) -> None:
    request_id = world.filed()
    second = world.file()
    assert second.status_code == 409 and f"no. {request_id}" in second.json()["detail"]
    assert world.file("debtor-b", CASE_B).status_code == 201  # another case is another matter
    cancelled = world.ok("debtor", request_id, "cancel", {"note": "已与申请人协商"})
    assert cancelled["state"] == "cancelled"
    assert inbox(world, "judge")[-1] == "removal.cancelled"
    assert world.file().status_code == 201


def test_views_end_with_the_decision(world: RemovalWorld) -> None:
    request_id = world.filed()
    world.ok("judge", request_id, "review")
    world.ok("creditor", request_id, "views", {"text": "第一份意见"})
    world.ok("creditor", request_id, "views", {"text": "补充意见"})
    world.ok("judge", request_id, "reject", {"reasons": "证据不足"})
    late = world.act("creditor", request_id, "views", {"text": "迟到的意见"})
    assert late.status_code == 409 and late.json()["state"] == "rejected"
    assert [v["text"] for v in world.read(request_id, "judge")["views"]] == ["第一份意见", "补充意见"]


#: (role, action route, body) of each action.
ACTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "review": ("judge", {}),
    "cancel": ("debtor", {}),
    "views": ("creditor", {"text": "意见"}),
    "approve": ("judge", {"reasons": "准予"}),
    "reject": ("judge", {"reasons": "驳回"}),
    "resend-disarm": ("judge", {}),
    "lift-without-ack": ("judge", {"device_ids": ["seal-a2"], "reasons": "封条被毁"}),
    "abort": ("judge", {"reasons": "撤销"}),
    "lifted": ("officer", {}),
}
#: The actions each state reached through the API allows (approved passes at once to disarm_pending).
LEGAL = {
    "submitted": {"review", "cancel", "views"},
    "under_review": {"cancel", "views", "approve", "reject"},
    # resend-disarm once a seal is waiting for a new disarm (in disarmed: once one says it is armed again)
    "disarm_pending": {"resend-disarm", "lift-without-ack", "abort"},
    "disarmed": {"lifted", "resend-disarm", "abort"},
    "rejected": set(),
    "cancelled": set(),
    "aborted": set(),
    "lifted": set(),
}


def reach(world: RemovalWorld, state: str) -> int:
    """A fresh request in ``state`` (earlier ones decided or withdrawn first)."""
    request_id = world.filed()
    path = {
        "submitted": [],
        "under_review": ["review"],
        "rejected": ["review", "reject"],
        "cancelled": ["cancel"],
        "disarm_pending": ["review", "approve"],
    }.get(state, ["review", "approve"])
    for action in path:
        who, body = ACTIONS[action]
        world.ok(who, request_id, action, body)
    if state in ("disarmed", "lifted"):
        for device_id, row in world.commands(world.read(request_id, "judge")).items():
            world.answer(device_id, row.id)
        assert world.read(request_id)["state"] == "disarmed"
        if state == "lifted":
            world.ok("officer", request_id, "lifted")
    if state == "aborted":
        world.ok("judge", request_id, "abort", {"reasons": "申请执行人提出异议"})
    return request_id


@pytest.mark.parametrize("state", list(LEGAL))
def test_every_illegal_move_is_a_409_naming_the_state(world: RemovalWorld, state: str) -> None:
    request_id = reach(world, state)
    for action, (who, body) in ACTIONS.items():
        if action in LEGAL[state]:
            continue
        response = world.act(who, request_id, action, body)
        assert response.status_code == 409, (state, action, response.text)
        assert response.json()["state"] == state, (state, action, response.text)
    assert world.read(request_id)["state"] == state


def test_only_the_right_people_act(world: RemovalWorld) -> None:
    request_id = world.filed()
    assert world.act("clerk", request_id, "cancel").status_code == 403  # the debtor's to withdraw
    assert world.act("creditor", request_id, "review").status_code == 403
    assert world.act("judge-b", request_id, "review").status_code == 404  # another case's request does not exist
    assert world.client.get(f"/api/removal-requests/{request_id}", headers=world.as_("debtor-b")).status_code == 404
    assert world.file("debtor-b", CASE_A).status_code == 404
    assert world.file("clerk").status_code == 403
    world.ok("clerk", request_id, "review")  # a clerk may take it up
    assert world.act("clerk", request_id, "approve", {"reasons": "x"}).status_code == 403  # the judge decides
    listed = world.client.get(f"/api/cases/{c(CASE_A)}/removal-requests", headers=world.as_("creditor"))
    assert [r["request_id"] for r in listed.json()] == [request_id]


def test_an_ack_that_came_too_late_for_the_command_still_counts(world: RemovalWorld) -> None:
    """The seal checks the expiry by its own clock: an ack stored after the court marked the command expired is an
    ack all the same (the command goes expired → acknowledged), and the seal is disarmed."""
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    with world.session_factory() as session:  # the court's expiry round, once the command's life has passed
        expire_due(session, now=utc_now() + timedelta(seconds=TTL_S + 1))
        session.commit()
    for device_id, row in commands.items():
        world.answer(device_id, row.id)
    assert world.commands(world.read(request_id, "judge"))["seal-a1"].state == CommandState.ACKNOWLEDGED
    assert world.read(request_id)["state"] == "disarmed"


def test_the_inbox_is_each_user_s_own(world: RemovalWorld) -> None:
    request_id = world.filed()
    [message] = world.client.get("/api/me/inbox", headers=world.as_("creditor")).json()
    assert (message["kind"], message["case_no"], message["ref"]) == (
        "removal.filed",
        CASE_A,
        f"removal-request:{request_id}",
    )
    assert message["text_zh"].startswith(f"案件{CASE_A}的被执行人提交了解除查封申请") and message["read_at"] is None
    assert world.client.post(f"/api/me/inbox/{message['id']}/read", headers=world.as_("judge")).status_code == 404
    read = world.client.post(f"/api/me/inbox/{message['id']}/read", headers=world.as_("creditor"))
    assert read.status_code == 200 and read.json()["read_at"] is not None
    assert world.client.get("/api/me/inbox?unread=true", headers=world.as_("creditor")).json() == []
    assert len(world.client.get("/api/me/inbox?unread=true", headers=world.as_("judge")).json()) == 1


def test_a_user_taken_off_the_case_no_longer_reads_its_messages(world: RemovalWorld) -> None:
    """The inbox shows a case's messages only to whom may see the case now: the creditor taken off case A neither
    lists nor marks read what was said of it (on the API and the page), and reads it again once put back."""
    world.filed()
    [message] = world.client.get("/api/me/inbox", headers=world.as_("creditor")).json()
    assert "解除查封申请" in world.client.get("/inbox", headers=world.as_("creditor")).text
    off = world.client.delete(f"/api/cases/{c(CASE_A)}/assignments/creditor", headers=world.as_("clerk"))
    assert off.status_code == 204, off.text
    assert world.client.get("/api/me/inbox", headers=world.as_("creditor")).json() == []
    assert world.client.post(f"/api/me/inbox/{message['id']}/read", headers=world.as_("creditor")).status_code == 404
    page = world.client.get("/inbox", headers=world.as_("creditor"))
    assert page.status_code == 200 and CASE_A not in page.text and "解除查封申请" not in page.text
    back = world.client.post(
        f"/api/cases/{c(CASE_A)}/assignments", json={"username": "creditor"}, headers=world.as_("clerk")
    )
    assert back.status_code == 201, back.text
    [again] = world.client.get("/api/me/inbox", headers=world.as_("creditor")).json()
    assert again["id"] == message["id"] and again["read_at"] is None


def test_the_ingest_wakes_the_settler_once_an_answer_is_committed(
    world: RemovalWorld, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """The ingest knows nothing of removal requests: it calls back after committing a seal's answer, and the
    settler (in its own transactions) finds the request whose last seal has just acknowledged."""
    settled: list[list[int]] = []
    world.ingestor = Ingestor(
        session_factory,
        metrics=IngestMetrics(),
        snapshot_dir=tmp_path / "snapshots",
        on_answer=lambda: settled.append(settle_waiting(session_factory, now=utc_now())),
    )
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    world.answer("seal-a1", commands["seal-a1"].id)
    seal = world.seals["seal-a2"]
    world.ingestor.ingest([message(seal.event_topic, seal.event())])  # a heartbeat answers nothing
    assert settled == [[]]
    world.answer("seal-a2", commands["seal-a2"].id)
    assert settled == [[], [request_id]]
    listed = world.client.get(f"/api/cases/{c(CASE_A)}/removal-requests", headers=world.as_("judge")).json()
    assert listed[0]["state"] == "disarmed"  # the list does not settle: the settler did


def test_views_end_when_their_time_is_over(world: RemovalWorld) -> None:
    request_id = world.filed()
    with world.session_factory() as session:
        request = get_request(session, request_id=request_id)
        creditor = get_user(session, username="creditor")
        late = request.views_due_at + timedelta(seconds=1)
        with pytest.raises(Conflict, match="the time for views"):
            add_view(session, actor=creditor, request=request, text="迟了", now=late)
        add_view(session, actor=creditor, request=request, text="及时", now=late - timedelta(seconds=2))
        session.commit()
    assert [v["text"] for v in world.read(request_id, "judge")["views"]] == ["及时"]


def test_lifting_revokes_the_notices_on_the_door(world: RemovalWorld) -> None:
    """After the lifting the notice on the door no longer says "authentic notice of this court": it says the
    seizure was lifted."""
    context = world.client.app.state.context  # type: ignore[attr-defined]
    with world.session_factory() as session:
        update_court(session, actor=None, code=COURT_CODE, changes={"phone": COURT_PHONE})  # every fact a notice prints
        update_case(session, actor=None, case_no=CASE_A, changes=notice_facts(CASE_A))
        issued = issue_notice(
            session,
            actor=None,
            device_id="seal-a1",
            key=context.notice_key.get(),
            default_validity=timedelta(days=365),
            now=utc_now(),
        )
        session.commit()
    request_id = reach(world, "lifted")
    verdict = world.client.get("/api/notices/verify", params={"token": issued.token}).json()
    assert (verdict["case_status"], verdict["seal"]["still_bound"]) == ("lifted", False)
    assert (verdict["authentic"], verdict["reason"]) == (False, "lifted")
    assert verdict["reason_text"].startswith("查封已解除")
    assert "查封已解除" in world.client.get(f"/notice/{issued.token}").text
    with world.session_factory() as session:
        [entry] = session.scalars(select(AuditEntry).where(AuditEntry.action == "notice.revoke")).all()
        assert entry.details["reason"] == "lifted" and f"removal request {request_id}" in entry.details["note"]


def test_a_blank_view_is_refused(world: RemovalWorld) -> None:
    request_id = world.filed()
    assert world.act("creditor", request_id, "views", {"text": " \n\u3000"}).status_code == 422
    assert world.read(request_id, "judge")["views"] == []


def test_proofs_are_not_cached_and_a_lost_one_is_an_error(
    world: RemovalWorld, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    request_id = world.filed()
    [proof] = world.read(request_id)["proofs"]
    download = world.client.get(proof["url"], headers=world.as_("judge"))
    assert download.status_code == 200 and download.headers["cache-control"] == "no-store"
    (tmp_path / "removal-proofs" / f"{proof['sha256']}.pdf").unlink()
    with caplog.at_level(logging.ERROR, logger="server.api.removal_requests"):
        assert world.client.get(proof["url"], headers=world.as_("judge")).status_code == 404
    assert any("evidence is lost" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


def test_the_settler_goes_on_past_a_request_it_cannot_settle(
    world: RemovalWorld, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """One request whose settling fails (here the database refuses its write) is logged and counted; the others
    are settled all the same."""
    first, second = world.filed(), world.filed(who="debtor-b", case_no=CASE_B)
    world.approved(first)
    world.ok("judge-b", second, "review")
    world.ok("judge-b", second, "approve", {"reasons": "准予"})
    for request_id in (first, second):
        for device_id, row in world.commands(world.read(request_id, "clerk")).items():
            world.answer(device_id, row.id)
    factory = make_session_factory(engine)

    @event.listens_for(factory, "before_flush")
    def refuse(session: Session, _context: object, _instances: object) -> None:
        if any(isinstance(o, RemovalRequest) and o.id == first for o in session.dirty):
            raise RuntimeError("the disk is full")

    metrics = IngestMetrics()
    with caplog.at_level(logging.ERROR, logger="server.removal.settler"):
        assert settle_waiting(factory, now=utc_now(), metrics=metrics) == [second]
    assert any(f"removal request {first} could not be settled" in r.getMessage() for r in caplog.records)
    assert metrics.registry.get_sample_value("seal_removal_settle_failures_total") == 1
