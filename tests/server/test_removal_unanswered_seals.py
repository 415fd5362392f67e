"""Seals that do not answer as they should: one that never acknowledges (stolen, broken) is lifted without its
acknowledgement by the judge's decision, or the approval is withdrawn; the case is held by its open request (its
seals are not unbound, nor the case closed, around it); a seal that says it is armed again is not lifted; a command
decided for one case never reaches — nor counts for — a seal that seals another's property; and a seal bound while
the judge approves is either disarmed or refused, never lifted armed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from seal_protocol import EventType
from seal_protocol.commands import CommandAction
from seal_protocol.signing import generate_signing_key, public_key_b64
from server.app import create_app
from server.audit.models import AuditEntry
from server.auth.users import get_user
from server.commands.dispatcher import CommandDispatcher
from server.commands.models import CourtCommand
from server.commands.service import issue_command, to_publish
from server.config import CommandSettings, RemovalSettings
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.errors import Conflict
from server.removal.disarm import approve_request
from server.removal.steps import get_request, hold_of
from server.seals.models import Seal
from server.seals.registry import add_seal, bind_seal, get_seal, register_seal, unbind_seal
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A, CASE_B
from tests.server.removal_world import RemovalWorld, c, make_world


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    settings = make_settings(database_url, tmp_path)
    settings = settings.model_copy(
        update={
            "commands": CommandSettings(signing_key_file=settings.commands.signing_key_file, ttl_s=60),
            "removal": RemovalSettings(proof_max_bytes=64 * 1024, proof_max_files=3),
        }
    )
    with TestClient(create_app(settings, with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def case_status(world: RemovalWorld, case_no: str = CASE_A) -> str:
    status: str = world.client.get(f"/api/cases/{c(case_no)}", headers=world.as_("clerk")).json()["status"]
    return status


def audited(world: RemovalWorld, action: str) -> list[AuditEntry]:
    with world.session_factory() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def command(world: RemovalWorld, command_id: int) -> CourtCommand:
    with world.session_factory() as session:
        row = session.get(CourtCommand, command_id)
        assert row is not None
        return row


def publishable(world: RemovalWorld) -> dict[int, tuple[str, str, str]]:
    with world.session_factory() as session:
        return {row.id: (row.device_id, row.case_no, row.action) for row in to_publish(session, now=utc_now())}


def unbind_by_hand(world: RemovalWorld, device_id: str, who: str = "officer") -> Any:
    return world.client.delete(f"/api/seals/{device_id}/binding", headers=world.as_(who))


def close(world: RemovalWorld, case_no: str = CASE_A) -> Any:
    body = {"status": "closed"}
    return world.client.put(f"/api/cases/{c(case_no)}/status", json=body, headers=world.as_("clerk"))


def test_a_seal_that_never_answers_is_lifted_without_its_ack_by_the_judge_s_decision(world: RemovalWorld) -> None:
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    world.answer("seal-a1", commands["seal-a1"].id)  # a2 is gone (stolen, broken) and never answers

    # No way around the request: the seal stays bound, the case open for the request, the lifting waits.
    held = unbind_by_hand(world, "seal-a2")
    assert held.status_code == 409 and f"removal-request:{request_id}" in held.json()["detail"]
    assert world.act("officer", request_id, "lifted", {}).status_code == 409
    assert world.read(request_id)["state"] == "disarm_pending"

    # The judge's decision, with reasons, through the one transition function — once its disarm expired unanswered.
    body = {"device_ids": ["seal-a2"], "reasons": "封条已被盗，无法应答"}
    still_valid = world.act("judge", request_id, "lift-without-ack", body)
    assert still_valid.status_code == 409 and "seal-a2" in still_valid.json()["detail"]
    assert "sent" in still_valid.json()["detail"]
    world.expire(commands["seal-a2"].id)
    assert world.act("clerk", request_id, "lift-without-ack", body).status_code == 403  # the judge decides
    assert world.act("judge", request_id, "lift-without-ack", body | {"reasons": " "}).status_code == 422
    assert world.act("judge", request_id, "lift-without-ack", body | {"device_ids": ["seal-a1"]}).status_code == 409
    assert world.act("judge", request_id, "lift-without-ack", body | {"device_ids": ["seal-b"]}).status_code == 404
    decided = world.ok("judge", request_id, "lift-without-ack", body)
    assert decided["state"] == "disarmed"  # a1 had acknowledged: nothing else to wait for
    assert [(s["device_id"], s["status"]) for s in decided["seals"]] == [
        ("seal-a1", "disarmed"),
        ("seal-a2", "without_ack"),
    ]
    assert [(h["actor"], h["action"], h["to_state"]) for h in decided["history"][-2:]] == [
        ("judge", "lift_without_ack", "disarm_pending"),
        ("-", "confirm_disarmed", "disarmed"),
    ]
    assert "seal-a2 Waiting for the seal (expired: send again) (disarm #" in decided["history"][-1]["note"]
    [settled] = audited(world, "removal.confirm_disarmed")
    assert settled.details["without_ack"] == ["seal-a2"] and list(settled.details["acks"]) == ["seal-a1"]

    # On site, the officer says what became of the seal that never answered.
    refused = world.act("officer", request_id, "lifted", {"note": "现场拆除"})
    assert refused.status_code == 409 and "seal-a2" in refused.json()["detail"]
    wrong = world.act("officer", request_id, "lifted", {"found": {"seal-a1": "removed", "seal-a2": "missing"}})
    assert wrong.status_code == 409 and "seal-a1" in wrong.json()["detail"]
    bad = world.act("officer", request_id, "lifted", {"found": {"seal-a2": "lost"}})
    assert bad.status_code == 422
    lifted = world.ok(
        "officer", request_id, "lifted", {"note": "现场拆除一枚，另一枚不见", "found": {"seal-a2": "missing"}}
    )
    assert lifted["state"] == "lifted" and lifted["seals"][1]["found"] == "missing"
    assert case_status(world) == "lifted"
    [lift] = audited(world, "removal.lift")
    assert lift.details["found"] == {"seal-a2": "missing"} and lift.details["unbound"] == ["seal-a1", "seal-a2"]
    # The disarm the missing seal never answered had expired (the decision waits for that): it stays expired.
    assert command(world, commands["seal-a2"].id).state == "expired"
    assert close(world).status_code == 200  # the request is over: the case closes
    officer_inbox = world.client.get("/api/me/inbox", headers=world.as_("officer")).json()
    assert "removal.without_ack" in {m["kind"] for m in officer_inbox}


def test_the_judge_may_withdraw_the_approval_instead(world: RemovalWorld) -> None:
    """Abort: the request's unanswered disarms are no longer published, each seal is sent a signed arm (a higher
    command id than its disarm, so a seal that gets both ends armed), and the seizure stands."""
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    world.answer("seal-a1", commands["seal-a1"].id)
    assert world.act("judge", request_id, "abort", {"reasons": "  "}).status_code == 422
    assert world.act("officer", request_id, "abort", {"reasons": "x"}).status_code == 403
    aborted = world.ok("judge", request_id, "abort", {"reasons": "申请执行人提出执行异议，撤销准予"})
    assert (aborted["state"], aborted["next_actions"]) == ("aborted", [])
    assert case_status(world) == "sealed"
    assert command(world, commands["seal-a2"].id).state == "expired"
    sent = publishable(world)
    assert sorted((d, a) for d, _, a in sent.values()) == [("seal-a1", "arm"), ("seal-a2", "arm")]
    assert all(command_id > commands["seal-a2"].id for command_id in sent)
    [step] = audited(world, "removal.abort")
    assert set(step.details["arm"]) == {"seal-a1", "seal-a2"} and step.details["withdrawn"] == [commands["seal-a2"].id]
    debtor_inbox = world.client.get("/api/me/inbox", headers=world.as_("debtor")).json()
    assert debtor_inbox[0]["kind"] == "removal.aborted"
    assert world.file().status_code == 201  # the seizure stands: a new request may be filed


def test_an_open_request_holds_its_case(world: RemovalWorld, session_factory: SessionFactory) -> None:
    """While a request is open, its case's seals are unbound (by hand, or moved on the command line) and the case
    closed only through it; once the request is decided, they are again."""
    request_id = world.filed()
    assert unbind_by_hand(world, "seal-a1", "clerk").status_code == 409
    with pytest.raises(Conflict, match="held by removal-request"), session_scope(session_factory) as session:
        seal = get_seal(session, device_id="seal-a1")
        register_seal(session, actor=None, device_id="seal-a1", case_no=CASE_B, public_key=seal.public_key)
    world.ok("judge", request_id, "review")
    world.ok("judge", request_id, "reject", {"reasons": "证据不足"})
    assert unbind_by_hand(world, "seal-a1", "clerk").status_code == 204
    assert unbind_by_hand(world, "seal-a2", "clerk").status_code == 204
    assert close(world).status_code == 200


def test_a_seal_that_says_it_is_armed_again_is_not_lifted(world: RemovalWorld) -> None:
    """After its ack, a seal's signed event says it is armed again (an arm sent meanwhile): the request goes back to
    ``disarm_pending`` and the officer's confirmation is refused until the seal has acknowledged a new disarm."""
    request_id = world.filed()
    for device_id, row in world.commands(world.approved(request_id)).items():
        world.answer(device_id, row.id)
    assert world.read(request_id)["state"] == "disarmed"
    seal = world.seals["seal-a1"]
    world.ingestor.ingest([message_of(seal, EventType.ARMED, {"reason": "command", "by": "court"})])
    shown = world.read(request_id, "officer")
    assert shown["state"] == "disarm_pending" and [s["status"] for s in shown["seals"]] == ["rearmed", "disarmed"]
    refused = world.act("officer", request_id, "lifted", {})
    assert refused.status_code == 409 and "seal-a1" in refused.json()["detail"] and "armed again" in refused.text
    assert refused.json()["state"] == "disarm_pending"
    again = world.ok("judge", request_id, "resend-disarm", {"note": "封条又被布防"})
    assert again["state"] == "disarm_pending" and [s["commands"] for s in again["seals"]] == [2, 1]
    world.answer("seal-a1", again["seals"][0]["command_id"])
    assert world.read(request_id)["state"] == "disarmed"
    assert world.ok("officer", request_id, "lifted", {})["state"] == "lifted"


def message_of(seal: Any, type_: EventType, payload: dict[str, Any]) -> Any:
    from tests.server.helpers import message

    return message(seal.event_topic, seal.event(type_, payload))


def test_a_command_for_one_case_does_not_reach_the_seal_once_it_seals_another(
    world: RemovalWorld, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """Unbinding a seal expires its pending commands (recorded); a command issued for a case its seal is no longer
    bound to is not published, also when the seal was moved on the command line (the dispatcher expires it)."""
    ping = world.client.post("/api/seals/seal-b/commands", json={"action": "ping"}, headers=world.as_("judge-b"))
    assert ping.status_code == 202 and ping.json()["command_id"] in publishable(world)
    assert unbind_by_hand(world, "seal-b", "clerk").status_code == 204
    assert command(world, ping.json()["command_id"]).state == "expired"
    [expired] = audited(world, "command.expire")
    assert expired.details["command_id"] == ping.json()["command_id"] and "unbound by hand" in expired.details["note"]

    # Moved on the command line (registered again for another case): not published, then expired by a round.
    with session_scope(session_factory) as session:
        add_seal(session, actor=None, device_id="seal-c", public_key=public_key_b64(generate_signing_key()))
        bind_seal(session, actor=None, device_id="seal-c", case_no=CASE_B)
        key = world.client.app.state.context.court_key.get()  # type: ignore[attr-defined]
        judge = get_user(session, username="judge-b")
        seal = get_seal(session, device_id="seal-c")
        row = issue_command(
            session,
            seal=seal,
            action=CommandAction.PING,
            args={},
            key=key,
            ttl=timedelta(hours=1),
            user=judge,
            now=utc_now(),
        )
        pending = row.id
    with session_scope(session_factory) as session:
        seal = get_seal(session, device_id="seal-c")
        register_seal(session, actor=None, device_id="seal-c", case_no=CASE_A, public_key=seal.public_key)
    assert pending not in publishable(world)
    settings = world.client.app.state.context.settings  # type: ignore[attr-defined]
    dispatcher = CommandDispatcher(settings.mqtt, settings.commands, session_factory)
    assert pending in dispatcher.run_round().expired  # not connected: the round only expires
    assert command(world, pending).state == "expired"


def test_an_ack_counts_only_from_a_seal_bound_to_the_request_s_case(
    world: RemovalWorld, session_factory: SessionFactory
) -> None:
    """A seal that left the case while the request was open (as it could before cases were held) and answers the
    disarm while it seals case B's property: its ack does not count for case A's request."""
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    with session_scope(session_factory) as session:
        through = hold_of(get_request(session, request_id=request_id))
        unbind_seal(session, actor=None, device_id="seal-a2", through=through)
        bind_seal(session, actor=None, device_id="seal-a2", case_no=CASE_B)
    assert commands["seal-a2"].id not in publishable(world)  # case A's disarm does not go to case B's seal
    world.answer("seal-a1", commands["seal-a1"].id)
    world.seals["seal-a2"].case_no = CASE_B
    world.answer("seal-a2", commands["seal-a2"].id)  # it got the disarm before it moved, and obeys it now
    # Its ack is stored in case B, B's evidence: case A's disarm takes no answer from it (it stays pending, until
    # its expiry: unpublished, as its seal seals another case).
    assert command(world, commands["seal-a2"].id).state == "pending"
    for status in ("sent", "waiting_for_seal"):
        shown = world.read(request_id, "judge")
        assert shown["state"] == "disarm_pending"
        assert [(s["device_id"], s["status"]) for s in shown["seals"]] == [("seal-a1", "disarmed"), ("seal-a2", status)]
        world.expire(commands["seal-a2"].id)


def test_a_seal_bound_without_a_disarm_keeps_the_request_from_being_lifted(
    world: RemovalWorld, session_factory: SessionFactory
) -> None:
    """The seals bound to the case must be exactly those that acknowledged (or were decided without): a seal on
    the case that was sent no disarm (bound around the workflow) is named, and the re-send sends it one."""
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    with session_scope(session_factory) as session:
        add_seal(session, actor=None, device_id="seal-a3", public_key=public_key_b64(generate_signing_key()))
        session.execute(update(Seal).where(Seal.device_id == "seal-a3").values(case_no=CASE_A))  # around it
    for device_id, row in commands.items():
        world.answer(device_id, row.id)
    assert world.read(request_id)["state"] == "disarm_pending"
    assert world.act("officer", request_id, "lifted", {}).status_code == 409
    again = world.ok("judge", request_id, "resend-disarm", {"device_id": "seal-a3"})
    assert [s["device_id"] for s in again["seals"]] == ["seal-a1", "seal-a2", "seal-a3"]


def _approve(world: RemovalWorld, request_id: int) -> None:
    with world.session_factory() as session:
        judge = get_user(session, username="judge")
        request = get_request(session, request_id=request_id, for_update=True)
        key = world.client.app.state.context.court_key.get()  # type: ignore[attr-defined]
        approve_request(
            session, actor=judge, request=request, reasons="准予", key=key, ttl=timedelta(seconds=60), now=utc_now()
        )
        session.commit()


def test_a_seal_bound_while_the_judge_approves_is_disarmed_or_refused(world: RemovalWorld) -> None:
    """Binding and approving both lock the case first: a seal bound at the moment of the approval is either bound
    before it (and sent the disarm) or refused after it (the case is lifting) — never lifted without a disarm."""
    request_id = world.filed()
    world.ok("judge", request_id, "review")
    factory = world.session_factory
    with session_scope(factory) as stock:
        for device_id in ("seal-a3", "seal-a4"):
            add_seal(stock, actor=None, device_id=device_id, public_key=public_key_b64(generate_signing_key()))

    # The officer's binding first (not committed yet): the approval waits for it, then includes the seal.
    binding = factory()
    try:
        bind_seal(binding, actor=None, device_id="seal-a3", case_no=CASE_A)
        approving = threading.Thread(target=_approve, args=(world, request_id))
        approving.start()
        approving.join(0.5)
        assert approving.is_alive(), "the approval did not wait for the binding in progress"
        binding.commit()
    finally:
        binding.close()
    approving.join(15)
    shown = world.read(request_id, "judge")
    assert [s["device_id"] for s in shown["seals"]] == ["seal-a1", "seal-a2", "seal-a3"]

    # Now the case is lifting: a binding is refused, whoever comes first.
    with pytest.raises(Conflict, match="lifting"), session_scope(factory) as session:
        bind_seal(session, actor=None, device_id="seal-a4", case_no=CASE_A)
    assert case_status(world) == "lifting"


def test_a_seal_bound_after_the_approval_began_waits_and_is_refused(world: RemovalWorld) -> None:
    request_id = world.filed(who="debtor-b", case_no=CASE_B)
    world.ok("judge-b", request_id, "review")
    factory = world.session_factory
    with session_scope(factory) as stock:
        add_seal(stock, actor=None, device_id="seal-b2", public_key=public_key_b64(generate_signing_key()))
    outcome: list[str] = []

    def bind() -> None:
        try:
            with session_scope(factory) as session:
                bind_seal(session, actor=None, device_id="seal-b2", case_no=CASE_B)
            outcome.append("bound")
        except Conflict as exc:
            outcome.append(str(exc))

    approval = factory()
    try:
        judge = get_user(approval, username="judge-b")
        request = get_request(approval, request_id=request_id, for_update=True)
        key = world.client.app.state.context.court_key.get()  # type: ignore[attr-defined]
        approve_request(
            approval, actor=judge, request=request, reasons="准予", key=key, ttl=timedelta(seconds=60), now=utc_now()
        )
        binding = threading.Thread(target=bind)
        binding.start()
        binding.join(0.5)
        assert binding.is_alive(), "the binding did not wait for the approval in progress"
        approval.commit()
    finally:
        approval.close()
    binding.join(15)
    assert len(outcome) == 1 and "is lifting" in outcome[0]
    assert [s["device_id"] for s in world.read(request_id, "judge-b")["seals"]] == ["seal-b"]
