"""The ingest worker's fair queue: seals in turn, each seal's order kept, a marker only after what came before it."""

from __future__ import annotations

import queue
import threading

import pytest

from seal_protocol import EventType, snapshot_topic
from server.ingest.lanes import FairQueue, is_urgent, lane_of_topic
from tests.server.helpers import CASE_A, SimulatedSeal


def _drain(lanes: FairQueue[str]) -> list[str]:
    taken = []
    while True:
        try:
            taken.append(lanes.get_nowait())
        except queue.Empty:
            return taken


def test_seals_are_taken_in_turn_each_in_its_order() -> None:
    lanes: FairQueue[str] = FairQueue(lambda item: item.split("-")[0])
    for n in range(5):
        lanes.put(f"a-{n}")
    lanes.put("b-0")
    lanes.put("c-0")
    lanes.put("b-1")
    assert lanes.qsize() == 8
    assert _drain(lanes) == ["a-0", "b-0", "c-0", "a-1", "b-1", "a-2", "a-3", "a-4"]
    assert lanes.qsize() == 0


def test_a_marker_comes_after_everything_put_before_it() -> None:
    lanes: FairQueue[str] = FairQueue(lambda item: None if item.startswith("mark") else item.split("-")[0])
    for item in ["a-0", "a-1", "a-2", "mark-1", "b-0", "mark-2", "a-3"]:
        lanes.put(item)
    taken = _drain(lanes)
    assert taken == ["a-0", "b-0", "a-1", "a-2", "mark-1", "mark-2", "a-3"]


def test_get_waits_and_then_says_empty() -> None:
    lanes: FairQueue[str] = FairQueue(lambda item: item)
    with pytest.raises(queue.Empty):
        lanes.get(timeout=0.01)
    lanes.put("x")
    assert lanes.get(timeout=0.01) == "x"


def test_lanes_are_seal_accounts() -> None:
    assert lane_of_topic("seal/v1/seal-a/event") == lane_of_topic("seal/v1/seal-a/snapshot") == "seal-a"
    assert lane_of_topic("odd") == "odd"


def test_only_an_intrusion_or_a_tamper_report_is_urgent() -> None:
    seal = SimulatedSeal("seal-a", CASE_A)
    assert is_urgent(seal.event_topic, seal.event(EventType.INTRUSION, {"warning": "played"}))
    assert is_urgent(seal.event_topic, seal.event(EventType.TAMPER, {}))
    assert not is_urgent(seal.event_topic, seal.event())
    assert not is_urgent(seal.event_topic, seal.event(EventType.WARNING_RESULT, {"type": "intrusion"}))  # nested
    assert not is_urgent(snapshot_topic(seal.device_id, "0" * 64), seal.event(EventType.INTRUSION, {}))


def _lingering(lanes: FairQueue[str]) -> threading.Thread:
    thread = threading.Thread(target=lanes.linger, args=(60.0,), daemon=True)
    thread.start()
    return thread


def test_an_urgent_item_cuts_short_a_linger_until_it_is_taken() -> None:
    lanes: FairQueue[str] = FairQueue(lambda item: item.split("-")[0], lambda item: item.endswith("!"))
    waiting = _lingering(lanes)
    lanes.put("a-0")
    waiting.join(0.3)
    assert waiting.is_alive()  # a plain item does not end it
    lanes.put("b-0!")
    waiting.join(10)
    assert not waiting.is_alive()
    lanes.linger(60.0)  # the urgent item still waits: no linger
    assert _drain(lanes) == ["a-0", "b-0!"]
    again = _lingering(lanes)  # taken: the next linger waits
    again.join(0.3)
    assert again.is_alive()
    lanes.wake()  # (stopping)
    again.join(10)
    assert not again.is_alive()
    lanes.linger(60.0)
