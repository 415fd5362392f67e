"""The load of ``bench/ingest.py``: simulated seals, each its own MQTT client with its own account and key.

A :class:`BenchSeal` holds its signed heartbeats, made before the clock starts (a real seal signs as it goes; here
signing would only take CPU from what is measured): canonical envelopes of about 577 bytes, chained by
``prev_hash`` from seq 1, signed with the seal's own Ed25519 key. A :class:`Fleet` connects every seal (MQTT v5,
its device id as username and client id, so the generated ACL lets it write only its own topics), publishes at
QoS 1 either as fast as paho takes them or at a given total rate, and notes per message when it was published and
when the court's receipt naming its hash came back (on the seal's own receipt topic).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from seal_protocol import EventType, encode_envelope, event_topic, new_envelope
from seal_protocol.envelope import envelope_hash, parse_ts, utc_now_ms
from seal_protocol.signing import SigningKey, generate_signing_key, sign_bytes, sign_envelope
from seal_protocol.topics import receipt_topic
from seal_protocol.wirejson import canonical_json
from server.core.mqtt import send_at_once


def heartbeat_payload(seq: int) -> dict[str, Any]:
    """What a seal's heartbeat says (``seal_agent.behaviour.seal.Seal.heartbeat``), with plausible values."""
    return {
        "agent_version": "0.9.0",
        "armed": True,
        "camera": "ok",
        "disk_free_bytes": 12_884_901_888 - 4096 * seq,
        "outbox_depth": 0,
        "pir_state": "idle",
        "snapshots_pending": 0,
        "speaker": "ok",
        "tamper": "closed",
        "uptime_s": 60 * seq,
    }


@dataclass
class BenchSeal:
    device_id: str
    case_no: str
    key: SigningKey = field(default_factory=generate_signing_key)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    messages: list[bytes] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)

    @property
    def public_key(self) -> str:
        return base64.b64encode(bytes(self.key.verify_key)).decode("ascii")

    def make_events(self, count: int) -> None:
        """``count`` more signed heartbeats, continuing the chain."""
        for _ in range(count):
            seq = len(self.messages) + 1
            envelope = new_envelope(
                device_id=self.device_id,
                case_no=self.case_no,
                seq=seq,
                type=EventType.HEARTBEAT,
                payload=heartbeat_payload(seq),
                prev_hash=self.hashes[-1] if self.hashes else None,
            )
            raw = encode_envelope(sign_envelope(envelope, self.key))
            self.messages.append(raw)
            self.hashes.append(hashlib.sha256(raw).hexdigest())


class Fleet:
    """Every bench seal connected to the broker; :meth:`publish` a range of each seal's events."""

    def __init__(self, seals: list[BenchSeal], port: int, *, wave: int = 0) -> None:
        """``wave``: connect that many seals at a time, each wave once the last is in (0: all at once)."""
        self.seals = seals
        self.published: dict[str, float] = {}  # sha256 -> time.time() of publish()
        self.receipted: dict[str, float] = {}  # sha256 -> time.time() the receipt came
        self._lock = threading.Lock()
        self._receipt_seen = threading.Condition(self._lock)
        self._clients: list[mqtt.Client] = []
        self._connected = threading.Semaphore(0)
        for seal in seals:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=seal.device_id, protocol=mqtt.MQTTv5)
            client.username_pw_set(seal.device_id, seal.password)
            client.on_socket_open = send_at_once  # TCP_NODELAY, as the court's and the seals' clients
            client.max_queued_messages_set(0)
            client.max_inflight_messages_set(100)
            client.on_connect = self._on_connect
            client.on_message = self._on_receipt
            client.user_data_set(seal)
            client.connect_async("127.0.0.1", port)
            client.loop_start()
            self._clients.append(client)
            if wave and len(self._clients) % wave == 0:
                self._wait(wave, 600)
        self._pending = len(self._clients) % wave if wave else len(self._clients)

    def wait_connected(self, timeout: float) -> None:
        self._wait(self._pending, timeout)
        self._pending = 0

    def _wait(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for _ in range(count):
            if not self._connected.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise TimeoutError("not every bench seal connected")

    def _on_connect(self, client: mqtt.Client, seal: BenchSeal, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            raise RuntimeError(f"{seal.device_id}: connection refused: {rc}")
        client.subscribe(receipt_topic(seal.device_id), qos=1)
        self._connected.release()

    def _on_receipt(self, client: mqtt.Client, seal: BenchSeal, message: mqtt.MQTTMessage) -> None:
        now = time.time()
        hashes = json.loads(message.payload)["committed"]
        with self._lock:
            for h in hashes:
                self.receipted.setdefault(h, now)
            self._receipt_seen.notify_all()

    def publish(self, first: int, last: int, *, rate: float = 0.0) -> tuple[float, float]:
        """Publish each seal's events ``first``..``last`` (1-based seqs), round-robin over the seals, as fast as
        paho takes them (``rate`` 0) or ``rate`` per second in all; return the wall-clock start and end."""
        pairs = list(zip(self._clients, self.seals, strict=True))
        order = [(client, seal, i) for i in range(first - 1, last) for client, seal in pairs]
        start = time.time()
        for n, (client, seal, i) in enumerate(order):
            if rate:
                wait = start + n / rate - time.time()
                if wait > 0:
                    time.sleep(wait)
            with self._lock:
                self.published[seal.hashes[i]] = time.time()
            client.publish(event_topic(seal.device_id), seal.messages[i], qos=1)
        return start, time.time()

    def wait_receipts(self, hashes: set[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not hashes <= self.receipted.keys():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._receipt_seen.wait(min(left, 1.0))
        return True

    def close(self) -> None:
        for client in self._clients:
            client.disconnect()
        for client in self._clients:
            client.loop_stop()


def signed_heartbeat(seal: BenchSeal, seq: int, *, prev_hash: str | None, ts: str) -> tuple[dict[str, Any], bytes]:
    """The seal's heartbeat ``seq`` signed with its key, and its wire bytes: what :meth:`BenchSeal.make_events` makes
    through the :class:`~seal_protocol.envelope.Envelope` model, built here as the same canonical JSON without it (a
    tenth of the time: a prefill signs a million)."""
    body = {
        "v": 1,
        "event_id": str(uuid.uuid4()),
        "device_id": seal.device_id,
        "case_no": seal.case_no,
        "seq": seq,
        "ts": ts,
        "type": EventType.HEARTBEAT.value,
        "payload": heartbeat_payload(seq),
        "prev_hash": prev_hash,
    }
    body["sig"] = sign_bytes(seal.key, canonical_json(body))
    return body, canonical_json(body)


def prefill(session_factory: Any, case_no: str, count: int, *, seals: int = 100, chunk: int = 5000) -> None:
    """``count`` stored events of ``seals`` other seals, inserted as the ingest inserts them (the events table, then
    the Merkle log's leaves and nodes), so that the run meets tables of that size. Each is a real heartbeat of its
    seal: a canonical envelope signed with the seal's registered key and chained by ``prev_hash`` (the seals' rows
    are not updated as the ingest would: when they were last heard from, and so on), so that what reads them — the
    events API, the pages, an export — sees what it sees in a court. About 0.1 ms an event (signing); the ingest's
    checks are not run."""
    from datetime import UTC, datetime

    from server.core.db import session_scope
    from server.evidence.log import append_events
    from server.ingest.rows import Leaf, insert_events
    from server.seals.registry import register_seal

    fillers = [BenchSeal(f"seal-fill-{n:04d}", case_no) for n in range(seals)]
    with session_scope(session_factory) as session:
        for seal in fillers:
            register_seal(session, actor=None, device_id=seal.device_id, case_no=case_no, public_key=seal.public_key)
    now = datetime.now(UTC)
    ts = utc_now_ms(now)
    last: dict[str, str] = {}  # device_id -> the hash of its last envelope
    for start in range(0, count, chunk):
        rows: list[dict[str, object]] = []
        raws: list[bytes] = []
        for n in range(start, min(count, start + chunk)):
            seal, seq = fillers[n % seals], n // seals + 1
            envelope, raw = signed_heartbeat(seal, seq, prev_hash=last.get(seal.device_id), ts=ts)
            last[seal.device_id] = envelope_hash(raw)
            raws.append(raw)
            rows.append(
                {
                    "device_id": seal.device_id,
                    "case_no": case_no,
                    "seq": seq,
                    "event_id": envelope["event_id"],
                    "type": envelope["type"],
                    "ts": parse_ts(ts),
                    "received_at": now,
                    "prev_hash": envelope["prev_hash"],
                    "sig": envelope["sig"],
                    "payload": envelope["payload"],
                    "raw": raw,
                }
            )
        with session_scope(session_factory) as session:
            ids = insert_events(session, rows)
            append_events(session, [Leaf(i, raw) for i, raw in zip(ids, raws, strict=True)])


@contextmanager
def fresh_database(url: str | None) -> Iterator[str | None]:
    """None (the court's own SQLite file), or a new schema on the PostgreSQL of ``url``, dropped afterwards."""
    if url is None:
        yield None
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
