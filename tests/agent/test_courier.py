"""The courier on its own, with the real outbox: orderings of connection changes and PUBACKs that a real broker
shows only by chance (the end-to-end cases are in ``test_receipts.py``)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from seal_agent.behaviour.seal import SystemClock
from seal_agent.errors import OutboxError
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


class SlowOutbox(Outbox):
    """The real outbox, whose marking of PUBACKs or reading can be held (a slow SD card): the courier is then between
    taking its messages and handing items out, while the publisher goes on; and whose deleting of receipted events can
    fail once (a disk error)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.hold = threading.Event()  # set: the next mark waits for ``release``
        self.hold_read = threading.Event()  # set: the next read of the queue waits for ``release``
        self.holding = threading.Event()
        self.release = threading.Event()
        self.fail_receipt = threading.Event()  # set: the next deletion of receipted events fails

    def _held(self, hold: threading.Event) -> None:
        if hold.is_set():
            hold.clear()
            self.holding.set()
            self.release.wait(5)

    def broker_acknowledged(self, seqs: Collection[int]) -> None:
        self._held(self.hold)
        super().broker_acknowledged(seqs)

    def pending(self, *, after: int = 0, limit: int = 100) -> list[StoredEvent]:
        self._held(self.hold_read)
        return super().pending(after=after, limit=limit)

    def court_receipted(self, hashes: Collection[str]) -> list[int]:
        if self.fail_receipt.is_set():
            self.fail_receipt.clear()
            raise OutboxError("cannot delete receipted events in the test's outbox: disk I/O error")
        return super().court_receipted(hashes)


def test_a_reconnect_the_courier_has_not_handled_yet_sends_nothing_before_its_pass(tmp_path: Path) -> None:
    """The link drops and comes back (the publisher connected again, the courier not yet told) while the courier is
    busy: it must not take the new connection for the one whose coming up it handled, and hand out an item that the
    new connection's pass then sends a second time."""
    link = Link()
    outbox = SlowOutbox(tmp_path / "outbox.sqlite")
    with outbox:
        courier = Courier(outbox, link.send, SystemClock(), connected=link.up.is_set)
        link.courier = courier
        for _ in range(3):
            outbox.append(body)
        courier.start()
        try:
            link.up.set()
            courier.on_connection(True)
            assert wait_until(lambda: link.sent == [1, 2, 3], 5)
            outbox.hold.set()
            outbox.append(body)
            courier.notify()
            assert outbox.holding.wait(5)  # the courier marks event 4's PUBACK, slowly …
            link.up.clear()  # … the link drops …
            courier.on_connection(False)
            link.up.set()  # … and comes back (CONNACK): the publisher has not told the courier yet …
            outbox.append(body)  # … and an event is committed
            del link.sent[:]
            outbox.release.set()
            wait_until(lambda: bool(link.sent), 0.5)
            courier.on_connection(True)  # the new connection's pass: everything not receipted, once
            assert wait_until(lambda: 5 in link.sent and link.sent.count(5) + len(link.sent) >= 6, 5)
            time.sleep(0.2)  # a second copy would be on its way by now
            assert link.sent == [1, 2, 3, 4, 5]
        finally:
            courier.stop()


def test_a_receipt_the_outbox_fails_to_apply_loses_no_connection_change(tmp_path: Path) -> None:
    """Deleting a receipt's events fails (a disk error) with the link's coming up queued behind it: the courier still
    handles the coming up, and sends again on the new connection once its retry is due, instead of waiting for a
    connection it will never be told of."""
    link = Link()
    outbox = SlowOutbox(tmp_path / "outbox.sqlite")
    with outbox:
        courier = Courier(outbox, link.send, SystemClock(), connected=link.up.is_set, retry_s=0.2)
        link.courier = courier
        for _ in range(3):
            outbox.append(body)
        courier.start()
        try:
            link.up.set()
            courier.on_connection(True)
            assert wait_until(lambda: link.sent == [1, 2, 3], 5)
            outbox.hold_read.set()
            link.up.clear()
            courier.on_connection(False)
            assert outbox.holding.wait(5)  # the courier handled the drop and reads its queue, slowly …
            outbox.fail_receipt.set()
            courier.on_receipt({hashlib.sha256(body(1, None)).hexdigest()})  # … a receipt comes, the disk fails …
            link.up.set()
            courier.on_connection(True)  # … and the link is back
            del link.sent[:]
            outbox.release.set()
            assert wait_until(lambda: link.sent == [1, 2, 3], 5), link.sent
        finally:
            courier.stop()
