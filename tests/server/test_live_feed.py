"""The court's live feed on a real Mosquitto: one process's changes reach the others' live bus, once per batch and
never echoed back; a dropped connection or a missed message says "gap"; a malformed message is counted and ignored;
a seal's account can neither read nor write the feed."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from seal_dev.broker import PrivateBroker
from server.config import MqttSettings
from server.core.live import Change, LiveHub, Subscription
from server.core.live_feed import MAX_WAITING, LiveFeed
from server.core.live_wire import FEED_TOPIC, encode
from server.core.metrics import IngestMetrics
from server.seals.broker_files import SERVER_USERNAME
from tests.agent.helpers import wait_until as polled
from tests.server.mqtt_helpers import seal_connection, server_mqtt_settings

WAIT_S = 10.0


def wait_until(predicate: Callable[[], object], timeout: float = WAIT_S) -> bool:
    return polled(lambda: bool(predicate()), timeout)


class Page:
    """A page's subscription to a hub, on an event loop of its own thread (as uvicorn's would be)."""

    def __init__(self, hub: LiveHub) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.subscription: Subscription = asyncio.run_coroutine_threadsafe(self._subscribe(hub), self.loop).result(5)
        self.seen: list[Change] = []

    @staticmethod
    async def _subscribe(hub: LiveHub) -> Subscription:
        return hub.subscribe()[0]

    def take(self) -> list[Change]:
        """The changes delivered so far (all of them, in order)."""
        self.seen += [change for _seq, change in asyncio.run_coroutine_threadsafe(self._take(), self.loop).result(5)]
        return self.seen

    async def _take(self) -> list[tuple[int, Change]]:
        return await self.subscription.wait(0)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class Process:
    """One court process's end of the feed: its hub (if it serves pages), its metrics, its feed, started."""

    def __init__(self, settings: MqttSettings, *, pages: bool = True) -> None:
        self.metrics = IngestMetrics()
        self.hub = LiveHub() if pages else None
        self.feed = LiveFeed(settings, metrics=self.metrics, hub=self.hub)
        self.feed.start()
        if self.hub is not None:
            self.hub.forward_to(self.feed.send)
            assert self.feed.wait_subscribed(WAIT_S), "the feed did not subscribe"
        else:
            assert wait_until(lambda: self.feed.connected), "the feed did not connect"

    def feed_count(self, result: str) -> int:
        return self.metrics.snapshot().live_feed.get(result, 0)


@pytest.fixture
def processes(broker: PrivateBroker, tmp_path: Path) -> Iterator[Callable[..., Process]]:
    settings = server_mqtt_settings(broker, tmp_path)
    made: list[Process] = []

    def make(*, pages: bool = True) -> Process:
        made.append(Process(settings, pages=pages))
        return made[-1]

    try:
        yield make
    finally:
        for process in made:
            process.feed.stop()


@pytest.fixture
def page_of() -> Iterator[Callable[[LiveHub], Page]]:
    pages: list[Page] = []

    def make(hub: LiveHub) -> Page:
        pages.append(Page(hub))
        return pages[-1]

    try:
        yield make
    finally:
        for page in pages:
            page.close()


def court_client(broker: PrivateBroker) -> mqtt.Client:
    """A plain client on the court's account (to write what a court process would not)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{secrets.token_hex(4)}", protocol=mqtt.MQTTv5)
    client.username_pw_set(SERVER_USERNAME, broker.users[SERVER_USERNAME])
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client


def test_a_batch_reaches_the_other_processes_pages_in_one_message_and_is_not_echoed(
    processes: Callable[..., Process], page_of: Callable[[LiveHub], Page]
) -> None:
    worker, run = processes(pages=False), processes()
    other = processes()
    assert run.hub is not None and other.hub is not None
    page, other_page = page_of(run.hub), page_of(other.hub)
    batch = [Change("event", f"seal-{i:03d}") for i in range(500)] + [Change("event", "seal-000")]  # one repeat

    worker.feed.send(batch)

    assert wait_until(lambda: len(page.take()) == 500), f"{len(page.seen)} of 500 changes arrived"
    assert page.seen == batch[:500]
    # counted by the sender's thread once paho took the message: the pages may have it a moment before
    assert wait_until(lambda: worker.feed_count("sent") >= 1)
    assert worker.feed_count("sent") == 1, "a batch of 500 changes is one message"
    run.hub.publish([Change("alarm", "seal-007", "(2021)苏0214执1234号")])  # the run process's own change
    assert wait_until(lambda: len(other_page.take()) == 501)
    assert other_page.seen[-1] == Change("alarm", "seal-007", "(2021)苏0214执1234号")
    time.sleep(0.3)
    assert len(page.take()) == 501, "the run process's change is delivered to its own pages once, not echoed"
    assert not page.subscription.overflowed and not other_page.subscription.overflowed
    assert run.feed_count("received") == 1


def test_a_dropped_connection_tells_open_pages_gap_and_so_does_the_next_subscription(
    broker: PrivateBroker, processes: Callable[..., Process], page_of: Callable[[LiveHub], Page]
) -> None:
    run = processes()
    assert run.hub is not None
    page = page_of(run.hub)
    epoch = run.hub.epoch

    broker.stop()

    assert wait_until(lambda: page.subscription.gap == "feed"), "the open page was not told it may have missed some"
    assert run.hub.epoch != epoch, "a position given out before the drop must not be replayed"
    during = page_of(run.hub)  # a page loaded while the broker is away misses what others commit meanwhile
    broker.start()
    assert wait_until(lambda: during.subscription.gap == "feed", 20), "the page loaded during the outage was not told"
    gaps = run.metrics.snapshot().live_gaps
    assert gaps.get("disconnected") == 1 and gaps.get("subscribed") == 2, gaps
    after = page_of(run.hub)
    worker = processes(pages=False)
    worker.feed.send([Change("status", "seal-1")])
    assert wait_until(lambda: after.take() == [Change("status", "seal-1")])


def test_a_missed_message_says_gap_and_a_malformed_one_is_counted_and_ignored(
    broker: PrivateBroker, processes: Callable[..., Process], page_of: Callable[[LiveHub], Page]
) -> None:
    run = processes()
    assert run.hub is not None
    page = page_of(run.hub)
    client = court_client(broker)
    try:
        sender = secrets.token_hex(8)
        for payload in (
            b"not json",
            json.dumps({"v": 1, "sender": sender, "seq": 1, "changes": [{"what": "<script>"}]}).encode(),
            json.dumps({"v": 2, "sender": sender, "seq": 1, "changes": []}).encode(),
            encode(sender, 1, [Change("event", "seal-1")]),
        ):
            client.publish(FEED_TOPIC, payload, qos=1).wait_for_publish(WAIT_S)
        assert wait_until(lambda: page.take() == [Change("event", "seal-1")])
        assert run.feed_count("malformed") == 3 and not page.subscription.overflowed

        client.publish(FEED_TOPIC, encode(sender, 1, [Change("event", "seal-1")]), qos=1).wait_for_publish(WAIT_S)
        client.publish(FEED_TOPIC, encode(sender, 3, [Change("event", "seal-3")]), qos=1).wait_for_publish(WAIT_S)

        assert wait_until(lambda: page.subscription.gap == "feed"), "message 2 was missed: the page must reload"
        assert run.feed_count("duplicate") == 1
        assert run.metrics.snapshot().live_gaps.get("hole") == 1
    finally:
        client.disconnect()
        client.loop_stop()


def test_changes_the_sender_had_to_drop_make_the_receivers_reload(
    processes: Callable[..., Process], page_of: Callable[[LiveHub], Page]
) -> None:
    worker, run = processes(pages=False), processes()
    assert run.hub is not None
    page = page_of(run.hub)
    worker.feed.send([Change("event", "seal-1")])
    assert wait_until(lambda: page.take() == [Change("event", "seal-1")])

    worker.feed.send(Change("event", f"seal-{i}") for i in range(MAX_WAITING + 1))  # more than may wait: dropped
    worker.feed.send([Change("event", "seal-2")])

    assert wait_until(lambda: page.subscription.gap == "feed")
    assert worker.feed_count("unsent") == 1


def test_changes_dropped_by_a_sender_that_then_goes_quiet_make_the_receivers_reload_all_the_same(
    processes: Callable[..., Process], page_of: Callable[[LiveHub], Page]
) -> None:
    """The hole is shown at once, not only when the sender next has something to send (perhaps never)."""
    worker, run = processes(pages=False), processes()
    assert run.hub is not None
    page = page_of(run.hub)
    worker.feed.send([Change("event", "seal-1")])
    assert wait_until(lambda: page.take() == [Change("event", "seal-1")])

    worker.feed.send(Change("event", f"seal-{i}") for i in range(MAX_WAITING + 1))  # dropped; nothing follows

    assert wait_until(lambda: page.subscription.gap == "feed"), "the pages were left with a silent hole"
    assert run.metrics.snapshot().live_gaps.get("hole") == 1
    assert page.take() == [Change("event", "seal-1")], "an empty message delivers nothing"


def test_a_sender_first_heard_past_its_first_message_makes_the_receivers_reload(
    broker: PrivateBroker, tmp_path: Path, processes: Callable[..., Process], page_of: Callable[[LiveHub], Page]
) -> None:
    """A new sender whose first message was lost looks like one that started before the receiver subscribed: what
    came before its first message heard is unknown, so the pages reload."""
    run = processes()
    assert run.hub is not None
    page = page_of(run.hub)
    metrics = IngestMetrics()
    late = LiveFeed(server_mqtt_settings(broker, tmp_path), metrics=metrics, role="late")
    late.send(Change("event", f"seal-{i}") for i in range(MAX_WAITING + 1))  # dropped: its number 1 is skipped
    late.start()
    try:
        assert wait_until(lambda: page.subscription.gap == "feed"), "the pages were left with a silent hole"
        gaps = run.metrics.snapshot().live_gaps
        assert (gaps.get("unknown_sender"), gaps.get("hole")) == (1, None), gaps
        assert metrics.snapshot().live_feed.get("unsent") == 1
        assert run.feed.gaps == 2  # its first subscription, and this one
    finally:
        late.stop()


def test_a_seals_account_can_neither_read_nor_write_the_feed(
    broker: PrivateBroker, processes: Callable[..., Process], page_of: Callable[[LiveHub], Page]
) -> None:
    run = processes()
    assert run.hub is not None
    page = page_of(run.hub)
    with seal_connection(broker, "seal-0001") as seal:
        granted: list[object] = []
        acked: list[object] = []
        seal.client.on_subscribe = lambda _c, _u, _mid, codes, _p: granted.append(codes)
        seal.client.on_publish = lambda _c, _u, _mid, code, _p: acked.append(code)
        heard: list[bytes] = []
        seal.client.on_message = lambda _c, _u, message: heard.append(message.payload)
        seal.client.subscribe(FEED_TOPIC, qos=1)
        seal.client.subscribe("court/#", qos=1)
        forged = encode(secrets.token_hex(8), 1, [Change("alarm", "seal-0002")])
        seal.client.publish(FEED_TOPIC, forged, qos=1).wait_for_publish(WAIT_S)
        assert wait_until(lambda: len(granted) == 2 and len(acked) == 1)
        run.hub.publish([Change("event", "seal-0001")])  # what the court sends on the feed
        time.sleep(0.5)

    # Mosquitto grants a SUBSCRIBE whatever the ACL says and checks "read" on each message it would deliver.
    assert str(acked[0]) == "Not authorized", f"the broker took a seal's message for the feed: {acked}"
    assert heard == [], "a seal read the court's feed"
    assert page.take() == [Change("event", "seal-0001")], "a seal's message reached the pages"
    assert run.feed_count("received") == 0


@pytest.mark.parametrize("pattern", ["#", "+/v1/live", "court/+/+", "$share/pages/court/v1/live", "$share/pages/#"])
def test_no_wildcard_nor_shared_subscription_lets_a_seal_read_the_feed(
    pattern: str, broker: PrivateBroker, processes: Callable[..., Process]
) -> None:
    worker = processes(pages=False)
    with seal_connection(broker, "seal-0003") as seal:
        granted: list[object] = []
        heard: list[tuple[str, bytes]] = []
        seal.client.on_subscribe = lambda _c, _u, _mid, codes, _p: granted.append(codes)
        seal.client.on_message = lambda _c, _u, message: heard.append((message.topic, message.payload))
        seal.client.subscribe(pattern, qos=1)
        assert wait_until(lambda: granted)
        worker.feed.send([Change("event", "seal-0003")])
        assert wait_until(lambda: worker.feed_count("sent") == 1)
        time.sleep(0.5)
    assert [topic for topic, _payload in heard if topic == FEED_TOPIC] == [], f"{pattern} read the court's feed"


def test_sending_never_waits_for_an_absent_broker_and_what_waited_is_sent_when_it_is_back(
    broker: PrivateBroker, processes: Callable[..., Process]
) -> None:
    worker = processes(pages=False)
    broker.stop()
    assert wait_until(lambda: not worker.feed.connected)

    for batch in range(200):  # 200 committed batches of 50 events, as an ingest would commit them
        worker.feed.send(Change("event", f"seal-{batch}-{i}") for i in range(50))
    assert worker.feed_count("sent") == 0

    broker.start()
    assert wait_until(lambda: worker.feed_count("sent") == 20, 20), "10,000 waiting changes: 20 messages of 500"
    assert worker.feed_count("unsent") == 0
