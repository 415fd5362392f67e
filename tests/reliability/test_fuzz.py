"""Fuzz: generated hostile messages through the real broker, with a registered seal's own account, into the running
server, while a legitimate seal's events keep arriving.

Asserted: the server process never dies; no stall (the legitimate seal's events keep being stored during the fuzz,
and in the end every message the broker accepted is accounted for); nothing invalid stored (every stored event is
the canonical encoding of its envelope and verifies with the enrolled key, and the fuzzed seal's stored events are
exactly its genuine ones); every message accounted for: stored + duplicate + status + snapshot + quarantined ==
published to the server. The counts per outcome and per quarantine reason are printed (``pytest -s``) and written
to ``fuzz-report.json`` in the test's directory.

Short run: ~2,000 messages; ``--long``: 100,000 (docs/reliability.md). Seeded: ``SEAL_FUZZ_SEED`` reproduces a run.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import select

from seal_dev.broker import PrivateBroker
from seal_protocol import decode_envelope, encode_envelope
from seal_protocol.signing import verify_envelope, verify_key_from_b64
from server.evidence.models import Event
from server.ingest.models import QuarantinedMessage
from tests.reliability.conftest import Scale, SealFactory
from tests.reliability.fuzzgen import FuzzMessage, FuzzSeal, generate
from tests.reliability.harness import CASE_NO, Court, check_delivery, log, rejected_by_reason, settle, wait_flowing
from tests.reliability.harness import report as report_figures

#: Messages the broker may hold for the server beyond what it has accounted for (keeps the fuzz at the server's pace,
#: so that "the legitimate seal keeps arriving" measures the server, not a queue in front of it).
BACKLOG = 1000
#: The longest the legitimate seal's events may stop arriving during the fuzz.
MAX_LEGIT_GAP_S = 10.0
SETTLE_S = 120.0


@dataclass
class FuzzPublisher:
    """One MQTT v5 connection with the fuzzed seal's account; QoS 1, PUBACK reason codes recorded by label."""

    port: int
    username: str
    password: str
    window: int = 200
    acks: Counter[str] = field(default_factory=Counter)
    disconnects: int = 0

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: dict[int, str] = {}
        self._early: dict[int, ReasonCode] = {}
        self._connected = threading.Event()
        self._closing = False
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{self.username}-fuzz", protocol=mqtt.MQTTv5)
        client.username_pw_set(self.username, self.password)
        client.max_inflight_messages_set(self.window)
        client.on_connect = lambda c, u, f, rc, p: self._connected.set() if not rc.is_failure else None
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client

    def start(self) -> FuzzPublisher:
        self._client.connect("127.0.0.1", self.port, keepalive=30, clean_start=True)
        self._client.loop_start()
        assert self._connected.wait(10), "the fuzz publisher could not connect"
        return self

    def close(self) -> None:
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if not self._closing:
            self.disconnects += 1

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        with self._cond:
            label = self._pending.pop(mid, None)
            if label is None:
                self._early[mid] = rc
            else:
                self.acks[_ack_kind(rc)] += 1
            self._cond.notify_all()

    def publish(self, message: FuzzMessage) -> None:
        with self._cond:
            self._cond.wait_for(lambda: len(self._pending) < self.window, 30)
        info = self._client.publish(message.topic, message.payload, qos=1, properties=mqtt_properties(message))
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, mqtt.error_string(info.rc)
        with self._cond:
            early = self._early.pop(info.mid, None)
            if early is None:
                self._pending[info.mid] = message.label
            else:
                self.acks[_ack_kind(early)] += 1

    def wait_acked(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending, timeout)


def mqtt_properties(message: FuzzMessage) -> Properties | None:
    if not message.properties:
        return None
    properties = Properties(PacketTypes.PUBLISH)
    for name, value in message.properties.items():
        setattr(properties, name, value)
    return properties


def _ack_kind(rc: ReasonCode) -> str:
    if rc.is_failure:
        return f"refused:{rc}"
    return "no_subscribers" if rc.value == 16 else "accepted"


def publish_alone(port: int, username: str, password: str, message: FuzzMessage) -> str:
    """Publish on a connection of its own (the broker may drop a connection after refusing a publish); the
    broker's answer: ``accepted``, ``no_subscribers``, ``refused:<reason>`` or ``dropped``."""
    done = threading.Event()
    answer: list[str] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(username, password)

    def on_publish(c: mqtt.Client, u: Any, mid: int, rc: ReasonCode, p: Any) -> None:
        answer.append(_ack_kind(rc))
        done.set()

    client.on_publish = on_publish
    client.on_disconnect = lambda *args: done.set()
    client.connect("127.0.0.1", port, keepalive=10, clean_start=True)
    client.loop_start()
    try:
        client.publish(message.topic, message.payload, qos=1, properties=mqtt_properties(message))
        done.wait(10)
    finally:
        client.disconnect()
        client.loop_stop()
    return answer[0] if answer else "dropped"


def _accounted(metrics: dict[str, float], base: dict[str, float], legit_stored: int) -> dict[str, int]:
    """The server's outcomes since ``base``, the legitimate seal's stored events taken out."""

    def delta(name: str) -> int:
        return int(metrics.get(name, 0) - base.get(name, 0))

    rejected = rejected_by_reason(metrics)
    for reason, value in rejected_by_reason(base).items():
        rejected[reason] -= value
    return {
        "stored": delta("seal_events_ingested_total") - legit_stored,
        "duplicate": delta("seal_events_duplicate_total"),
        "status": delta("seal_status_updates_total"),
        "snapshot": delta("seal_snapshots_stored_total"),
        **{f"quarantined:{reason}": n for reason, n in sorted(rejected.items()) if n},
    }


def test_fuzz_through_the_broker_into_the_running_server(
    court: Court, make_seal: SealFactory, broker: PrivateBroker, scale: Scale, tmp_path: Path
) -> None:
    count = scale.pick(2_000, 100_000)
    seed = int(os.environ.get("SEAL_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
    log("fuzz: %d messages, seed %d (SEAL_FUZZ_SEED=%d reproduces them)", count, seed, seed)
    rng = random.Random(seed)

    legit = make_seal("seal-legit")
    fuzz = FuzzSeal("seal-fuzz", CASE_NO)
    password = os.urandom(9).hex()
    broker.add_user(fuzz.device_id, password)
    broker.reload()
    court.prepare({legit.device_id: legit.public_key, fuzz.device_id: fuzz.public_key})
    court.start()
    legit.start(trigger_every=0.25)
    wait_flowing(court, [legit])
    time.sleep(0.5)
    base, legit_base = _stable_read(court, legit.device_id)

    publisher = FuzzPublisher(broker.port, fuzz.device_id, password).start()
    labels: Counter[str] = Counter()
    origin: dict[bytes, str] = {}  # SHA-256 of a payload -> the label of its first publication
    unread: Counter[str] = Counter()
    genuine: dict[int, bytes] = {}
    timeline: list[tuple[float, int]] = []
    started = time.monotonic()

    def server_accounted() -> int:
        assert court.alive(), f"the server died during the fuzz:\n{court.log_tail()}"
        metrics, legit_count = _stable_read(court, legit.device_id)
        timeline.append((time.monotonic(), legit_count - legit_base))
        return sum(_accounted(metrics, base, legit_count - legit_base).values())

    try:
        for index, message in enumerate(generate(rng, fuzz, count)):
            labels[message.label] += 1
            origin.setdefault(hashlib.sha256(message.payload).digest(), message.label)
            if message.genuine_seq is not None:
                genuine[message.genuine_seq] = message.payload
            if message.label == "unread_topic":
                unread[publish_alone(broker.port, fuzz.device_id, password, message)] += 1
            else:
                publisher.publish(message)
            if index % 250 == 0:
                published = publisher.acks["accepted"] + len(publisher._pending)
                deadline = time.monotonic() + 60
                while server_accounted() < published - BACKLOG:
                    assert time.monotonic() < deadline, f"the server stalled at {server_accounted()} of {published}"
                    time.sleep(0.1)
        assert publisher.wait_acked(60), "the broker did not acknowledge every fuzz message"
        fuzz_s = time.monotonic() - started
        to_server = publisher.acks["accepted"] + unread["accepted"]
        empty_statuses = labels["status:empty"]  # documented: an empty status is the broker clearing it, ignored
        deadline = time.monotonic() + 120
        while (done := server_accounted()) < to_server - empty_statuses and time.monotonic() < deadline:
            time.sleep(0.2)
        drain_s = time.monotonic() - started - fuzz_s
        metrics, legit_count = _stable_read(court, legit.device_id)
        legit_stored = legit_count - legit_base
        outcomes = _accounted(metrics, base, legit_stored)
    finally:
        publisher.close()

    by_label = quarantined_by_label(court, origin)
    report = {
        "seed": seed,
        "generated": count,
        "published_to_server": to_server,
        "broker_answers": dict(publisher.acks),
        "unread_topics": dict(unread),
        "outcomes": outcomes,
        "ignored_empty_status": empty_statuses,
        "labels": dict(sorted(labels.items())),
        "quarantined_by_label": by_label,
        "legit_events_during_fuzz": legit_stored,
        "fuzz_s": round(fuzz_s, 1),
        "drain_s": round(drain_s, 1),
    }
    (tmp_path / "fuzz-report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    log("fuzz report:\n%s", json.dumps(report, indent=2, ensure_ascii=False))
    report_figures("fuzz", **report)
    wrongly = {label: reasons for label, reasons in by_label.items() if label in ("genuine", "redelivery")}
    assert not wrongly, f"genuine events were quarantined: {wrongly}"

    assert court.alive(), f"the server died:\n{court.log_tail()}"
    assert publisher.disconnects == 0, "the fuzz connection was dropped (its redeliveries would blur the counts)"
    gaps = [b[0] - a[0] for a, b in zip(timeline, timeline[1:], strict=False) if b[1] == a[1]]
    longest = _longest_flat(timeline)
    assert legit_stored > 0 and longest <= MAX_LEGIT_GAP_S, (
        f"the legitimate seal's events stopped for {longest:.1f} s during the fuzz ({len(gaps)} flat samples)"
    )
    assert done == sum(outcomes.values())
    assert sum(outcomes.values()) + empty_statuses == to_server, (
        f"{to_server} messages reached the server, {sum(outcomes.values())} accounted for (+{empty_statuses} "
        f"empty statuses): {outcomes}\n{court.log_tail()}"
    )
    _check_nothing_invalid_stored(court, {legit.device_id: legit.public_key, fuzz.device_id: fuzz.public_key})
    assert court.stored_raw(fuzz.device_id) == genuine, "the fuzzed seal's stored events are not its genuine ones"

    quarantine = {k.split(":", 1)[1]: v for k, v in outcomes.items() if k.startswith("quarantined:")}
    # Every generated message is wrong in a way the protocol names; internal_error means a check raised instead.
    internal = {label: reasons["internal_error"] for label, reasons in by_label.items() if "internal_error" in reasons}
    created = settle(court, [legit], SETTLE_S)
    check_delivery(court, created, {legit.device_id: legit.public_key}, quarantine=quarantine)
    health = court.health() or {}
    assert (health.get("status"), health.get("ingest"), health.get("ingest_unstored")) == ("ok", "ok", 0), health
    with court.session() as session:
        topics = Counter(t.split("/")[2] for t in session.scalars(select(QuarantinedMessage.topic)))
    assert set(topics) <= {fuzz.device_id}, f"quarantined messages of other seals: {topics}"
    assert not internal, f"messages quarantined as internal_error (the ingest raised outside its checks): {internal}"


def quarantined_by_label(court: Court, origin: dict[bytes, str]) -> dict[str, dict[str, int]]:
    """label -> reason -> count of the quarantined messages (a row counts its copies), each row traced back to its
    message by the SHA-256 of its bytes (``(cut)``: a row whose bytes were cut at the quarantine's limit)."""
    found: dict[str, Counter[str]] = {}
    with court.session() as session:
        rows = session.execute(
            select(
                QuarantinedMessage.reason, QuarantinedMessage.raw, QuarantinedMessage.size, QuarantinedMessage.copies
            )
        )
        for reason, raw, size, copies in rows:
            data = bytes(raw)
            label = origin.get(hashlib.sha256(data).digest(), "(unknown)") if len(data) == size else "(cut)"
            found.setdefault(label, Counter())[reason] += copies
    return {label: dict(reasons.most_common()) for label, reasons in sorted(found.items())}


def _stable_read(court: Court, device_id: str) -> tuple[dict[str, float], int]:
    """The server's metrics and the seal's stored event count at one moment: two reads 50 ms apart that agree
    (a metric is counted just after its commit, so a single read of both can fall between the two)."""
    previous: tuple[dict[str, float], int] | None = None
    for _ in range(200):
        metrics = court.metrics()
        assert metrics is not None, f"the server does not answer:\n{court.log_tail()}"
        current = (metrics, court.event_count(device_id))
        if current == previous:
            return current
        previous = current
        time.sleep(0.05)
    raise AssertionError("the server's metrics never held still for 50 ms")


def _longest_flat(timeline: list[tuple[float, int]]) -> float:
    """The longest stretch of the timeline in which the count did not grow."""
    longest, since = 0.0, timeline[0] if timeline else (0.0, 0)
    for moment in timeline[1:]:
        if moment[1] != since[1]:
            since = moment
        longest = max(longest, moment[0] - since[0])
    return longest


def _check_nothing_invalid_stored(court: Court, keys: dict[str, str]) -> None:
    verify = {device_id: verify_key_from_b64(key) for device_id, key in keys.items()}
    with court.session() as session:
        for device_id, seq, raw in session.execute(select(Event.device_id, Event.seq, Event.raw)):
            envelope = decode_envelope(bytes(raw))
            verify_envelope(envelope, verify[device_id])
            assert encode_envelope(envelope) == bytes(raw), f"{device_id} seq {seq}: stored bytes not canonical"
            assert (envelope.device_id, envelope.seq) == (device_id, seq)
