"""End-to-end delivery on the seal: an event leaves the outbox only on the court's signed receipt naming its bytes,
never on the broker's PUBACK; what is not receipted is sent again after a reconnect and after a timeout.

Real parts throughout: gpiozero mock pins, the real outbox, paho, a private Mosquitto, and the court's MQTT account
(:class:`~tests.agent.helpers.CourtSubscriber`), which receipts what it receives unless told not to.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from gpiozero.pins.mock import MockFactory
from paho.mqtt.enums import CallbackAPIVersion

from seal_dev.broker import PrivateBroker
from seal_protocol import envelope_hash
from seal_protocol.receipts import encode_receipt
from seal_protocol.signing import generate_signing_key
from seal_protocol.topics import receipt_topic
from tests.agent.helpers import (
    COURT_KEY,
    CourtSubscriber,
    RuntimeFactory,
    check_chain,
    pulse,
    verify_key,
    wait_until,
    write_config,
)

DEVICE = "seal-test-1"


class LogLines(logging.Handler):
    """Collects the messages of one logger; :meth:`wait` for the ``count``-th one matching a pattern."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name_ = name
        self.lines: list[str] = []
        self._cond = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._cond:
            self.lines.append(record.getMessage())
            self._cond.notify_all()

    def matching(self, pattern: str) -> list[str]:
        with self._cond:
            return [line for line in self.lines if re.search(pattern, line)]

    def wait(self, pattern: str, count: int = 1, timeout: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.matching(pattern)) >= count, timeout)


@pytest.fixture
def agent_log() -> Iterator[LogLines]:
    lines = LogLines("seal_agent")
    logger = logging.getLogger("seal_agent")
    logger.addHandler(lines)
    try:
        yield lines
    finally:
        logger.removeHandler(lines)


@pytest.fixture
def quiet_court(broker: PrivateBroker) -> Iterator[CourtSubscriber]:
    """The court's account, receiving everything and receipting nothing until told to; its session survives a
    broker restart."""
    court = CourtSubscriber(broker, persistent=True, receipting=False).start()
    try:
        yield court
    finally:
        court.close()


def copies(court: CourtSubscriber, seq: int) -> int:
    return sum(1 for r in court.of(DEVICE) if r.envelope.seq == seq)


def test_events_stay_after_the_puback_and_only_a_valid_receipt_for_their_bytes_deletes_them(
    tmp_path: Path,
    broker: PrivateBroker,
    quiet_court: CourtSubscriber,
    runtimes: RuntimeFactory,
    mock_pins: MockFactory,
    agent_log: LogLines,
) -> None:
    court = quiet_court
    runtime = runtimes(write_config(tmp_path, broker))
    runtime.start()
    assert runtime.publisher.wait_listening(30)
    pulse(mock_pins)
    assert court.wait_for(lambda c: c.seqs(DEVICE) == {1, 2})
    assert wait_until(lambda: runtime.outbox.unacknowledged_depth() == 0, 30)  # both PUBACKed …
    assert runtime.outbox.depth() == 2  # … and both kept
    assert runtime.agent.heartbeat().seq == 3
    assert court.wait_for(lambda c: c.payloads(DEVICE, "heartbeat"))
    assert court.payloads(DEVICE, "heartbeat")[0]["outbox_depth"] == 2  # counts what is not receipted
    first, second, _beat = [r.data for r in court.of(DEVICE)]

    court.send_receipt(DEVICE, [envelope_hash(first)], key=generate_signing_key())  # not the pinned court key
    court.send_receipt("seal-other", [envelope_hash(first)])  # meant for another seal, on this seal's topic …
    court.publish_receipt(DEVICE, encode_receipt("seal-other", [envelope_hash(first)], COURT_KEY))
    court.publish_receipt(DEVICE, b'{"committed":"everything"}')
    unsigned = encode_receipt(DEVICE, [envelope_hash(first)], COURT_KEY).replace(b'"sig":"', b'"sig":null,"x":"')
    court.publish_receipt(DEVICE, unsigned)
    assert agent_log.wait("refused a court receipt", count=4)
    refusals = " | ".join(agent_log.matching("refused a court receipt"))
    for reason in ("bad_signature", "wrong_device", "malformed"):
        assert reason in refusals
    court.send_receipt(DEVICE, [hashlib.sha256(b"bytes the seal never sent").hexdigest()])
    court.send_receipt(DEVICE, [envelope_hash(first)])
    assert wait_until(lambda: [e.seq for e in runtime.outbox.pending()] == [2, 3], 30)
    court.send_receipt(DEVICE, [envelope_hash(first)])  # replayed: harmless
    court.send_receipt(DEVICE, [envelope_hash(second), envelope_hash(court.of(DEVICE)[2].data)])
    assert runtime.delivery.events.wait_drained(30)
    assert runtime.outbox.depth() == 0
    assert [copies(court, seq) for seq in (1, 2, 3)] == [1, 1, 1]  # and nothing was sent twice meanwhile


def test_a_seal_cannot_write_its_own_receipts(
    tmp_path: Path, broker: PrivateBroker, quiet_court: CourtSubscriber
) -> None:
    write_config(tmp_path, broker)
    password = (tmp_path / "mqtt-password").read_text().strip()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="forger", protocol=mqtt.MQTTv5)
    client.username_pw_set(DEVICE, password)
    refused = threading.Event()
    client.on_publish = lambda c, u, mid, rc, p: refused.set() if rc.is_failure else None
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        client.publish(receipt_topic(DEVICE), encode_receipt(DEVICE, ["0" * 64], generate_signing_key()), qos=1)
        assert refused.wait(5), "the broker let a seal publish on its receipt topic"
    finally:
        client.disconnect()
        client.loop_stop()


def test_what_is_not_receipted_is_sent_again_after_a_reconnect(
    tmp_path: Path,
    broker: PrivateBroker,
    quiet_court: CourtSubscriber,
    runtimes: RuntimeFactory,
    mock_pins: MockFactory,
) -> None:
    court = quiet_court
    config = write_config(tmp_path, broker)
    runtime = runtimes(config)
    runtime.start()
    pulse(mock_pins)
    assert court.wait_for(lambda c: c.seqs(DEVICE) == {1, 2})
    assert wait_until(lambda: runtime.outbox.unacknowledged_depth() == 0, 30)
    # The broker has the court's acknowledgements of both: it has no copy in flight to the court that it would
    # deliver again after the restart (QoS 1), so a second copy can only come from the seal sending it again.
    court.sync()
    court.receipting = True  # from now on the court receipts what it receives
    broker.stop()
    broker.start()
    assert court.wait_for(lambda c: copies(c, 1) == 2 and copies(c, 2) == 2, timeout=30)
    assert runtime.delivery.events.wait_drained(30)
    assert check_chain(court.of(DEVICE), verify_key(config)) == [1, 2]


def test_a_puback_without_a_receipt_is_sent_again_after_a_doubling_timeout(
    tmp_path: Path,
    broker: PrivateBroker,
    quiet_court: CourtSubscriber,
    runtimes: RuntimeFactory,
    mock_pins: MockFactory,
    agent_log: LogLines,
) -> None:
    """A broker that drops a message without disconnecting (or a court that never commits it) cannot lose it."""
    court = quiet_court
    config = write_config(tmp_path, broker)
    runtime = runtimes(config, receipt_timeout_s=0.4, receipt_timeout_max_s=1.6)
    runtime.start()
    assert agent_log.wait("not receipted by", count=4, timeout=30)
    assert court.wait_for(lambda c: copies(c, 1) >= 4)
    timeouts = [float(line.split(" within ")[1].split(" s")[0]) for line in agent_log.matching("not receipted by")]
    assert timeouts[:4] == [0.4, 0.8, 1.6, 1.6]  # doubling while nothing is receipted, up to the ceiling
    court.receipting = True
    assert runtime.delivery.events.wait_drained(30)
    court.receipting = False
    before = len(agent_log.matching("not receipted by"))
    pulse(mock_pins)
    assert court.wait_for(lambda c: copies(c, 2) >= 2, timeout=30)
    assert agent_log.matching("not receipted by")[before].split(" within ")[1].startswith("0.4 s")  # reset
    assert check_chain(court.of(DEVICE), verify_key(config)) == [1, 2]


def test_an_outbox_left_by_the_previous_agent_keeps_its_events_and_sends_them(
    tmp_path: Path,
    broker: PrivateBroker,
    quiet_court: CourtSubscriber,
    runtimes: RuntimeFactory,
    mock_pins: MockFactory,
) -> None:
    court = quiet_court
    config = write_config(tmp_path, broker)
    first = runtimes(config)
    first.start()
    pulse(mock_pins)
    assert court.wait_for(lambda c: c.seqs(DEVICE) == {1, 2})
    outbox_path = first.outbox.path
    first.close()
    downgrade_to_schema_1(outbox_path)  # as the agent that deleted on PUBACK left it (it had not had the PUBACKs)

    court.receipting = True
    second = runtimes(config)
    assert second.outbox.depth() == 2
    second.start()
    assert court.wait_for(lambda c: c.seqs(DEVICE) == {1, 2, 3})
    assert second.delivery.events.wait_drained(30)
    assert check_chain(court.of(DEVICE), verify_key(config)) == [1, 2, 3]


def downgrade_to_schema_1(path: Path) -> None:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT seq, data, created_at FROM outbox").fetchall()
        meta = db.execute("SELECT key, value FROM meta").fetchall()
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE outbox (seq INTEGER PRIMARY KEY, data BLOB NOT NULL, created_at REAL NOT NULL);
            CREATE TABLE snapshot_queue (qid INTEGER PRIMARY KEY AUTOINCREMENT, sha TEXT NOT NULL UNIQUE,
                                         created_at REAL NOT NULL);
            CREATE TABLE snapshot_sent (sha TEXT PRIMARY KEY);
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            PRAGMA user_version=1;
            """
        )
        db.executemany("INSERT INTO outbox VALUES (?, ?, ?)", rows)
        db.executemany("INSERT INTO meta VALUES (?, ?)", meta)


def test_a_court_that_is_down_gets_one_copy_per_timeout_round_not_the_queue(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory, agent_log: LogLines
) -> None:
    """While the court is away the broker queues every copy for its session: re-sending the queue at every timeout
    would grow that without bound. Only the oldest event goes again as a probe, at a doubling interval."""
    court = CourtSubscriber(broker, persistent=True).start()
    court.close()  # the court is down; the broker keeps its session and queues what comes for it
    runtime = runtimes(write_config(tmp_path, broker), receipt_timeout_s=0.2, receipt_timeout_max_s=0.8)
    runtime.start()
    events = 1 + len([runtime.agent.heartbeat() for _ in range(30)])  # agent_started and 30 heartbeats
    assert agent_log.wait("not receipted by", count=5, timeout=30)
    rounds = agent_log.matching("not receipted by")
    assert all(line.startswith("1 events ") and "probe" in line for line in rounds), rounds

    back = CourtSubscriber(broker, persistent=True, client_id=court.client_id).start()  # the court is back
    try:
        assert runtime.delivery.events.wait_drained(30)
        resent = sum(int(line.split(" ", 1)[0]) for line in agent_log.matching("not receipted by"))
        received = len(back.of(DEVICE))
        assert back.seqs(DEVICE) == set(range(1, events + 1))
        redelivered = sum(1 for r in back.of(DEVICE) if r.dup)  # the broker's own, told apart from the seal's copies
        assert received <= events + resent, (received, resent, redelivered)  # the queue once, then a copy a round
    finally:
        back.close()


def test_a_slow_court_that_keeps_receipting_gets_few_extra_copies(
    tmp_path: Path,
    broker: PrivateBroker,
    quiet_court: CourtSubscriber,
    runtimes: RuntimeFactory,
) -> None:
    """The court receipts the events in order, one at a time, taking several timeouts for the whole queue: nothing
    is lost, so (almost) nothing should go twice."""
    court = quiet_court
    # A probe goes only after a whole interval without any receipt: 3 s leaves room for a loaded machine's pauses
    # between two receipts, while the queue, a receipt every 0.4 s and more, still takes about three intervals.
    runtime = runtimes(write_config(tmp_path, broker), receipt_timeout_s=3.0, receipt_timeout_max_s=12.0)
    runtime.start()
    events = 1 + len([runtime.agent.heartbeat() for _ in range(20)])
    assert court.wait_for(lambda c: c.seqs(DEVICE) == set(range(1, events + 1)))
    for seq in range(1, events + 1):
        [first] = [r for r in court.of(DEVICE) if r.envelope.seq == seq][:1]
        court.send_receipt(DEVICE, [envelope_hash(first.data)])
        left = events - seq
        assert wait_until(lambda: runtime.outbox.depth() == left, 30)  # noqa: B023 (used within the iteration)
        threading.Event().wait(0.4)  # a slow court
    extra = len(court.of(DEVICE)) - events
    assert extra <= 4, [r.envelope.seq for r in court.of(DEVICE)]


def test_an_event_lost_among_receipted_ones_is_sent_again_by_itself(
    tmp_path: Path,
    broker: PrivateBroker,
    quiet_court: CourtSubscriber,
    runtimes: RuntimeFactory,
    agent_log: LogLines,
) -> None:
    """The court receipts every event but one (as if the broker had dropped it): that one goes again, alone."""
    court = quiet_court
    # Long enough that the court's receipt of the others comes first on a loaded machine (else they are probed too).
    runtime = runtimes(write_config(tmp_path, broker), receipt_timeout_s=3.0, receipt_timeout_max_s=12.0)
    runtime.start()
    events = 1 + len([runtime.agent.heartbeat() for _ in range(5)])
    assert court.wait_for(lambda c: c.seqs(DEVICE) == set(range(1, events + 1)))
    court.send_receipt(DEVICE, [envelope_hash(r.data) for r in court.of(DEVICE) if r.envelope.seq != 3])
    assert court.wait_for(lambda c: copies(c, 3) >= 2)
    assert agent_log.wait("later ones were receipted")
    court.receipting = True
    court.send_receipt(DEVICE, [envelope_hash(court.of(DEVICE)[-1].data)])
    assert runtime.delivery.events.wait_drained(30)
    assert [copies(court, seq) for seq in range(1, events + 1) if seq != 3] == [1] * (events - 1)


def test_after_a_reconnect_every_interval_starts_again_from_the_base(
    tmp_path: Path,
    broker: PrivateBroker,
    quiet_court: CourtSubscriber,
    runtimes: RuntimeFactory,
    agent_log: LogLines,
) -> None:
    court = quiet_court
    runtime = runtimes(write_config(tmp_path, broker), receipt_timeout_s=0.3, receipt_timeout_max_s=2.4)
    runtime.start()
    assert agent_log.wait("not receipted by", count=3, timeout=30)
    timeouts = [float(line.split(" within ")[1].split(" s")[0]) for line in agent_log.matching("not receipted by")]
    assert timeouts[:3] == [0.3, 0.6, 1.2]
    broker.stop()
    broker.start()
    assert court.wait_for(lambda c: copies(c, 1) >= 5, timeout=30)  # sent again at the reconnect, then probed
    assert agent_log.wait("not receipted by", count=4, timeout=30)
    after = agent_log.matching("not receipted by")[3]
    assert after.split(" within ")[1].startswith("0.3 s"), after  # not 2.4
