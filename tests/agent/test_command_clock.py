"""Court commands and the seal's clock: a seal booted with its wall clock behind (a Pi without a real-time clock
before NTP answered) judges a command's window never below the court's latest signed time it accepted a command of,
takes a command issued "in the future" while its clock is not synchronised, and refuses it when it is; and a
retained message on its ``cmd`` topic is no command, answered by no signed event at any reconnect."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from seal_agent.behaviour.clock import SystemClock
from seal_agent.behaviour.court_time import COURT_TIME_SETTING
from seal_agent.interfaces import ClockSync
from seal_dev.broker import PrivateBroker
from seal_protocol.commands import CommandAction
from seal_protocol.envelope import parse_ts
from seal_protocol.topics import cmd_topic
from tests.agent.helpers import CourtSubscriber, RuntimeFactory, check_chain, verify_key, write_config
from tests.agent.test_clock_truth import FixedClockState
from tests.agent.test_commands import DEVICE, answers, command, online, send

UNSYNCED = FixedClockState(ClockSync(synced=False, max_error_ms=16000))
UNKNOWN = FixedClockState(ClockSync(synced=None, max_error_ms=None, reason="adjtimex refused"))
SYNCED = FixedClockState(ClockSync(synced=True, max_error_ms=8))


@dataclass
class BootedBehind(SystemClock):
    """A Pi booted from its saved time (fake-hwclock): ``behind`` behind the real time, running from there."""

    behind: timedelta = field(default_factory=timedelta)

    def now(self) -> datetime:
        return datetime.now(UTC) - self.behind


def test_a_seal_booted_behind_and_unsynchronised_obeys_the_court_s_later_arm(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory
) -> None:
    """Without the broker's expiry (a court before it, or the test's publisher): the stale disarm its wall clock takes
    for valid is obeyed, and so is the arm the court issued 2 h later — no ``not_yet_valid`` on an unset clock. The
    seal ends armed, and every signed answer says what it did."""
    config = write_config(tmp_path, broker)
    online(runtimes, config, court).close()  # its persistent session stays with the broker
    issued = datetime.now(UTC) - timedelta(days=3)
    disarm, arm = (
        command(1, CommandAction.DISARM, now=issued),
        command(2, CommandAction.ARM, now=issued + timedelta(hours=2)),
    )
    court.publish_command(DEVICE, disarm)
    court.publish_command(DEVICE, arm)
    clock = BootedBehind(behind=timedelta(days=3) - timedelta(minutes=1))
    again = online(runtimes, config, court, clock=clock, clock_state=UNSYNCED)
    assert court.wait_for(lambda c: len(answers(c)) >= 2, timeout=30)
    assert [(k, a["command_id"], a.get("result")) for k, a in answers(court)] == [
        ("command_ack", 1, "disarmed"),
        ("command_ack", 2, "armed"),
    ]
    assert again.agent.armed
    assert court.types(DEVICE).count("armed") == 1 and court.types(DEVICE).count("disarmed") == 1
    check_chain(court.of(DEVICE), verify_key(config))


def test_the_court_s_signed_time_is_the_floor_of_now_also_after_a_restart(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory
) -> None:
    """A seal whose clock is 3 days behind (sync unknown) takes the court's command of today and from then on judges
    by the court's time: a command whose window ended days ago is ``expired``, though its wall clock is inside that
    window — also after a restart, the floor kept with the answer."""
    config = write_config(tmp_path, broker)
    clock = BootedBehind(behind=timedelta(days=3))
    runtime = online(runtimes, config, court, clock=clock, clock_state=UNKNOWN)
    assert send(court, command(1, CommandAction.PING))[0] == "command_ack"  # issued now: "in the future" to it
    stale = datetime.now(UTC) - timedelta(days=3, minutes=1)  # valid for its clock, 3 days old for the court
    kind, answer = send(court, command(2, CommandAction.DISARM, now=stale))
    assert (kind, answer["reason"]) == ("command_rejected", "expired"), answer
    runtime.close()
    again = online(runtimes, config, court, clock=clock, clock_state=UNKNOWN)
    kind, answer = send(court, command(3, CommandAction.DISARM, now=stale))
    assert (kind, answer["reason"]) == ("command_rejected", "expired"), answer
    assert again.agent.armed and "disarmed" not in court.types(DEVICE)


def test_a_synchronised_seal_still_refuses_a_command_from_the_future(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory
) -> None:
    config = write_config(tmp_path, broker)
    runtime = online(runtimes, config, court, clock_state=SYNCED)
    kind, answer = send(court, command(1, CommandAction.DISARM, now=datetime.now(UTC) + timedelta(hours=1)))
    assert (kind, answer["reason"]) == ("command_rejected", "not_yet_valid"), answer
    assert runtime.agent.armed


def test_a_command_signed_a_year_ahead_does_not_outlive_the_seal_s_synchronisation(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory
) -> None:
    """The court's clock a year ahead, once, while the seal's sync is unknown: the seal takes that command. Once the
    kernel says its clock is synchronised (here after a restart), its own clock alone judges: the court's next disarm
    is obeyed, and the floor that command raised is gone from the outbox — also for a later restart unsynchronised."""
    config = write_config(tmp_path, broker)
    runtime = online(runtimes, config, court, clock_state=UNKNOWN)
    future = datetime.now(UTC) + timedelta(days=365)
    assert send(court, command(1, CommandAction.PING, now=future))[0] == "command_ack"
    runtime.close()
    again = online(runtimes, config, court, clock_state=SYNCED)  # the court's clock fixed, the seal's synchronised
    kind, answer = send(court, command(2, CommandAction.DISARM))
    assert (kind, answer.get("result")) == ("command_ack", "disarmed"), answer
    assert again.outbox.setting(COURT_TIME_SETTING) is None
    again.close()
    last = online(runtimes, config, court, clock_state=UNSYNCED)  # a reboot before NTP answers: no floor comes back
    kind, answer = send(court, command(3, CommandAction.ARM))
    assert (kind, answer.get("result")) == ("command_ack", "armed"), answer
    assert last.agent.armed
    check_chain(court.of(DEVICE), verify_key(config))


def test_an_unsynchronised_seal_after_a_command_from_the_far_future(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory
) -> None:
    """Still unsynchronised, the seal takes the court's word. One command raises the floor no further than its own
    ``expires_at``: one issued a year ahead that expires in a minute leaves the next disarm (10 minutes) valid. One
    valid a year ahead (the court's clock wrong for both times) makes the seal refuse a current disarm ``expired`` — it
    cannot tell a wrong court clock from its own clock a year behind — until the kernel says its clock is
    synchronised: then its own clock alone judges, the same court disarm is obeyed; the floor leaves the outbox."""
    config = write_config(tmp_path, broker)
    state = FixedClockState(UNSYNCED.state)
    runtime = online(runtimes, config, court, clock_state=state)
    now, year = datetime.now(UTC), timedelta(days=365)
    bad = command(1, CommandAction.PING, now=now + year, ttl=timedelta(minutes=1) - year)  # issued after it expires
    assert send(court, bad)[0] == "command_ack"
    kind, answer = send(court, command(2, CommandAction.DISARM))
    assert (kind, answer.get("result")) == ("command_ack", "disarmed"), answer
    floor = runtime.outbox.setting(COURT_TIME_SETTING)
    assert floor is not None and parse_ts(floor) < now + timedelta(hours=1)  # not a year ahead
    assert send(court, command(3, CommandAction.ARM, now=now + year))[0] == "command_ack"  # valid a year ahead
    kind, answer = send(court, command(4, CommandAction.DISARM))
    assert (kind, answer.get("reason")) == ("command_rejected", "expired"), answer
    assert runtime.agent.armed
    state.state = SYNCED.state  # NTP answers
    kind, answer = send(court, command(5, CommandAction.DISARM))
    assert (kind, answer.get("result")) == ("command_ack", "disarmed"), answer
    assert runtime.outbox.setting(COURT_TIME_SETTING) is None
    check_chain(court.of(DEVICE), verify_key(config))


@pytest.mark.parametrize("kind", ["garbage", "signed_disarm"])
def test_a_retained_message_on_cmd_is_no_command_at_any_reconnect(
    kind: str, tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory
) -> None:
    """Garbage, or even a valid signed disarm, left retained on the seal's ``cmd`` topic (the court's account) before
    the seal first connected: it is not taken nor answered by a signed event at any of three connects, and counted
    each time; a live command after it is obeyed."""
    config = write_config(tmp_path, broker)
    payload = b"{garbage" if kind == "garbage" else command(1, CommandAction.DISARM, ttl=timedelta(days=1))
    court._client.publish(cmd_topic(DEVICE), payload, qos=1, retain=True).wait_for_publish(10)
    for ping in (1, 2, 3):
        runtime = online(runtimes, config, court)
        answer = send(court, command(ping))  # after the retained one, in order
        assert answer[0] == "command_ack", answer
        assert runtime.publisher.retained_commands_ignored == 1
        runtime.close()
    assert [k for k, _ in answers(court)] == ["command_ack"] * 3  # the pings only
    assert "disarmed" not in court.types(DEVICE)
