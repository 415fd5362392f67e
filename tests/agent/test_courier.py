"""The courier on its own, with the real outbox: orderings of connection changes and PUBACKs that a real broker
shows only by chance (the end-to-end cases are in ``test_receipts.py``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from seal_agent.behaviour.seal import SystemClock
from seal_agent.journal.courier import Courier
from seal_agent.journal.outbox import Outbox, StoredEvent
from tests.agent.helpers import wait_until


def body(seq: int, prev_hash: str | None) -> bytes:
    return f"event {seq} after {prev_hash}".encode()


class Link:
    """The publisher as the courier sees it: ``connected`` from the CONNACK on, and a broker that acknowledges each
    item before ``send`` returns (as :class:`~seal_agent.mqtt.MqttPublisher` reports a PUBACK that came back before
    paho's ``publish`` returned its mid)."""

    def __init__(self) -> None:
        self.up = threading.Event()
        self.sent: list[int] = []
        self.courier: Courier[StoredEvent] | None = None

    def send(self, event: StoredEvent) -> None:
        assert self.courier is not None
        self.sent.append(event.seq)
        self.courier.on_ack(event.seq, None)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.sqlite") as box:
        yield box


def test_an_event_committed_while_the_connection_comes_up_is_sent_once(outbox: Outbox) -> None:
    """The publisher counts as connected from its CONNACK; it tells the courier a moment later (paho's thread first
    subscribes and logs). What the courier handed out in between, PUBACKed by the time it is told, must not go again
    in the pass the connection starts: each event once per connection."""
    link = Link()
    courier = Courier(outbox, link.send, SystemClock(), connected=link.up.is_set)
    link.courier = courier
    for _ in range(3):
        outbox.append(body)
    courier.start()
    try:
        link.up.set()  # the CONNACK is in …
        outbox.append(body)  # … a heartbeat is committed …
        courier.notify()
        wait_until(lambda: bool(link.sent), 0.5)  # (a loaded paho thread) …
        courier.on_connection(True)  # … and only then the courier hears of the connection
        assert wait_until(lambda: 4 in link.sent, 5)
        outbox.append(body)  # sent after every copy the pass would make of the older ones
        courier.notify()
        assert wait_until(lambda: 5 in link.sent, 5)
        assert link.sent == [1, 2, 3, 4, 5]
    finally:
        courier.stop()
