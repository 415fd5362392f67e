"""A seal that cannot play its warning says so in its signed events, and the court raises ``speaker_failed``.

The whole real path: simpleaudio writing through ALSA (``ALSA_CONFIG_PATH``: a default PCM that cannot be opened,
then a file sink), the real :class:`~seal_agent.devices.speaker.WarningSpeaker`, the seal's behaviour on gpiozero
mock pins, its recorder and outbox signing with the seal's key, and the court's real ingest.
"""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from seal_agent.behaviour.seal import SealAgent, SystemClock
from seal_agent.behaviour.warning import WarningSettings
from seal_agent.config import DEFAULT_SOUNDS_DIR
from seal_agent.devices.pir import PirSensor
from seal_agent.devices.speaker import WarningSpeaker
from seal_agent.journal.outbox import Outbox
from seal_agent.journal.recorder import EventRecorder
from seal_dev.alsa_sink import alsa_file_config
from seal_protocol import Envelope, EventType, decode_envelope
from server.core.db import SessionFactory
from tests.agent.helpers import wait_until
from tests.server.ingest_world import Court, make_court

PIN = 17
LANGUAGES = ("zh", "en")


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    return make_court(session_factory, tmp_path)


class Seal:
    """seal-a of the court world, as the real agent: its key signs what the real speaker did."""

    def __init__(self, court: Court, directory: Path) -> None:
        self.factory = MockFactory()
        self.outbox = Outbox(directory / "outbox.sqlite")
        self.recorder = EventRecorder(
            device_id=court.a.device_id, case_no=court.a.case_no, signing_key=court.a.key, outbox=self.outbox,
            clock=SystemClock(),
        )  # fmt: skip
        self.speaker = WarningSpeaker([DEFAULT_SOUNDS_DIR / f"warning_{lang}.wav" for lang in LANGUAGES])
        self.sensor = PirSensor(PIN, pin_factory=self.factory)
        self.agent = SealAgent(
            recorder=self.recorder,
            motion=self.sensor,
            speaker=self.speaker,
            warning=WarningSettings(repeat_s=600, max_repeats=0, cooldown_s=0),
            heartbeat_s=3600,
        )
        self.sent = 0

    def presence(self) -> None:
        """Someone comes and goes; wait until the intrusion and its follow-ups are recorded."""
        pin = self.factory.pin(PIN)
        pin.drive_high()
        assert self.agent.wait_recorded(30, follow_ups=True)  # a warning plays for seconds
        pin.drive_low()

    def new_events(self) -> list[tuple[Envelope, bytes]]:
        fresh = [e for e in self.outbox.pending(limit=1000) if e.seq > self.sent]
        self.sent = max([self.sent, *(e.seq for e in fresh)])
        return [(decode_envelope(e.data), e.data) for e in fresh]

    def close(self) -> None:
        self.agent.stop()
        self.speaker.close()
        self.sensor.close()
        self.outbox.close()
        self.factory.reset()


@pytest.fixture
def seal(court: Court, tmp_path: Path) -> Iterator[Seal]:
    seal = Seal(court, tmp_path)
    try:
        yield seal
    finally:
        seal.close()


def of_type(events: list[tuple[Envelope, bytes]], type: str) -> list[dict[str, Any]]:
    return [envelope.payload for envelope, _ in events if envelope.type.value == type]


def test_a_seal_that_cannot_open_its_sound_device_says_failed_per_language_and_the_court_raises_speaker_failed(
    court: Court, seal: Seal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "alsa-broken.conf"
    broken.write_text("pcm.!default { type hw; card 99 }\n")
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(broken))
    seal.agent.start()
    seal.presence()
    seal.agent.heartbeat()

    events = seal.new_events()
    [intrusion] = of_type(events, "intrusion")
    # Every clip was refused at once, so the event is the outcome: no language played, the English one was tried.
    assert intrusion["warning"] == "failed"
    outcome = [(i["language"], i["result"]) for i in intrusion["warning_languages"]]
    assert outcome == [("zh", "failed"), ("en", "failed")]
    assert all("PCM" in i["reason"] for i in intrusion["warning_languages"]), intrusion
    assert of_type(events, "warning_result") == []  # nothing was left under way
    [heartbeat] = of_type(events, "heartbeat")
    assert heartbeat["speaker"] == "failed"
    failure = heartbeat["speaker_failure"]
    assert failure["language"] == "en" and "PCM" in failure["reason"] and failure["ts"].endswith("Z")

    court.send(court.a, *(data for _, data in events))
    assert [e.seq for e, _ in events] == court.seqs("seal-a")  # signed by the seal, stored verbatim
    [alarm] = court.alarms("speaker_failed")
    assert (alarm.state, alarm.severity, alarm.details["event_type"]) == ("open", "high", "intrusion")
    assert [i["result"] for i in alarm.details["warning_languages"]] == ["failed", "failed"]
    assert len(court.alarms("intrusion")) == 1  # someone came in all the same

    # The sound device works again: the next warning plays both languages and closes the alarm.
    sink = tmp_path / "alsa-out.raw"
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(alsa_file_config(sink)))
    seal.presence()
    seal.agent.heartbeat()

    events = seal.new_events()
    [intrusion] = of_type(events, "intrusion")
    played = [{"language": lang, "result": "played", "reason": None} for lang in LANGUAGES]
    if intrusion["warning"] == "started":  # committed while the clips played: the outcome follows
        [result] = of_type(events, "warning_result")
        assert (result["trigger"], result["trigger_seq"]) == ("intrusion", events[0][0].seq)
        assert (result["warning"], result["warning_languages"]) == ("played", played)
    else:
        assert (intrusion["warning"], intrusion["warning_languages"]) == ("played", played)
    clips = []
    for language in LANGUAGES:
        with wave.open(str(DEFAULT_SOUNDS_DIR / f"warning_{language}.wav")) as wav:
            clips.append(wav.readframes(wav.getnframes()))
    assert wait_until(lambda: sink.read_bytes() == b"".join(clips), timeout=10)  # every clip, byte for byte
    [heartbeat] = of_type(events, "heartbeat")
    assert heartbeat["speaker"] == "ok" and heartbeat["speaker_failure"]["language"] == "en"  # the last failure kept

    court.send(court.a, *(data for _, data in events))
    [alarm] = court.alarms("speaker_failed")
    assert alarm.state == "closed" and alarm.closed_note.startswith("system: the warning played")


def test_a_heartbeat_saying_the_speaker_failed_raises_the_alarm_once(court: Court) -> None:
    """A repeat of the warning has no event of its own: the heartbeat carries its failure to the court."""
    failure = {"language": "zh", "reason": "Error opening PCM device.", "ts": "2026-11-26T08:00:00.000Z"}
    beat = {"speaker": "failed", "speaker_failure": failure}
    court.send(court.a, court.a.event(payload=beat), court.a.event(payload=beat))
    [alarm] = court.alarms("speaker_failed")
    assert (alarm.state, alarm.count, alarm.details["speaker_failure"]) == ("open", 1, failure)
    court.send(court.a, court.a.event(payload={"speaker": "ok", "speaker_failure": failure}))
    assert court.alarms("speaker_failed")[0].state == "closed"


def test_a_warning_that_fails_in_one_language_only_raises_the_alarm(court: Court) -> None:
    languages = [
        {"language": "zh", "result": "played", "reason": None},
        {"language": "en", "result": "failed", "reason": "Error opening PCM device."},
    ]
    court.send(
        court.a,
        court.a.event(EventType.INTRUSION, {"armed": True, "warning": "started", "warning_languages": []}),
        court.a.event(EventType.WARNING_RESULT, {"trigger": "intrusion", "trigger_seq": 1, "warning": "failed",
                                                 "warning_languages": languages}),
    )  # fmt: skip
    [alarm] = court.alarms("speaker_failed")
    assert alarm.details["event_type"] == "warning_result" and alarm.details["warning_languages"] == languages
