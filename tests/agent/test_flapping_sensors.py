"""A flapping sensor (a failing PIR, a loose tamper wire) is bounded: a few full triggers, then ONE signed
``sensor_flapping``, its further edges merged into signed counts, ``sensor_normal`` once quiet; the warning keeps its
policy meanwhile. A PIR stuck high is signed ``sensor_stuck``, and its end ``sensor_unstuck``. Events are read from
the real agent's outbox (gpiozero mock pins)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory

from seal_agent.runtime import SealRuntime
from seal_dev.broker import PrivateBroker
from seal_protocol import Envelope, decode_envelope, parse_ts
from tests.agent.helpers import RecordingSpeaker, RuntimeFactory, write_config

BOUND = "trigger_burst = 3\ntrigger_refill_s = 3600\nsummary_s = 1\nquiet_s = 2\n"


def events(runtime: SealRuntime) -> list[Envelope]:
    return [decode_envelope(item.data) for item in runtime.outbox.pending(limit=100_000)]


def of(runtime: SealRuntime, type: str) -> list[dict[str, Any]]:
    return [e.payload for e in events(runtime) if e.type.value == type]


def beat(runtime: SealRuntime) -> dict[str, Any]:
    return decode_envelope(runtime.agent.heartbeat().data).payload


def wait_until(check: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def flap(mock_pins: MockFactory, pin_no: int, edges: int) -> None:
    pin = mock_pins.pin(pin_no)
    for n in range(edges):
        (pin.drive_high if n % 2 == 0 else pin.drive_low)()
        time.sleep(0.003)
    pin.drive_low()


def test_a_flapping_pir_gives_a_few_intrusions_then_one_flapping_event_signed_counts_and_normal_again(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    speaker = RecordingSpeaker()
    runtime = runtimes(write_config(tmp_path, broker, cooldown_s=0, sensors=BOUND), speaker=speaker)
    runtime.start()
    flapping = threading.Thread(target=flap, args=(mock_pins, 17, 600))
    flapping.start()
    assert wait_until(lambda: bool(of(runtime, "sensor_flapping")))
    pir = beat(runtime)["sensors"]["pir"]  # while it flaps: the count merged so far
    assert pir["state"] == "flapping" and pir["merged_edges"] >= 1, pir
    flapping.join()
    assert wait_until(lambda: bool(of(runtime, "sensor_normal")))
    assert runtime.agent.wait_recorded(30, follow_ups=True)
    assert len(of(runtime, "intrusion")) == 3  # the burst, not one per edge
    flaps = of(runtime, "sensor_flapping")
    began = [p for p in flaps if p["phase"] == "began"]
    assert len(began) == 1 and began[0]["sensor"] == "pir" and began[0]["edges"] >= 5, flaps
    assert began[0]["window_s"] == 3 * 3600
    summaries = [p for p in flaps if p["phase"] != "began"]
    assert summaries and all(p["merged"] is True and p["edges"] > 0 for p in summaries), summaries
    for p in summaries:
        assert parse_ts(p["since"]) <= parse_ts(p["first_edge"]) <= parse_ts(p["last_edge"]), p
    (normal,) = of(runtime, "sensor_normal")
    # Every merged edge is in a signed count: the one that began it, the summaries', the last one's.
    assert normal["merged_edges"] == 1 + sum(p["edges"] for p in summaries) + normal["edges"], (normal, summaries)
    assert normal["merged_edges"] > 100  # the flap's edges, merged, not dropped
    assert speaker.plays > 3  # the warning kept its policy during the flap (no cool-down here)
    assert beat(runtime)["sensors"]["pir"] == {"state": "normal", "merged_edges": 0}
    # The first edge after the quiet is a full intrusion again.
    pin = mock_pins.pin(17)
    pin.drive_high()
    assert wait_until(lambda: len(of(runtime, "intrusion")) == 4)
    pin.drive_low()
    total = len(events(runtime))
    assert total < 40, total  # a few events, not hundreds


def test_a_flapping_tamper_switch_is_bounded_too(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    speaker = RecordingSpeaker()
    runtime = runtimes(write_config(tmp_path, broker, tamper=True, sensors=BOUND), speaker=speaker)
    mock_pins.pin(27).drive_low()  # lid shut (after the switch was built)
    runtime.start()
    flap(mock_pins, 27, 600)
    assert wait_until(lambda: bool(of(runtime, "sensor_normal")))
    assert runtime.agent.wait_recorded(30, follow_ups=True)
    assert len(of(runtime, "tamper")) == 3
    began = [p for p in of(runtime, "sensor_flapping") if p["phase"] == "began"]
    assert [p["sensor"] for p in began] == ["tamper"]
    assert of(runtime, "sensor_normal")[0]["sensor"] == "tamper"
    assert speaker.plays > 3  # an armed seal warns at each opening, flapping or not
    assert not of(runtime, "intrusion")


def test_a_pir_stuck_high_is_signed_stuck_and_its_end_unstuck(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    runtime = runtimes(write_config(tmp_path, broker, sensors="stuck_after_s = 2\n"))
    runtime.start()
    pin = mock_pins.pin(17)
    pin.drive_high()
    assert wait_until(lambda: bool(of(runtime, "sensor_stuck")))
    stuck = next(e for e in events(runtime) if e.type.value == "sensor_stuck")
    intrusion = next(e for e in events(runtime) if e.type.value == "intrusion")
    assert stuck.payload["sensor"] == "pir" and stuck.payload["after_ms"] >= 2000
    assert parse_ts(stuck.payload["since"]) == parse_ts(intrusion.ts)  # since its rising edge
    assert beat(runtime)["sensors"]["pir"]["state"] == "stuck"
    assert len(of(runtime, "sensor_stuck")) == 1  # once, not at every tick
    pin.drive_low()
    assert wait_until(lambda: bool(of(runtime, "sensor_unstuck")))
    (unstuck,) = of(runtime, "sensor_unstuck")
    assert unstuck["sensor"] == "pir" and unstuck["since"] == stuck.payload["since"]
    assert beat(runtime)["sensors"]["pir"]["state"] == "normal"
