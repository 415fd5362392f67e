"""An arm or a disarm the seal did not carry out — expired unanswered, or refused — opens an alarm for a person, and
the seal's acknowledgement of it (or of a later one) closes it. Through the dispatcher's round and the ingest."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from seal_protocol import EventType
from seal_protocol.commands import CommandAction
from server.alarms.models import Alarm
from server.app import create_app
from server.commands.dispatcher import CommandDispatcher
from server.commands.models import CourtCommand
from server.config import CommandSettings, MqttSettings
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.evidence.models import Event
from server.ingest.results import Outcome
from server.notify.models import Notification
from server.notify.targets import add_notification_target
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A, CASE_B, message
from tests.server.removal_world import RemovalWorld, make_world
from tests.server.test_commands import World

TTL = timedelta(minutes=10)


@pytest.fixture
def world(session_factory: SessionFactory, tmp_path: Path) -> World:
    return World(session_factory, tmp_path / "snapshots")


def alarms(session_factory: SessionFactory, device_id: str = "seal-a") -> list[Alarm]:
    with session_factory() as session:
        query = select(Alarm).where(Alarm.device_id == device_id).order_by(Alarm.id)
        return list(session.scalars(query))


def run_round(session_factory: SessionFactory, *, later: timedelta = TTL + timedelta(minutes=1)) -> list[int]:
    """One round of the real dispatcher, ``later`` from now (not connected: it expires and closes, publishes none)."""
    dispatcher = CommandDispatcher(
        MqttSettings(port=1, password_file=Path("/nonexistent")),
        CommandSettings(),
        session_factory,
        clock=lambda: utc_now() + later,
    )
    return dispatcher.run_round().expired


def states(session_factory: SessionFactory) -> list[tuple[str, str, str]]:
    with session_factory() as session:
        return sorted((a.device_id, a.kind, a.state) for a in session.scalars(select(Alarm)))


def shown(alarm: Alarm) -> tuple[str, str, str, str, int, Any]:
    return alarm.kind, alarm.severity, alarm.state, alarm.case_no, alarm.count, alarm.details["command_id"]


def test_an_arm_that_expires_unanswered_opens_a_high_alarm_and_a_ping_none(
    world: World,
    session_factory: SessionFactory,
) -> None:
    ping, arm = world.issue(CommandAction.PING), world.issue(CommandAction.ARM)
    assert run_round(session_factory) == [ping, arm]
    [alarm] = alarms(session_factory)
    assert shown(alarm) == ("arm_failed", "high", "open", CASE_A, 1, arm)
    assert alarm.details["action"] == "arm" and alarm.details["state"] == "expired"
    assert "no answer" in alarm.details["reason"]
    assert run_round(session_factory) == [] and len(alarms(session_factory)) == 1  # expired once, alarmed once


def test_the_alarm_notifies_the_case_s_targets(
    world: World,
    session_factory: SessionFactory,
) -> None:
    with session_scope(session_factory) as session:
        add_notification_target(session, case_no=CASE_A, role="judge", url="https://judge.example/hook")
    world.issue(CommandAction.ARM)
    run_round(session_factory)
    [alarm] = alarms(session_factory)
    with session_factory() as session:
        notified = list(session.scalars(select(Notification.alarm_id)))
    assert notified == [alarm.id]


def test_a_refused_disarm_opens_a_medium_alarm_naming_the_refusal(
    world: World, session_factory: SessionFactory
) -> None:
    disarm = world.issue(CommandAction.DISARM)
    assert world.reject(disarm, "not_yet_valid") is Outcome.STORED
    [alarm] = alarms(session_factory)
    assert shown(alarm) == ("disarm_failed", "medium", "open", CASE_A, 1, disarm)
    assert alarm.details["state"] == "rejected" and "not_yet_valid" in alarm.details["reason"]
    with session_factory() as session:
        event = session.scalars(select(Event).where(Event.type == "command_rejected")).one()
    assert alarm.first_event_id == event.id  # the seal's signed refusal


def test_the_seal_s_acknowledgement_closes_the_alarm_late_or_of_a_later_command(
    world: World,
    session_factory: SessionFactory,
) -> None:
    first = world.issue(CommandAction.ARM)
    run_round(session_factory)
    world.ack(first, action="arm", result="armed")  # carried out while offline: the ack was in its outbox
    [alarm] = alarms(session_factory)
    assert (alarm.state, alarm.closed_by) == ("closed", None) and f"command {first}" in (alarm.closed_note or "")

    second = world.issue(CommandAction.DISARM)
    assert world.reject(second, "not_yet_valid") is Outcome.STORED
    third = world.issue(CommandAction.ARM)
    world.ack(third, action="arm", result="already_armed")
    assert [a.state for a in alarms(session_factory)] == ["closed", "closed"]


def test_an_earlier_command_s_ack_does_not_close_a_later_failure(
    world: World,
    session_factory: SessionFactory,
) -> None:
    """An arm, a disarm, an arm expire: one alarm, naming the later arm; the earlier arm's late ack proves nothing
    about it (the seal may have carried out the disarm after it)."""
    earlier = world.issue(CommandAction.ARM)
    disarm = world.issue(CommandAction.DISARM)
    later = world.issue(CommandAction.ARM)
    assert run_round(session_factory) == [earlier, disarm, later]
    [alarm] = alarms(session_factory)
    assert shown(alarm) == ("arm_failed", "high", "open", CASE_A, 1, later)
    world.ack(earlier, action="arm", result="armed")
    [alarm] = alarms(session_factory)
    assert alarm.state == "open"
    world.ack(later, action="arm", result="already_armed")
    assert [a.state for a in alarms(session_factory)] == ["closed"]


def test_failures_of_one_seal_fold_into_its_live_alarm(world: World, session_factory: SessionFactory) -> None:
    first = world.issue(CommandAction.DISARM)
    world.reject(first, "not_yet_valid")
    second = world.issue(CommandAction.DISARM)
    world.reject(second, "expired")
    [alarm] = alarms(session_factory)
    assert shown(alarm) == ("disarm_failed", "medium", "open", CASE_A, 2, second)


def test_a_command_followed_by_a_later_arm_or_disarm_opens_none(
    world: World,
    session_factory: SessionFactory,
) -> None:
    """A withdrawn approval: its disarm, then the arm that undoes it. What the court wants now is the arm."""
    disarm = world.issue(CommandAction.DISARM)
    arm = world.issue(CommandAction.ARM)
    world.issue(CommandAction.PING)  # not an arm or a disarm: supersedes nothing
    world.reject(disarm, "expired")
    assert alarms(session_factory) == []
    assert arm in run_round(session_factory)
    assert [shown(a) for a in alarms(session_factory)] == [("arm_failed", "high", "open", CASE_A, 1, arm)]


def test_a_command_of_a_case_its_seal_left_opens_none(
    world: World,
    session_factory: SessionFactory,
) -> None:
    disarm = world.issue(CommandAction.DISARM)
    world.move_to(CASE_B)
    world.reject(disarm, "wrong_case")  # stored in case B: the command of case A stays expired
    assert world.command(disarm).state == "expired"
    assert run_round(session_factory) == [] and alarms(session_factory) == []


def test_an_arm_whose_expiry_is_not_due_opens_nothing(world: World, session_factory: SessionFactory) -> None:
    world.issue(CommandAction.ARM, ttl=timedelta(hours=1))
    assert run_round(session_factory) == [] and alarms(session_factory) == []


@pytest.fixture
def removal(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    settings = make_settings(database_url, tmp_path)
    with TestClient(create_app(settings, with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def test_a_withdrawn_approval_whose_arm_goes_unanswered_calls_the_judge(
    removal: RemovalWorld, session_factory: SessionFactory
) -> None:
    """The judge withdraws an approval after one seal disarmed; the arms that follow go unanswered (the seals are
    offline), so both seals may stay disarmed on a sealed case. The judge's alarms say so; the withdrawn disarm the
    other seal refuses later says nothing (the arm after it is what counts); a seal's ack of its arm closes its own."""
    request_id = removal.filed()
    disarms = removal.commands(removal.approved(request_id))
    removal.answer("seal-a1", disarms["seal-a1"].id)
    assert removal.ok("judge", request_id, "abort", {"reasons": "申请执行人提出异议，撤销准予。"})["state"] == "aborted"
    with session_factory() as session:
        query = select(CourtCommand.device_id, CourtCommand.id).where(CourtCommand.action == "arm")
        arms = {row.device_id: row.id for row in session.execute(query)}
    assert sorted(arms) == ["seal-a1", "seal-a2"]
    assert removal.answer("seal-a2", disarms["seal-a2"].id, ack=False).command_answer == "rejected"

    def judge_sees() -> list[tuple[str, str, str, int]]:
        response = removal.client.get("/api/alarms", params={"case_no": CASE_A}, headers=removal.as_("judge"))
        assert response.status_code == 200, response.text
        return sorted((a["device_id"], a["kind"], a["state"], a["details"]["command_id"]) for a in response.json())

    assert judge_sees() == []
    assert sorted(run_round(session_factory)) == sorted(arms.values())
    assert judge_sees() == [
        ("seal-a1", "arm_failed", "open", arms["seal-a1"]),
        ("seal-a2", "arm_failed", "open", arms["seal-a2"]),
    ]
    seal = removal.seals["seal-a1"]
    ack = seal.event(EventType.COMMAND_ACK, {"command_id": arms["seal-a1"], "action": "arm", "result": "armed"})
    removal.ingestor.ingest([message(seal.event_topic, ack)])
    assert judge_sees() == [
        ("seal-a1", "arm_failed", "closed", arms["seal-a1"]),
        ("seal-a2", "arm_failed", "open", arms["seal-a2"]),
    ]
    other_court = removal.client.get("/api/alarms", headers=removal.as_("judge-b"))
    assert other_court.status_code == 200 and other_court.json() == []


def test_a_withdrawn_approval_whose_arms_are_carried_out_closes_the_disarm_alarms(
    removal: RemovalWorld, session_factory: SessionFactory
) -> None:
    """The disarms expired unanswered (two alarms), the judge withdraws the approval, the seals acknowledge the arms
    that follow: what the court wants of them is done, and the disarm alarms close."""
    request_id = removal.filed()
    disarms = removal.commands(removal.approved(request_id))
    assert sorted(run_round(session_factory)) == sorted(c.id for c in disarms.values())
    assert states(session_factory) == [("seal-a1", "disarm_failed", "open"), ("seal-a2", "disarm_failed", "open")]
    assert removal.ok("judge", request_id, "abort", {"reasons": "撤销准予"})["state"] == "aborted"
    with session_factory() as session:
        arms = {r.device_id: r.id for r in session.scalars(select(CourtCommand).where(CourtCommand.action == "arm"))}
    for device_id, command_id in sorted(arms.items()):
        seal = removal.seals[device_id]
        ack = seal.event(EventType.COMMAND_ACK, {"command_id": command_id, "action": "arm", "result": "already_armed"})
        removal.ingestor.ingest([message(seal.event_topic, ack)])
    assert states(session_factory) == [("seal-a1", "disarm_failed", "closed"), ("seal-a2", "disarm_failed", "closed")]


def test_a_lifting_without_the_seal_s_ack_closes_its_disarm_alarm_at_the_next_round(
    removal: RemovalWorld, session_factory: SessionFactory
) -> None:
    request_id = removal.filed()
    disarms = removal.commands(removal.approved(request_id))
    removal.answer("seal-a1", disarms["seal-a1"].id)
    assert run_round(session_factory) == [disarms["seal-a2"].id]
    assert states(session_factory) == [("seal-a2", "disarm_failed", "open")]
    removal.ok("judge", request_id, "lift-without-ack", {"device_ids": ["seal-a2"], "reasons": "封条已被盗"})
    removal.ok("officer", request_id, "lifted", {"note": "现场已拆除", "found": {"seal-a2": "missing"}})
    run_round(session_factory)
    assert states(session_factory) == [("seal-a2", "disarm_failed", "closed")]
    with session_factory() as session:
        alarm = session.scalars(select(Alarm)).one()
    assert alarm.closed_by is None and "no longer bound" in (alarm.closed_note or "")


def test_a_refusal_and_the_ack_of_another_copy_in_one_batch_page_nobody(
    world: World, session_factory: SessionFactory
) -> None:
    with session_scope(session_factory) as session:
        add_notification_target(session, case_no=CASE_A, role="judge", url="https://judge.example/hook")
    arm = world.issue(CommandAction.ARM)
    seal = world.seal
    refusal = {"command_id": arm, "reason": "not_yet_valid", "detail": "issued in the future"}
    refused = seal.event(EventType.COMMAND_REJECTED, refusal)
    acked = seal.event(EventType.COMMAND_ACK, {"command_id": arm, "action": "arm", "result": "armed"})
    results = world.ingestor.ingest([message(seal.event_topic, refused), message(seal.event_topic, acked)])
    assert [r.command_answer for r in results] == ["rejected", "acknowledged"]
    assert world.command(arm).state == "acknowledged"
    with session_factory() as session:
        assert list(session.scalars(select(Alarm))) == []
        assert list(session.scalars(select(Notification))) == []


@pytest.mark.parametrize("answer", ["ack", "refusal"])
def test_an_answer_stored_beside_the_expiry_s_alarm_is_settled_at_the_next_round(
    world: World, session_factory: SessionFactory, database_url: str, monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    """PostgreSQL: a batch has read the seal's live alarms (none) when the dispatcher's round expires the arm, opens
    its alarm and commits, before the batch locks the seal's row (the round locks it too: it cannot come later); the
    batch then applies the seal's answer. A refusal folds into the round's alarm, looked for again under the seal's
    row (server.alarms.book); the alarm of an arm the seal carried out is left to the next round, which closes it."""
    if not database_url.startswith("postgresql"):
        pytest.skip("two writers at once: SQLite serialises them")
    from server.ingest.chain import ChainBook

    arm = world.issue(CommandAction.ARM)
    expired: list[list[int]] = []
    write = ChainBook.write

    def after_the_round(*args: Any, **kwargs: Any) -> Any:  # the batch goes on once the round has committed
        if not expired:
            expired.append(run_round(world.session_factory))
        return write(*args, **kwargs)

    monkeypatch.setattr(ChainBook, "write", after_the_round)
    if answer == "ack":
        world.ack(arm, action="arm", result="armed")
    else:
        world.reject(arm, "not_yet_valid")
    assert expired == [[arm]]
    monkeypatch.undo()
    left = [state for _, _, state in states(session_factory)]
    assert left == ["open"]  # one alarm: the refusal folded into the expiry's
    run_round(session_factory)
    left = [state for _, _, state in states(session_factory)]
    assert left.count("open") == (0 if answer == "ack" else 1)
