"""The judge's decision to lift a seal without its acknowledgement (a waiver) covers a seal that does not answer,
and nothing else: it is taken only for a seal whose disarm expired unanswered or that refused it; the seal's own
signed word received after it — its ack, a signed event saying it is armed — takes precedence; the history, the
audit log and the inboxes say how each seal stood; and the debtor is not told which seal is deaf."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from seal_protocol import EventType
from server.app import create_app
from server.audit.models import AuditEntry
from server.config import CommandSettings, RemovalSettings
from server.core.db import SessionFactory
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A, message
from tests.server.removal_world import RemovalWorld, c, make_world

STOLEN = {"device_ids": ["seal-a2"], "reasons": "封条失联，经查被盗"}


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


def audited(world: RemovalWorld, action: str) -> list[AuditEntry]:
    with world.session_factory() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def statuses(world: RemovalWorld, request_id: int, who: str = "judge") -> list[tuple[str, str]]:
    return [(s["device_id"], s["status"]) for s in world.read(request_id, who)["seals"]]


def waived_with_a1_acknowledged(world: RemovalWorld) -> tuple[int, dict[str, Any]]:
    """a1 acknowledges; a2's disarm expires unanswered and the judge lifts it without: the request is disarmed."""
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    world.answer("seal-a1", commands["seal-a1"].id)
    world.expire(commands["seal-a2"].id)
    assert world.ok("judge", request_id, "lift-without-ack", STOLEN)["state"] == "disarmed"
    return request_id, {d: row.id for d, row in commands.items()}


def armed_event(world: RemovalWorld, device_id: str) -> None:
    seal = world.seals[device_id]
    world.ingestor.ingest([message(seal.event_topic, seal.event(EventType.ARMED, {"reason": "command"}))])


@pytest.mark.parametrize("says", ["heartbeat", "armed_event"])
def test_a_waived_seal_that_acknowledges_late_then_says_it_is_armed_is_not_lifted(
    world: RemovalWorld, says: str
) -> None:
    """Its expired disarm reached it after all (the broker kept it; the seal's clock lags): its ack counts, and a
    signed event after it saying armed stops the lifting — as for a seal never waived."""
    request_id, commands = waived_with_a1_acknowledged(world)
    world.answer("seal-a2", commands["seal-a2"])  # the late ack of the kept disarm
    assert statuses(world, request_id) == [("seal-a1", "disarmed"), ("seal-a2", "disarmed")]
    if says == "heartbeat":
        world.heard("seal-a2", armed=True)
    else:
        assert world.client.post("/api/seals/seal-a2/commands", json={"action": "arm"}, headers=world.as_("judge"))
        armed_event(world, "seal-a2")
    assert statuses(world, request_id) == [("seal-a1", "disarmed"), ("seal-a2", "rearmed")]
    refused = world.act("officer", request_id, "lifted", {"note": "现场拆除", "found": {"seal-a2": "removed"}})
    assert refused.status_code == 409 and "seal-a2" in refused.json()["detail"] and "armed again" in refused.text
    # The judge may not go without it either: it answers.
    again = world.act("judge", request_id, "resend-disarm", {"device_id": "seal-a2"})
    assert again.status_code == 200 and again.json()["state"] == "disarm_pending"


def test_a_late_ack_after_the_decision_counts_as_an_ack(world: RemovalWorld) -> None:
    request_id, commands = waived_with_a1_acknowledged(world)
    world.answer("seal-a2", commands["seal-a2"])
    assert statuses(world, request_id) == [("seal-a1", "disarmed"), ("seal-a2", "disarmed")]
    assert world.ok("officer", request_id, "lifted", {"note": "两枚均拆除"})["state"] == "lifted"


def test_no_found_is_taken_for_a_waived_seal_that_acknowledged_late(world: RemovalWorld) -> None:
    """The seal's signed acknowledgement overtook the waiver: the officer's word on it is refused, not recorded in
    the permanent log beside its ack."""
    request_id, commands = waived_with_a1_acknowledged(world)
    world.answer("seal-a2", commands["seal-a2"])
    refused = world.act("officer", request_id, "lifted", {"note": "现场", "found": {"seal-a2": "destroyed"}})
    assert refused.status_code == 409 and "seal-a2" in refused.json()["detail"]
    assert audited(world, "removal.lift") == []
    lifted = world.ok("officer", request_id, "lifted", {"note": "两枚均拆除"})
    assert lifted["state"] == "lifted" and all(seal.get("found") is None for seal in lifted["seals"])
    [entry] = audited(world, "removal.lift")
    assert entry.details is not None and entry.details["found"] == {}


def test_a_waived_seal_heard_armed_again_without_an_ack_holds_the_request_until_decided_again(
    world: RemovalWorld,
) -> None:
    """A waived seal that comes back online and says it is armed is no seal that does not answer: it is waited for
    again (re-sent a disarm); if that one expires unanswered too, the judge may decide again."""
    request_id, _ = waived_with_a1_acknowledged(world)
    world.heard("seal-a2", armed=False)  # disarmed by its own account: nothing against the decision
    assert statuses(world, request_id) == [("seal-a1", "disarmed"), ("seal-a2", "without_ack")]
    world.heard("seal-a2", armed=True)
    assert statuses(world, request_id) == [("seal-a1", "disarmed"), ("seal-a2", "waiting_for_seal")]
    refused = world.act("officer", request_id, "lifted", {"found": {"seal-a2": "removed"}})
    assert refused.status_code == 409 and "seal-a2" in refused.json()["detail"]
    resent = world.ok("judge", request_id, "resend-disarm", {"note": "封条又上线了"})
    assert resent["state"] == "disarm_pending" and resent["seals"][1]["status"] == "sent"
    assert world.act("judge", request_id, "lift-without-ack", STOLEN).status_code == 409  # its disarm is valid
    world.expire(resent["seals"][1]["command_id"])
    decided = world.ok("judge", request_id, "lift-without-ack", STOLEN | {"reasons": "再次失联"})
    assert decided["state"] == "disarmed" and decided["seals"][1]["status"] == "without_ack"
    lifted = world.ok("officer", request_id, "lifted", {"found": {"seal-a2": "missing"}})
    assert lifted["state"] == "lifted" and lifted["seals"][1]["found"] == "missing"


def test_only_a_seal_whose_disarm_expired_unanswered_or_that_refused_it_may_be_waived(world: RemovalWorld) -> None:
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    both = {"device_ids": ["seal-a1", "seal-a2"], "reasons": "不等了"}
    sent = world.act("judge", request_id, "lift-without-ack", both)  # seconds after the disarm went out
    detail = sent.json()["detail"]
    assert sent.status_code == 409 and "封条 seal-a1" in detail and " / " in detail and "seal 'seal-a1'" in detail
    assert "sent" in detail and statuses(world, request_id) == [("seal-a1", "sent"), ("seal-a2", "sent")]

    world.answer("seal-a2", commands["seal-a2"].id)  # it answers, then says it is armed again
    world.heard("seal-a2", armed=True)
    assert statuses(world, request_id)[1] == ("seal-a2", "rearmed")
    rearmed = world.act("judge", request_id, "lift-without-ack", STOLEN)
    assert rearmed.status_code == 409 and "rearmed" in rearmed.json()["detail"]
    assert audited(world, "removal.lift_without_ack") == []

    world.answer("seal-a1", commands["seal-a1"].id, ack=False)  # a1 refused it (its clock is broken)
    decided = world.ok("judge", request_id, "lift-without-ack", {"device_ids": ["seal-a1"], "reasons": "时钟故障"})
    assert decided["seals"][0]["status"] == "without_ack"


def test_the_record_says_how_each_waived_seal_stood(world: RemovalWorld) -> None:
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    world.answer("seal-a1", commands["seal-a1"].id, ack=False)
    world.expire(commands["seal-a2"].id)
    body = {"device_ids": ["seal-a1", "seal-a2"], "reasons": "一枚拒绝、一枚失联"}
    decided = world.ok("judge", request_id, "lift-without-ack", body)
    assert decided["state"] == "disarmed"
    [step] = audited(world, "removal.lift_without_ack")
    assert "never_acknowledged" not in step.details
    stood = step.details["as_they_stood"]
    assert (stood["seal-a1"]["status"], stood["seal-a1"]["command_state"]) == ("refused", "rejected")
    assert stood["seal-a1"]["reason"] == "expired"
    assert (stood["seal-a2"]["status"], stood["seal-a2"]["command_state"]) == ("waiting_for_seal", "expired")
    [settled] = audited(world, "removal.confirm_disarmed")
    assert settled.details["without_ack"] == ["seal-a1", "seal-a2"]
    assert settled.details["without_ack_as"]["seal-a1"]["status"] == "refused"
    note = decided["history"][-1]["note"]
    assert "never acknowledged" not in note
    assert f"seal-a1 封条拒绝了指令（可重新发送）（解除布防指令 #{commands['seal-a1'].id}：封条拒绝）" in note
    assert f"seal-a1 Refused by the seal (send again) (disarm #{commands['seal-a1'].id}: Refused by the seal)" in note
    assert f"seal-a2 Waiting for the seal (expired: send again) (disarm #{commands['seal-a2'].id}: No answer" in note


def test_the_inboxes_say_which_seals_were_lifted_without_acknowledgement(world: RemovalWorld) -> None:
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    world.expire(*(row.id for row in commands.values()))
    body = {"device_ids": ["seal-a1", "seal-a2"], "reasons": "封条失联"}
    decided = world.ok("judge", request_id, "lift-without-ack", body)
    assert decided["state"] == "disarmed" and decided["state_zh"].startswith("部分封条未确认解除布防")
    for who in ("officer", "judge"):  # the debtor is not told which seal is deaf (test_removal_deaf_seal_hidden)
        messages = world.client.get("/api/me/inbox", headers=world.as_(who)).json()
        kinds = [m["kind"] for m in messages]
        assert "removal.disarmed" not in kinds and "removal.disarmed_without_ack" in kinds, (who, kinds)
        [told] = [m for m in messages if m["kind"] == "removal.disarmed_without_ack"]
        zh, en = told["text_zh"], told["text_en"]
        assert "全部电子封条已确认解除布防" not in zh and "Every seal" not in en
        assert "部分封条未确认解除布防，经法官决定解除：seal-a1, seal-a2" in zh
        assert en.startswith("Some seals of case") and "lifted by the judge's decision: seal-a1, seal-a2." in en


def test_when_every_seal_acknowledged_the_inbox_says_so(world: RemovalWorld) -> None:
    request_id = world.filed()
    for device_id, row in world.commands(world.approved(request_id)).items():
        world.answer(device_id, row.id)
    assert world.read(request_id)["state"] == "disarmed"
    assert world.read(request_id, "judge")["state_zh"] == "封条均已签名确认解除布防，待现场拆除"
    assert world.read(request_id, "debtor")["state_zh"] == "待现场拆除封条"  # the same words as with a seal waived
    kinds = [m["kind"] for m in world.client.get("/api/me/inbox", headers=world.as_("officer")).json()]
    assert "removal.disarmed" in kinds and "removal.disarmed_without_ack" not in kinds


def test_the_debtor_is_not_told_which_seal_is_deaf(world: RemovalWorld) -> None:
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    world.answer("seal-a1", commands["seal-a1"].id)
    debtor = world.read(request_id, "debtor")["seals"]
    assert [(s["device_id"], s["status"], s["status_zh"]) for s in debtor] == [
        ("seal-a1", "pending", "处理中"),  # its answer not shown either while the request is open
        ("seal-a2", "pending", "处理中"),
    ]
    world.expire(commands["seal-a2"].id)
    assert statuses(world, request_id) == [("seal-a1", "disarmed"), ("seal-a2", "waiting_for_seal")]
    listed = world.client.get(f"/api/cases/{c(CASE_A)}/removal-requests", headers=world.as_("debtor"))
    for shown in (world.read(request_id, "debtor"), listed.json()[0]):
        assert [s["status"] for s in shown["seals"]] == ["pending", "pending"]
        for seal in shown["seals"]:
            assert seal["command_id"] is None and seal["command_state"] is None and seal["commands"] is None
            assert seal["answered_at"] is None and seal["expires_at"] is None
        assert "waiting_for_seal" not in str(shown) and "expired" not in str(shown["seals"])
    # Whoever may see the seals' status sees it all.
    for who in ("judge", "creditor", "officer", "clerk"):
        full = world.read(request_id, who)["seals"][1]
        assert (full["status"], full["command_id"], full["command_state"]) == (
            "waiting_for_seal",
            commands["seal-a2"].id,
            "expired",
        )
