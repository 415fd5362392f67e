"""What the debtor (no ``seal:status``) learns of a deaf seal (seal-a2), from the hostile review's reproduction: not
from the history (a re-sent disarm, the judge's decision and notes, the server's note on how each seal stood), not
from the seals' statuses (``refused``, ``without_ack``), not from the inbox — while the request is open and after it
is lifted. The judge, the officer, the clerk and the creditor keep seeing it all."""

from __future__ import annotations

import json
from typing import Any

from tests.server import test_removal_waivers as waivers
from tests.server.removal_world import RemovalWorld

world = waivers.world  # the fixture: commands live 60 s

REVEALING = ("seal-a2 ", "seal-a2:", "waiting_for_seal", "without_ack", "refused", "expired", "封条未应答", "封条失联")


def inbox(world: RemovalWorld, who: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = world.client.get("/api/me/inbox", headers=world.as_(who)).json()
    return messages


def assert_told_nothing(world: RemovalWorld, request_id: int) -> dict[str, Any]:
    shown = world.read(request_id, "debtor")
    # next_actions is what the state allows (lift_without_ack, for disarm_pending), whoever reads it.
    text = json.dumps({k: v for k, v in shown.items() if k != "next_actions"}, ensure_ascii=False)
    for word in REVEALING:
        assert word not in text, (word, shown["history"], shown["seals"])
    assert {s["status"] for s in shown["seals"]} <= {"pending", "disarmed"}
    assert all(s["reason"] is None and s["found"] is None for s in shown["seals"])
    for step in shown["history"]:
        assert step["action"] not in ("resend_disarm", "lift_without_ack", "confirm_disarmed")
        if step["action"] == "court_processing":
            assert step["note"] == "法院处理中 / The court is processing"
    for message in inbox(world, "debtor"):
        assert message["kind"] not in ("removal.without_ack", "removal.disarmed_without_ack")
        assert "seal-a" not in message["text_zh"] + message["text_en"], message
    return shown


def test_the_debtor_does_not_learn_which_seal_is_deaf(world: RemovalWorld) -> None:
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    world.answer("seal-a2", commands["seal-a2"].id, ack=False)  # it refused: shown pending to the debtor
    assert [s["status"] for s in world.read(request_id, "debtor")["seals"]] == ["pending", "pending"]
    world.expire(commands["seal-a2"].id)  # a2 is deaf; a1 still has a valid disarm
    world.ok("judge", request_id, "resend-disarm", {"device_id": "seal-a2", "note": "封条未应答"})
    shown = assert_told_nothing(world, request_id)
    assert [h["action"] for h in shown["history"]][-1] == "court_processing"

    judge = world.read(request_id, "judge")
    assert [h["action"] for h in judge["history"]][-1] == "resend_disarm"
    assert judge["history"][-1]["note"] == "封条未应答"
    world.expire(*[r.id for r in world.commands(judge).values() if r.device_id == "seal-a2"])
    world.ok("judge", request_id, "lift-without-ack", {"device_ids": ["seal-a2"], "reasons": "封条失联"})
    shown = assert_told_nothing(world, request_id)
    assert shown["state"] == "disarm_pending"
    assert [(s["device_id"], s["status"]) for s in shown["seals"]] == [("seal-a1", "pending"), ("seal-a2", "pending")]

    world.answer("seal-a1", commands["seal-a1"].id)  # the last one: the request is disarmed
    shown = assert_told_nothing(world, request_id)
    assert shown["state"] == "disarmed" and shown["state_zh"] == "待现场拆除封条"  # true though a seal never answered
    assert [s["status"] for s in shown["seals"]] == ["pending", "pending"]  # nor which one answered, while open
    [told] = [m for m in inbox(world, "debtor") if m["kind"] == "removal.disarmed"]
    assert "已进入现场拆除环节" in told["text_zh"] and "解除布防已完成" not in told["text_zh"]

    # The judge's (and every staff member's) view is unchanged.
    judge = world.read(request_id, "judge")
    assert judge["state_zh"].startswith("部分封条未确认解除布防")
    assert [(s["device_id"], s["status"]) for s in judge["seals"]] == [
        ("seal-a1", "disarmed"),
        ("seal-a2", "without_ack"),
    ]
    actions = [h["action"] for h in judge["history"]]
    assert actions[-3:] == ["resend_disarm", "lift_without_ack", "confirm_disarmed"]
    assert judge["history"][-2]["note"] == "封条失联"
    assert "seal-a2 Waiting for the seal (expired: send again) (disarm #" in judge["history"][-1]["note"]
    for who in ("officer", "judge"):
        kinds = [m["kind"] for m in inbox(world, who)]
        assert "removal.without_ack" in kinds and "removal.disarmed_without_ack" in kinds, (who, kinds)
    assert "removal.without_ack" in [m["kind"] for m in inbox(world, "creditor")]
    for who in ("officer", "clerk", "creditor"):
        assert [s["status"] for s in world.read(request_id, who)["seals"]] == ["disarmed", "without_ack"]

    # After the officer's confirmation the request is over: the debtor still sees pending (and lifted) only.
    world.ok("officer", request_id, "lifted", {"note": "已拆除", "found": {"seal-a2": "destroyed"}})
    shown = assert_told_nothing(world, request_id)
    assert shown["state"] == "lifted" and "destroyed" not in json.dumps(shown)
    lifted = world.read(request_id, "judge")["seals"][1]
    assert (lifted["status"], lifted["found"]) == ("without_ack", "destroyed")


def test_every_seal_acknowledged_tells_the_debtor_the_same_words(world: RemovalWorld) -> None:
    request_id = world.filed()
    for device_id, row in world.commands(world.approved(request_id)).items():
        world.answer(device_id, row.id)
    assert world.read(request_id, "debtor")["state"] == "disarmed"
    [told] = [m for m in inbox(world, "debtor") if m["kind"] == "removal.disarmed"]
    assert "已进入现场拆除环节" in told["text_zh"] and "全部" not in told["text_zh"]
    [officer] = [m for m in inbox(world, "officer") if m["kind"] == "removal.disarmed"]
    assert "全部电子封条已确认解除布防" in officer["text_zh"]
