"""Signed court commands through a real broker, published with the court server's account: every refusal reason,
accepted actions answered by signed acks after the action, the last accepted id surviving a restart, and a command
for the case a seal was moved from refused when the broker delivers it late."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from seal_agent.config import load_config
from seal_agent.errors import ConfigError, OutboxError
from seal_agent.interfaces import ClockSync, WarningPlayback
from seal_agent.journal.outbox import Outbox
from seal_dev.broker import PrivateBroker
from seal_protocol import decode_envelope
from seal_protocol.commands import COMMAND_RESULTS, Command, CommandAction, encode_command, new_command
from seal_protocol.signing import generate_signing_key
from tests.agent.helpers import (
    COURT_KEY,
    CourtSubscriber,
    RecordingSpeaker,
    RuntimeFactory,
    check_chain,
    pulse,
    verify_key,
    write_config,
)
from tests.agent_camera.clips import moving_rectangle_frames, write_clip

DEVICE = "seal-test-1"
CASE_NO = "(2021)苏0214执1234号"  # the case of write_config's seal
OTHER_CASE = "(2022)苏0214执55号"


def command(command_id: int, action: CommandAction = CommandAction.PING, **kwargs: object) -> bytes:
    options: dict[str, object] = {"device_id": DEVICE, "case_no": CASE_NO, "key": COURT_KEY}
    options.update(kwargs)
    return encode_command(new_command(command_id=command_id, action=action, **options))  # type: ignore[arg-type]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unsigned(command_id: int) -> bytes:
    signed = new_command(
        command_id=command_id, device_id=DEVICE, case_no=CASE_NO, action=CommandAction.PING, key=COURT_KEY
    )
    return encode_command(Command.model_validate({**signed.model_dump(), "sig": None}))


def answers(court: CourtSubscriber) -> list[tuple[str, dict[str, object]]]:
    return [
        (r.envelope.type.value, r.envelope.payload)
        for r in court.of(DEVICE)
        if r.envelope.type.value in ("command_ack", "command_rejected")
    ]


def send(court: CourtSubscriber, payload: bytes) -> tuple[str, dict[str, object]]:
    """Publish one command and return the seal's answer to it (an ack's result one the protocol names)."""
    before = len(answers(court))
    court.publish_command(DEVICE, payload)
    assert court.wait_for(lambda c: len(answers(c)) > before, timeout=30), "the seal did not answer"
    kind, answer = answers(court)[before]
    if kind == "command_ack":
        assert answer["result"] in COMMAND_RESULTS[CommandAction(str(answer["action"]))], answer
    return kind, answer


@pytest.fixture
def seal_config(tmp_path: Path, broker: PrivateBroker) -> Path:
    return write_config(tmp_path, broker)  # pins COURT_KEY


def online(runtimes: RuntimeFactory, config: Path, court: CourtSubscriber, **kwargs: object):  # type: ignore[no-untyped-def]
    runtime = runtimes(config, **kwargs)
    runtime.start()
    assert runtime.publisher.wait_listening(30)
    return runtime


def test_every_refusal_reason_is_answered(seal_config: Path, court: CourtSubscriber, runtimes: RuntimeFactory) -> None:
    from tests.agent.test_clock_truth import FixedClockState  # a synchronised clock refuses one from the future

    online(runtimes, seal_config, court, clock_state=FixedClockState(ClockSync(synced=True, max_error_ms=8)))
    ping = command(5)
    assert send(court, ping) == ("command_ack", {"command_id": 5, "action": "ping", "result": "pong",
                                                 "armed": True, "camera": "none",
                                                 "sha256": sha256_hex(ping)})  # fmt: skip
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    cases = [
        (b"{not json", None, "malformed"),
        (unsigned(6), None, "unsigned"),  # the ids they claim are nobody's word: claimed_command_id
        (command(7, key=generate_signing_key()), None, "bad_signature"),
        (command(8, now=hour_ago), 8, "expired"),
        (command(9, now=datetime.now(UTC) + timedelta(hours=1)), 9, "not_yet_valid"),
        (command(5), 5, "replayed"),  # the very same id again
        (command(4), 4, "replayed"),  # an older one
        (command(10, device_id="seal-other"), 10, "wrong_device"),
        (command(11, case_no=OTHER_CASE), 11, "wrong_case"),
    ]
    for payload, command_id, reason in cases:
        kind, answer = send(court, payload)
        assert (kind, answer["command_id"], answer["reason"]) == ("command_rejected", command_id, reason), answer
        assert answer["detail"]
    check_chain(court.of(DEVICE), verify_key(seal_config))


def test_a_disarm_for_the_case_the_seal_was_moved_from_is_refused_when_the_broker_delivers_it_late(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory
) -> None:
    """The seal is offline with its persistent session when the court's disarm for its case reaches the broker; the
    seal is then moved to another case (installed there with that case in its configuration) and comes back. The
    broker delivers the old disarm, validly signed: the seal must refuse it as ``wrong_case`` and stay armed. Its
    installer wrote the new case with full-width parentheses; the court's disarm for it names it in the court's
    canonical form (ASCII ones): that is one case, and the seal obeys."""
    config = write_config(tmp_path, broker)
    runtime = online(runtimes, config, court)
    runtime.close()  # offline; the broker keeps its session and its cmd subscription
    court.publish_command(DEVICE, command(1, CommandAction.DISARM, case_no=CASE_NO))
    written = OTHER_CASE.replace("(", "（").replace(")", "）")
    config.write_text(config.read_text(encoding="utf-8").replace(CASE_NO, written), encoding="utf-8")
    assert load_config(config).case_no == written  # the same seal, key and MQTT account (its session), moved

    again = online(runtimes, config, court)
    assert court.wait_for(lambda c: bool(answers(c)), timeout=30), "the late command was not answered"
    [(kind, answer)] = answers(court)
    assert (kind, answer["command_id"], answer.get("reason")) == ("command_rejected", 1, "wrong_case"), answer
    assert CASE_NO in str(answer["detail"]) and written in str(answer["detail"])
    assert again.agent.armed
    assert "disarmed" not in court.types(DEVICE)
    rejected = next(r.envelope for r in court.of(DEVICE) if r.envelope.type.value == "command_rejected")
    assert rejected.case_no == written  # the refusal is signed and filed under the case the seal guards now

    assert send(court, command(2, CommandAction.DISARM, case_no=OTHER_CASE))[1]["result"] == "disarmed"
    assert not again.agent.armed
    check_chain(court.of(DEVICE), verify_key(config))


def test_without_a_court_key_the_seal_does_not_start(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory
) -> None:
    config = write_config(tmp_path, broker, server_public_key="")
    with pytest.raises(ConfigError, match="server_public_key"):
        runtimes(config)


def test_disarm_then_silent_intrusion_test_warning_plays_and_the_last_id_survives_a_restart(
    seal_config: Path, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    speaker = RecordingSpeaker()
    runtime = online(runtimes, seal_config, court, speaker=speaker)
    assert send(court, command(1, CommandAction.DISARM))[1]["result"] == "disarmed"
    assert not runtime.agent.armed
    types = court.types(DEVICE)
    assert types.index("disarmed") < types.index("command_ack")  # the ack follows the action
    disarmed = court.payloads(DEVICE, "disarmed")[0]
    assert disarmed["by"] == 1

    pulse(mock_pins)
    assert court.wait_for(lambda c: c.payloads(DEVICE, "intrusion"))
    assert court.payloads(DEVICE, "intrusion")[0]["warning"] == "suppressed_disarmed"
    assert speaker.plays == 0

    assert send(court, command(2, CommandAction.TEST_WARNING))[1]["result"] == "played"
    assert speaker.plays == 1  # disarmed, yet the test warning plays
    runtime.close()

    again = online(runtimes, seal_config, court, speaker=speaker)
    assert not again.agent.armed
    kind, answer = send(court, command(2, CommandAction.ARM))
    assert (kind, answer["reason"]) == ("command_rejected", "replayed")
    assert send(court, command(3, CommandAction.ARM))[1]["result"] == "armed"
    assert again.agent.armed
    check_chain(court.of(DEVICE), verify_key(seal_config))


def test_snapshot_command_stores_and_sends_the_latest_frame(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory
) -> None:
    video = write_clip(tmp_path / "walk.avi", moving_rectangle_frames(50))
    camera = f'[camera]\nsource = "{video}"\nfps = 10.0'
    config = write_config(tmp_path, broker, camera=camera)
    runtime = online(runtimes, config, court)
    assert runtime.camera is not None and runtime.camera.monitor.wait_for_state("ok", 30)
    kind, answer = send(court, command(1, CommandAction.SNAPSHOT))
    assert kind == "command_ack" and answer["result"] == "taken"
    sha = answer["snapshot"]
    assert court.wait_for(lambda c: sha in c.snapshot_hashes(DEVICE), timeout=30)
    data = next(s.data for s in court.snapshots if s.sha == sha)
    assert hashlib.sha256(data).hexdigest() == sha


class _OutboxFailures(logging.Handler):
    """Sets ``seen`` when the agent logs an :class:`OutboxError` with its traceback."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is not None and isinstance(record.exc_info[1], OutboxError):
            self.seen.set()


def test_a_command_whose_answer_cannot_be_committed_is_delivered_again(
    seal_config: Path, broker: PrivateBroker, runtimes: RuntimeFactory
) -> None:
    """The outbox refuses the ``command_ack`` (a real SQLite error, from a trigger put on the seal's database file):
    the command must stay unacknowledged, come back after a reconnect and then be answered."""
    court = CourtSubscriber(broker, persistent=True).start()
    failures = _OutboxFailures()
    logging.getLogger("seal_agent").addHandler(failures)
    try:
        runtime = online(runtimes, seal_config, court)
        database = sqlite3.connect(load_config(seal_config).outbox_path, isolation_level=None)
        database.execute(
            "CREATE TRIGGER refuse_acks BEFORE INSERT ON outbox WHEN instr(NEW.data, '\"command_ack\"') > 0 "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full (test)'); END"
        )
        ping = command(5)
        court.publish_command(DEVICE, ping)
        assert failures.seen.wait(30), "the seal did not try to answer"
        assert not answers(court)
        database.execute("DROP TRIGGER refuse_acks")  # the disk has room again

        broker.stop()  # the seal reconnects; the broker's session still holds the unacknowledged command
        broker.start()
        assert runtime.publisher.wait_listening(30)
        assert court.wait_for(lambda c: bool(answers(c)), timeout=30), "the command was consumed without an answer"
        assert answers(court)[0] == (
            "command_ack",
            {"command_id": 5, "action": "ping", "result": "pong", "armed": True, "camera": "none",
             "sha256": sha256_hex(ping)},
        )  # fmt: skip
        check_chain(court.of(DEVICE), verify_key(seal_config))
        database.close()
    finally:
        logging.getLogger("seal_agent").removeHandler(failures)
        court.close()


class HeldSpeaker(RecordingSpeaker):
    """A speaker double whose warning stays under way (Chinese playing) until the test finishes it."""

    def play_warning(self) -> WarningPlayback | None:
        super().play_warning()
        self.playback = WarningPlayback(self.languages)
        self.playback.playing("zh")
        return self.playback


def test_a_test_warning_still_playing_is_acknowledged_started_and_its_outcome_follows(
    seal_config: Path, court: CourtSubscriber, runtimes: RuntimeFactory
) -> None:
    speaker = HeldSpeaker()
    runtime = online(runtimes, seal_config, court, speaker=speaker)
    kind, ack = send(court, command(1, CommandAction.TEST_WARNING))
    assert (kind, ack["result"]) == ("command_ack", "started")
    assert ack["warning_languages"] == [
        {"language": "zh", "result": "playing", "reason": None},
        {"language": "en", "result": "queued", "reason": None},
    ]
    assert court.payloads(DEVICE, "warning_result") == []  # nothing is claimed before it happened

    speaker.playback.finished("zh", "played")
    speaker.playback.finished("en", "failed", "Error opening PCM device.")
    speaker.playback.end()
    assert court.wait_for(lambda c: c.payloads(DEVICE, "warning_result"))
    ack_seq = next(r.envelope.seq for r in court.of(DEVICE) if r.envelope.type.value == "command_ack")
    assert court.payloads(DEVICE, "warning_result") == [{
        "trigger": "command_ack",
        "trigger_seq": ack_seq,
        "warning": "failed",
        "warning_languages": [
            {"language": "zh", "result": "played", "reason": None},
            {"language": "en", "result": "failed", "reason": "Error opening PCM device."},
        ],
    }]  # fmt: skip
    beat = runtime.agent.heartbeat()
    assert court.wait_for(lambda c: c.seqs(DEVICE) >= {beat.seq})
    heartbeat = court.payloads(DEVICE, "heartbeat")[-1]
    assert heartbeat["speaker"] == "failed"
    assert heartbeat["speaker_failure"]["language"] == "en"
    assert heartbeat["speaker_failure"]["reason"] == "Error opening PCM device."
    check_chain(court.of(DEVICE), verify_key(seal_config))


class _CommandSeen(logging.Handler):
    """Set once the seal took a command or left it untaken."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        self.lines.append(line)
        if line.startswith("court command") or "not taken" in line:
            self.seen.set()


def test_a_command_arriving_while_the_seal_stops_is_not_taken_and_is_answered_after_the_restart(
    seal_config: Path, court: CourtSubscriber, runtimes: RuntimeFactory
) -> None:
    """Once the agent is stopped, a warning_result could never follow a ``started`` ack: a test_warning arriving while
    the runtime closes (the publisher still listens during the delivery drain) is not taken, and the broker delivers
    it again to the restarted seal, which answers it."""
    runtime = online(runtimes, seal_config, court, speaker=HeldSpeaker())
    court.receipting = False  # the outbox keeps what the seal recorded
    stop_agent = runtime.agent.stop
    handled = _CommandSeen()

    def stop_then_a_command_arrives() -> None:  # the runtime's own stop of the agent, then the court's command
        stop_agent()
        court.publish_command(DEVICE, command(1, CommandAction.TEST_WARNING))
        assert handled.seen.wait(30), "the command did not reach the seal"

    agent_log = logging.getLogger("seal_agent")
    level = agent_log.level
    agent_log.addHandler(handled)
    agent_log.setLevel(logging.INFO)
    try:
        runtime.agent.stop = stop_then_a_command_arrives  # type: ignore[method-assign]
        runtime.close()
    finally:
        agent_log.removeHandler(handled)
        agent_log.setLevel(level)
    with Outbox(load_config(seal_config).outbox_path) as outbox:
        recorded = [decode_envelope(e.data).type.value for e in outbox.pending(limit=1000)]
    assert "command_ack" not in recorded and "command_rejected" not in recorded, (recorded, handled.lines)

    court.receipting = True
    online(runtimes, seal_config, court)  # the broker's session still holds the command
    assert court.wait_for(lambda c: bool(answers(c)), timeout=30), "the command was consumed without an answer"
    assert [(kind, answer["command_id"], answer["result"]) for kind, answer in answers(court)] == [
        ("command_ack", 1, "played")
    ]
    check_chain(court.of(DEVICE), verify_key(seal_config))
