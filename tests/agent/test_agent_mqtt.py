"""The real agent in-process: gpiozero mock pins, the real outbox, paho and a private Mosquitto.

The speaker is a counting double here (so a developer's machine stays quiet); the real simpleaudio path with an
ALSA file sink is exercised through ``seal-agent simulate`` in ``test_cli_agent.py``.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from seal_agent.connection_stamps import STAMP_FILE, UNKEPT_ROOM
from seal_agent.interfaces import WarningPlayback
from seal_agent.journal.outbox import StoredEvent
from seal_dev.broker import PrivateBroker
from seal_protocol import EventType, SealStatus, envelope_hash
from seal_protocol.envelope import parse_ts, utc_now_ms
from tests.agent.helpers import (
    CourtSubscriber,
    RecordingSpeaker,
    check_chain,
    pulse,
    verify_key,
    write_config,
)
from tests.agent.helpers import (
    RuntimeFactory as Factory,
)

DEVICE = "seal-test-1"


def test_pir_edge_warns_and_delivers_a_signed_chained_intrusion(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: Factory, mock_pins: MockFactory
) -> None:
    config = write_config(tmp_path, broker, heartbeat_s=1)
    speaker = RecordingSpeaker()
    runtime = runtimes(config, speaker=speaker)
    hooked: list[tuple[StoredEvent, threading.Thread]] = []
    runtime.agent.when_intrusion = lambda stored: hooked.append((stored, threading.current_thread()))
    runtime.start()
    assert court.wait_for(lambda c: c.last_status(DEVICE) is SealStatus.ONLINE)

    mock_pins.pin(17).drive_high()  # gpiozero's mock pin runs the edge handler on this thread
    assert speaker.plays == 1  # the warning started on the edge itself, before the handler returned
    assert runtime.agent.wait_recorded(30)
    [(stored, thread)] = hooked
    assert stored.seq == 2
    assert thread is not threading.current_thread()  # recorded off the edge's thread: the next edge never waits
    assert court.wait_for(lambda c: "intrusion" in c.types(DEVICE))
    mock_pins.pin(17).drive_low()
    assert court.wait_for(lambda c: "heartbeat" in c.types(DEVICE), timeout=30)

    received = court.of(DEVICE)
    assert check_chain(received, verify_key(config))[:2] == [1, 2]
    started, intrusion = received[0].envelope, received[1].envelope
    assert started.type is EventType.AGENT_STARTED
    assert intrusion.type is EventType.INTRUSION
    assert intrusion.payload == {
        "sensor": "pir",
        "armed": True,
        "warning": "played",  # the speaker double plays at once: over before the event is committed
        "warning_languages": [
            {"language": "zh", "result": "played", "reason": None},
            {"language": "en", "result": "played", "reason": None},
        ],
        "camera": "none",
        "camera_motion": "unknown",
        "snapshots": [],
    }
    assert intrusion.case_no == "(2021)苏0214执1234号"
    assert intrusion.prev_hash == envelope_hash(received[0].data)
    heartbeat = next(r.envelope for r in received if r.envelope.type is EventType.HEARTBEAT)
    assert set(heartbeat.payload) == {
        "outbox_depth",
        "snapshots_pending",
        "uptime_s",
        "agent_version",
        "pir_state",
        "tamper",
        "camera",
        "armed",
        "disk_free_bytes",
        "speaker",
        "speaker_failure",
        "clock",
        "sensors",
    }
    assert heartbeat.payload["sensors"] == {"pir": {"state": "normal", "merged_edges": 0}}
    assert heartbeat.payload["armed"] is True
    assert heartbeat.payload["speaker"] == "ok" and heartbeat.payload["speaker_failure"] is None
    assert heartbeat.payload["camera"] == heartbeat.payload["tamper"] == "none"
    assert heartbeat.payload["disk_free_bytes"] > 0

    assert runtime.delivery.events.wait_drained(30)  # deleted on the court's receipt
    assert runtime.outbox.depth() == 0
    runtime.close()
    assert court.wait_for(lambda c: c.last_status(DEVICE) is SealStatus.OFFLINE)


def test_seq_and_chain_survive_a_restart(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: Factory, mock_pins: MockFactory
) -> None:
    config = write_config(tmp_path, broker)
    first = runtimes(config)
    first.start()
    pulse(mock_pins)
    assert court.wait_for(lambda c: c.seqs(DEVICE) == {1, 2})
    first.close()

    second = runtimes(config)
    second.start()
    pulse(mock_pins)
    assert court.wait_for(lambda c: c.seqs(DEVICE) == {1, 2, 3, 4})
    assert check_chain(court.of(DEVICE), verify_key(config)) == [1, 2, 3, 4]
    assert court.types(DEVICE) == ["agent_started", "intrusion", "agent_started", "intrusion"]


def test_events_made_while_the_broker_is_down_arrive_in_order(
    tmp_path: Path, broker: PrivateBroker, runtimes: Factory, mock_pins: MockFactory
) -> None:
    config = write_config(tmp_path, broker, cooldown_s=0)
    court = CourtSubscriber(broker, persistent=True).start()
    try:
        runtime = runtimes(config)
        runtime.start()
        assert court.wait_for(lambda c: c.seqs(DEVICE) == {1})
        assert runtime.delivery.events.wait_drained(30)  # receipted
        broker.stop()
        for _ in range(8):
            pulse(mock_pins)
        assert runtime.agent.wait_recorded(30)
        assert runtime.outbox.depth() == 8  # committed, not yet receipted
        broker.start()
        assert court.wait_for(lambda c: c.seqs(DEVICE) == set(range(1, 10)), timeout=30)
        order = check_chain(court.of(DEVICE), verify_key(config))
        assert order == sorted(order)
        assert runtime.delivery.events.wait_drained(30)
    finally:
        court.close()


class _Refusals(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "seal_agent.journal.courier" and "refused event seq=1" in record.getMessage():
            self.seen.set()


def test_not_authorized_puback_keeps_the_event(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: Factory
) -> None:
    # The account "seal-other" may only write seal/v1/seal-other/...; this seal claims to be seal-test-1.
    config = write_config(tmp_path, broker, username="seal-other")
    refusals = _Refusals()
    logging.getLogger("seal_agent.journal.courier").addHandler(refusals)
    try:
        runtime = runtimes(config, retry_s=60)
        runtime.start()
        assert refusals.seen.wait(30), "the broker's refusal was not reported"
    finally:
        logging.getLogger("seal_agent.journal.courier").removeHandler(refusals)
    assert [event.seq for event in runtime.outbox.pending()] == [1]
    assert court.of(DEVICE) == []


def test_disarmed_seal_stays_silent_records_intrusions_and_stays_disarmed(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: Factory, mock_pins: MockFactory
) -> None:
    config = write_config(tmp_path, broker)
    speaker = RecordingSpeaker()
    runtime = runtimes(config, speaker=speaker)
    runtime.start()
    assert runtime.agent.disarm("removal approved")
    assert not runtime.agent.disarm()
    pulse(mock_pins)
    assert court.wait_for(lambda c: c.types(DEVICE) == ["agent_started", "disarmed", "intrusion"])
    assert court.of(DEVICE)[2].envelope.payload["warning"] == "suppressed_disarmed"
    assert court.of(DEVICE)[2].envelope.payload["armed"] is False
    assert speaker.plays == 0
    runtime.close()

    again = runtimes(config, speaker=speaker)
    assert not again.agent.armed
    again.start()
    assert again.agent.arm("re-sealed")
    pulse(mock_pins)
    assert speaker.wait_plays(1)
    assert court.wait_for(lambda c: c.types(DEVICE)[-2:] == ["armed", "intrusion"])


def test_presence_already_there_at_start_is_caught(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: Factory, mock_pins: MockFactory
) -> None:
    config = write_config(tmp_path, broker)
    speaker = RecordingSpeaker()
    runtime = runtimes(config, speaker=speaker)
    mock_pins.pin(17).drive_high()  # before the agent listens: no edge will ever come
    runtime.start()
    assert court.wait_for(lambda c: "intrusion" in c.types(DEVICE), timeout=30)
    assert speaker.plays == 1
    mock_pins.pin(17).drive_low()


def test_warning_repeats_while_presence_continues(
    tmp_path: Path, broker: PrivateBroker, runtimes: Factory, mock_pins: MockFactory
) -> None:
    config = write_config(tmp_path, broker, repeat_s=1, max_repeats=2)
    speaker = RecordingSpeaker()
    runtime = runtimes(config, speaker=speaker)
    runtime.start()
    mock_pins.pin(17).drive_high()
    assert speaker.wait_plays(3, timeout=30)
    mock_pins.pin(17).drive_low()
    pulse(mock_pins)  # within the cool-down: recorded, not warned
    assert speaker.plays == 3


class BrokenSpeaker(RecordingSpeaker):
    def play_warning(self) -> WarningPlayback | None:
        super().play_warning()
        raise RuntimeError("ALSA: device busy")


def test_a_failing_speaker_never_stops_the_event(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: Factory, mock_pins: MockFactory
) -> None:
    config = write_config(tmp_path, broker)
    speaker = BrokenSpeaker()
    runtime = runtimes(config, speaker=speaker)
    runtime.start()
    pulse(mock_pins)
    assert court.wait_for(lambda c: "intrusion" in c.types(DEVICE))
    assert speaker.plays == 1


def test_when_delivered_reports_each_acknowledged_seq_and_a_failing_hook_changes_nothing(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: Factory, mock_pins: MockFactory
) -> None:
    config = write_config(tmp_path, broker)
    runtime = runtimes(config)
    delivered: list[int] = []
    done = threading.Event()

    def hook(seq: int) -> None:
        delivered.append(seq)
        if seq == 2:
            done.set()
        raise RuntimeError("a broken hook")  # logged, never affects delivery

    runtime.delivery.when_delivered = hook
    runtime.start()
    pulse(mock_pins)
    assert done.wait(30), delivered
    assert delivered == [1, 2]
    assert court.wait_for(lambda c: c.seqs(DEVICE) == {1, 2})
    assert runtime.delivery.events.wait_drained(30) and runtime.outbox.depth() == 0


def test_a_connection_s_online_and_goodbye_carry_its_stamp(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: Factory, mock_pins: MockFactory
) -> None:
    """The court orders a seal's statuses by their connection stamps (seal_protocol.status.supersedes): the online
    and the offline of one connection carry the stamp taken before it connected (its Last Will's)."""
    runtime = runtimes(write_config(tmp_path, broker))
    runtime.start()
    assert court.wait_for(lambda c: c.last_status(DEVICE) is SealStatus.ONLINE)
    runtime.close()
    assert court.wait_for(lambda c: c.last_status(DEVICE) is SealStatus.OFFLINE)
    [(_, online, first), (_, offline, second)] = [s for s in court.stamps if s[0] == DEVICE]
    assert (online, offline) == (SealStatus.ONLINE, SealStatus.OFFLINE)
    assert first == second


def test_a_seal_whose_clock_went_back_stamps_its_connection_after_the_last(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: Factory, mock_pins: MockFactory
) -> None:
    """A Pi without RTC restores a saved clock after a reboot, behind its last connection's stamp: the agent stamps
    its connections max(now, last + 1 ms) (seal_agent.connection_stamps), the last kept in its state directory
    before the CONNECT (a new process: after the kept stamp's room for stamps held in memory only), so the court
    does not take its online for an old one (and show it offline while it talks)."""
    config = write_config(tmp_path, broker)
    kept = tmp_path / "state" / STAMP_FILE
    runtime = runtimes(config)
    runtime.start()
    assert court.wait_for(lambda c: c.last_status(DEVICE) is SealStatus.ONLINE)
    runtime.close()
    assert court.wait_for(lambda c: c.last_status(DEVICE) is SealStatus.OFFLINE)
    [(_, _, first), _] = [s for s in court.stamps if s[0] == DEVICE]
    kept_first = kept.read_text("ascii").strip() if kept.exists() else None
    # The last connection was stamped an hour after what the clock now says (the clock went back).
    last = parse_ts(first) + timedelta(hours=1)
    kept.write_text(utc_now_ms(last) + "\n", "ascii")

    runtime = runtimes(config)
    runtime.start()
    assert court.wait_for(lambda c: len([s for s in c.stamps if s[0] == DEVICE]) == 3)
    [*_, (_, online, second)] = [s for s in court.stamps if s[0] == DEVICE]
    assert online is SealStatus.ONLINE
    assert parse_ts(second) == last + UNKEPT_ROOM + timedelta(milliseconds=1)  # after any stamp held in memory
    assert kept.read_text("ascii").strip() == second  # kept before the CONNECT that carried it
    runtime.close()
    assert court.wait_for(lambda c: c.last_status(DEVICE) is SealStatus.OFFLINE)
    assert [s[2] for s in court.stamps if s[0] == DEVICE][-1] == second  # its goodbye: the same stamp
    # The first run kept its connection's stamp, or a later one (its disconnect stamped the next connection's Will).
    assert kept_first is not None and parse_ts(kept_first) >= parse_ts(first)
