"""What the ingest holds unstored, when its fair queue (:mod:`server.ingest.lanes`) hands messages out of the order
they came: each stored message's own wait is what the commit latency observes, and the oldest still held is the true
oldest. Before, the backlog took the oldest receive times off a FIFO for each message stored: a seal's message stored
before a flood received earlier was timed as the flood's, and a flood's message held 31 s was reported 29.5 s old
(``ok`` instead of ``stalled``). The backlog's clock is a test's: no wall time is measured."""

from __future__ import annotations

import queue
import random
from datetime import UTC, datetime

import pytest

from server.core.progress import STALLED_AFTER_S
from server.ingest.backlog import Backlog, Received
from server.ingest.lanes import FairQueue, lane_of_topic
from server.ingest.results import Message

SIZE = 100
WALL = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _receive(backlog: Backlog, lanes: FairQueue[Received], topic: str) -> Received:
    """As paho's thread does (server.ingest.mqtt): held by the backlog, then queued in the message's lane."""
    at = backlog.received(1, SIZE, topic)
    assert at is not None
    item = Received(0, 0, 1, Message(topic, bytes(SIZE), WALL), at)
    lanes.put(item)
    return item


def _lanes() -> FairQueue[Received]:
    return FairQueue(lambda item: lane_of_topic(item.message.topic))


def test_each_stored_message_is_timed_and_the_oldest_held_is_the_true_oldest() -> None:
    clock = Clock(1000.0)
    backlog, lanes = Backlog(clock=clock), _lanes()
    flood = []
    for n in range(1000):  # seal-a's flood over 1 s, received first
        clock.now = 1000.0 + n / 1000
        flood.append(_receive(backlog, lanes, "seal/v1/seal-a/event"))
    clock.now = 1002.0
    intrusion = _receive(backlog, lanes, "seal/v1/seal-b/event")  # 2 s later, seal-b's intrusion

    batch = [lanes.get_nowait(), lanes.get_nowait()]  # the lanes in turn: the flood's first, then seal-b's
    assert batch == [flood[0], intrusion]
    clock.now = 1002.5
    waited, failing_since = backlog.stored(batch)
    assert waited == pytest.approx([2.5, 0.5]) and failing_since is None  # (the FIFO said 2.5 and 2.499)

    clock.now = 1031.5
    progress = backlog.progress()
    assert progress.unstored == 999 and progress.unstored_bytes == 999 * batch[0].footprint
    assert progress.oldest_unstored_s == pytest.approx(1031.5 - flood[1].at) and progress.state == "stalled"

    rest = [lanes.get_nowait() for _ in range(998)]
    assert rest == flood[1:999]
    waited, _ = backlog.stored(rest)
    assert waited == pytest.approx([clock.now - item.at for item in rest])
    progress = backlog.progress()  # what is left: the flood's last, received 30.501 s ago (the FIFO said seal-b's)
    assert progress.unstored == 1 and progress.oldest_unstored_s == pytest.approx(1031.5 - flood[999].at)
    assert progress.oldest_unstored_s > STALLED_AFTER_S and progress.state == "stalled"

    backlog.stored([lanes.get_nowait()])
    progress = backlog.progress()
    assert (progress.unstored, progress.unstored_bytes, progress.oldest_unstored_s) == (0, 0, 0.0)
    with pytest.raises(queue.Empty):
        lanes.get_nowait()


def test_the_oldest_held_stays_true_whatever_order_messages_are_stored_in() -> None:
    """Many seals, many messages received at the same instant, stored in batches in any order: after each batch the
    oldest held is the least receive time of the messages still held (the heap's times no longer held, taken off as
    they reach its top, and its rebuilds)."""
    chance = random.Random(7)
    clock = Clock(0.0)
    backlog, lanes = Backlog(clock=clock), _lanes()
    held: list[Received] = []
    for round_ in range(200):
        for _ in range(chance.randrange(0, 60)):
            clock.now = float(round_ + chance.randrange(0, 3))  # times repeat, and need not rise
            held.append(_receive(backlog, lanes, f"seal/v1/seal-{chance.randrange(0, 12)}/event"))
        chance.shuffle(held)
        cut = chance.randrange(0, len(held) + 1)
        batch, held = held[:cut], held[cut:]
        clock.now = float(round_ + 5)
        waited, _ = backlog.stored(batch)
        assert waited == [clock.now - item.at for item in batch]
        progress = backlog.progress()
        assert progress.unstored == len(held) and progress.unstored_bytes == sum(item.footprint for item in held)
        assert progress.oldest_unstored_s == (clock.now - min(item.at for item in held) if held else 0.0)
    backlog.stored(held)
    assert backlog.progress().unstored == 0
