"""The enclosure's tamper switch on gpiozero mock pins: pull-up, lid opened → pin high → tamper event + warning."""

from __future__ import annotations

import signal
import threading
import wave
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from seal_agent.config import DEFAULT_SOUNDS_DIR
from seal_agent.devices.tamper import TamperSwitch
from seal_dev.broker import PrivateBroker
from seal_protocol import SealStatus
from tests.agent.helpers import (
    CourtSubscriber,
    RecordingSpeaker,
    RuntimeFactory,
    agent_env,
    check_chain,
    start_agent,
    verify_key,
    wait_until,
    warning_outcome,
    write_config,
)

DEVICE = "seal-test-1"


def test_switch_reads_open_on_a_high_pin(mock_pins: MockFactory) -> None:
    opened, shut = threading.Event(), threading.Event()
    with TamperSwitch(27) as switch:
        assert switch.is_active  # the pull-up alone: an open (or cut) switch
        mock_pins.pin(27).drive_low()
        assert not switch.is_active
        switch.set_handlers(on_start=opened.set, on_end=shut.set)
        mock_pins.pin(27).drive_high()
        assert opened.wait(30) and switch.is_active
        mock_pins.pin(27).drive_low()
        assert shut.wait(30)


def test_lid_opened_records_tamper_and_warns(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    config = write_config(tmp_path, broker, tamper=True)
    speaker = RecordingSpeaker()
    runtime = runtimes(config, speaker=speaker)
    mock_pins.pin(27).drive_low()  # lid shut
    runtime.start()
    mock_pins.pin(27).drive_high()  # lid opened
    assert speaker.wait_plays(1, timeout=30)
    assert court.wait_for(lambda c: c.payloads(DEVICE, "tamper"), timeout=30)
    tamper = court.payloads(DEVICE, "tamper")[0]
    assert tamper["state"] == "open" and tamper["warning"] == "played" and tamper["at_start"] is False
    runtime.agent.heartbeat()
    assert court.wait_for(lambda c: c.payloads(DEVICE, "heartbeat"))
    assert court.payloads(DEVICE, "heartbeat")[0]["tamper"] == "open"
    check_chain(court.of(DEVICE), verify_key(config))


def test_disarmed_seal_records_tamper_silently_and_an_open_lid_at_start_counts(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    config = write_config(tmp_path, broker, tamper=True)
    speaker = RecordingSpeaker()
    runtime = runtimes(config, speaker=speaker)
    runtime.agent.disarm("removal approved")
    runtime.start()  # the pin still reads high: the lid is open at start
    assert court.wait_for(lambda c: c.payloads(DEVICE, "tamper"), timeout=30)
    tamper = court.payloads(DEVICE, "tamper")[0]
    assert tamper["at_start"] is True and tamper["warning"] == "suppressed_disarmed"
    assert speaker.plays == 0


def test_lid_opened_in_simulate_plays_the_warning_into_an_alsa_file(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber
) -> None:
    """The real simpleaudio speaker in a ``seal-agent simulate`` process: 't' opens the lid, the warning's PCM frames
    arrive in the ALSA file sink byte for byte, and the court gets the ``tamper`` event."""
    config = write_config(tmp_path, broker, languages=("zh",), tamper=True)
    sink = tmp_path / "alsa-out.raw"
    with wave.open(str(DEFAULT_SOUNDS_DIR / "warning_zh.wav")) as wav:
        expected_pcm = wav.readframes(wav.getnframes())
    log = tmp_path / "agent.log"
    agent = start_agent(["simulate", "--config", str(config)], agent_env(sink), log)
    try:
        assert court.wait_for(lambda c: c.last_status(DEVICE) is SealStatus.ONLINE, timeout=60), log.read_text()
        assert not sink.exists()  # the lid starts shut: no warning yet
        assert agent.stdin is not None
        agent.stdin.write("t\n")
        agent.stdin.flush()
        assert court.wait_for(lambda c: c.payloads(DEVICE, "tamper"), timeout=30), log.read_text()
        tamper = next(r.envelope for r in court.of(DEVICE) if r.envelope.type.value == "tamper")
        assert warning_outcome(court, DEVICE, tamper)["warning"] == "played"
        assert wait_until(lambda: sink.exists() and sink.read_bytes() == expected_pcm, timeout=30), log.read_text()
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=60) == 0, log.read_text()
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    check_chain(court.of(DEVICE), verify_key(config))
