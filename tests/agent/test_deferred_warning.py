"""An intrusion within the cool-down is signed ``deferred_cooldown``, and a ``warning_result`` naming its ``seq`` says
what became of its warning: the one the cool-down's end played, or ``suppressed_cooldown`` / ``suppressed_disarmed``
when none played. Found by a hostile review: such an intrusion was signed a final ``suppressed_cooldown``, its
presence was then warned, and no event recorded that warning."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory

from seal_dev.broker import PrivateBroker
from tests.agent.helpers import CourtSubscriber, RecordingSpeaker, RuntimeFactory, write_config

DEVICE = "seal-test-1"
COOLDOWN_S = 5


def _enter_within_the_cooldown(mock_pins: MockFactory, speaker: RecordingSpeaker, court: CourtSubscriber) -> int:
    """A warned presence ends, and a new one begins 0.3 s later (within the cool-down, :data:`COOLDOWN_S`): its
    intrusion's seq. The cool-down leaves time for that intrusion's trip to the court on a loaded machine: what a test
    does next must happen within the cool-down."""
    pin = mock_pins.pin(17)
    pin.drive_high()
    assert speaker.wait_plays(1, timeout=30)
    pin.drive_low()
    time.sleep(0.3)
    pin.drive_high()
    assert court.wait_for(lambda c: len(c.payloads(DEVICE, "intrusion")) == 2, timeout=30)
    [_, second] = [r.envelope for r in court.of(DEVICE) if r.envelope.type.value == "intrusion"]
    assert second.payload["warning"] == "deferred_cooldown", second.payload
    assert second.payload["warning_languages"] == []
    return second.seq


def _results(court: CourtSubscriber, seq: int) -> list[dict[str, Any]]:
    return [p for p in court.payloads(DEVICE, "warning_result") if p["trigger_seq"] == seq]


def test_a_presence_still_there_when_the_cooldown_ends_is_warned_and_its_result_recorded(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    speaker = RecordingSpeaker()
    runtime = runtimes(write_config(tmp_path, broker, cooldown_s=COOLDOWN_S, repeat_s=1000), speaker=speaker)
    runtime.start()
    seq = _enter_within_the_cooldown(mock_pins, speaker, court)
    assert speaker.wait_plays(2, timeout=30)  # the presence goes on: warned at the cool-down's end
    assert court.wait_for(lambda c: _results(c, seq), timeout=30)
    [result] = _results(court, seq)
    assert result["trigger"] == "intrusion" and result["warning"] == "played", result
    assert [i["result"] for i in result["warning_languages"]] == ["played", "played"]
    assert speaker.plays == 2


def test_a_presence_that_ends_within_the_cooldown_is_recorded_as_not_warned(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    speaker = RecordingSpeaker()
    runtime = runtimes(write_config(tmp_path, broker, cooldown_s=COOLDOWN_S, repeat_s=1000), speaker=speaker)
    runtime.start()
    seq = _enter_within_the_cooldown(mock_pins, speaker, court)
    mock_pins.pin(17).drive_low()
    assert court.wait_for(lambda c: _results(c, seq), timeout=30)
    [result] = _results(court, seq)
    assert result["warning"] == "suppressed_cooldown" and result["warning_languages"] == [], result
    time.sleep(COOLDOWN_S + 0.5)  # past the cool-down's end: nothing more is played or recorded for it
    assert speaker.plays == 1 and len(_results(court, seq)) == 1


def test_a_disarm_within_the_cooldown_is_recorded_as_not_warned(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    speaker = RecordingSpeaker()
    runtime = runtimes(write_config(tmp_path, broker, cooldown_s=COOLDOWN_S, repeat_s=1000), speaker=speaker)
    runtime.start()
    seq = _enter_within_the_cooldown(mock_pins, speaker, court)
    assert runtime.agent.disarm()
    assert court.wait_for(lambda c: _results(c, seq), timeout=30)
    [result] = _results(court, seq)
    assert result["warning"] == "suppressed_disarmed" and result["warning_languages"] == [], result
    time.sleep(COOLDOWN_S + 0.5)
    assert speaker.plays == 1


def test_a_stop_within_the_cooldown_signs_no_outcome_for_the_deferred_warning_that_never_started(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    """The agent stops (a restart, a shutdown) within the cool-down: no warning was started for the intrusion that
    said deferred_cooldown, so no ``warning_result`` is signed for it (it said ``stopped``, "cut short before every
    language played", of a warning that never began; docs/protocol.md: "A seal that stops before either sends
    none"). Found by a hostile review."""
    speaker = RecordingSpeaker()
    config = write_config(tmp_path, broker, cooldown_s=5, repeat_s=1000)
    first = runtimes(config, speaker=speaker)
    first.start()
    seq = _enter_within_the_cooldown(mock_pins, speaker, court)
    first.close()
    mock_pins.pin(17).drive_low()
    second = runtimes(config, speaker=RecordingSpeaker())
    second.start()  # delivers what the first left in the outbox, in order, before its own agent_started
    assert court.wait_for(lambda c: len(c.payloads(DEVICE, "agent_started")) == 2, timeout=15)
    assert _results(court, seq) == []
    assert speaker.plays == 1
