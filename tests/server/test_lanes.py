"""The ingest worker's fair queue: seals in turn, each seal's order kept, a marker only after what came before it."""

from __future__ import annotations

import queue

import pytest

from server.ingest.lanes import FairQueue, lane_of_topic


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
