"""Generated hostile messages for the ingest: random, and mutated from a seal's valid signed messages.

:class:`FuzzSeal` is a registered seal whose key the test holds. :func:`generate` yields :class:`FuzzMessage`\\ s
from a seeded ``random.Random``: the seal's genuine events, in order (each may be preceded by a whitespace
re-encoding of itself carrying its valid signature: issue #7's forged first copy, and followed later by an
identical redelivery), interleaved with mutations of them (bit flips, truncation, wrong types, lone surrogates,
non-ASCII digits, impossible dates, deep nesting, huge numbers, duplicate keys, NULs, extra fields, another seal's
identity), half of them signed again with the seal's real key after the change; status messages valid and
broken; snapshots valid, mislabelled, not JPEG; and messages on topics the server does not read.

The generator never makes a second valid signed event under a ``seq`` it has not published genuinely first, so the
court must end with exactly the genuine events of this seal: anything else stored is a forgery that got through.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from seal_protocol import EventType, canonical_json, encode_envelope, envelope_hash, new_envelope
from seal_protocol.signing import SigningKey, generate_signing_key, public_key_b64, sign_bytes, sign_envelope
from seal_protocol.topics import TOPIC_ROOT

#: Topic kinds the server subscribes to; anything else is refused by the broker's ACL or routed to no one.
READ_KINDS = ("event", "status", "snapshot")


@dataclass(frozen=True, slots=True)
class FuzzMessage:
    topic: str
    payload: bytes
    #: What made it: ``genuine``, ``redelivery``, ``reencoded``, ``mutation:<name>[+signed]``, ``status:<name>``, …
    label: str
    #: For a genuine event: its seq (the court must store exactly these bytes under it).
    genuine_seq: int | None = None
    #: MQTT v5 PUBLISH properties (name -> value, as paho's ``Properties`` takes them) it is sent with, if any.
    properties: dict[str, Any] | None = None


@dataclass
class FuzzSeal:
    """A registered seal whose key the test holds; makes hash-chained, signed events like a real one."""

    device_id: str
    case_no: str
    key: SigningKey = field(default_factory=generate_signing_key)
    seq: int = 0
    prev_hash: str | None = None

    @property
    def public_key(self) -> str:
        return public_key_b64(self.key)

    def topic(self, kind: str, *rest: str) -> str:
        return "/".join([TOPIC_ROOT, self.device_id, kind, *rest])

    def next_event(self, rng: random.Random) -> bytes:
        self.seq += 1
        envelope = new_envelope(
            device_id=self.device_id,
            case_no=self.case_no,
            seq=self.seq,
            type=rng.choice([EventType.HEARTBEAT, EventType.INTRUSION, EventType.CAMERA_BLIND]),
            payload=_payload(rng),
            prev_hash=self.prev_hash,
        )
        data = encode_envelope(sign_envelope(envelope, self.key))
        self.prev_hash = envelope_hash(data)
        return data

    def resign(self, obj: dict[str, Any]) -> dict[str, Any]:
        """``obj`` with ``sig`` replaced by the seal's real signature over its canonical bytes without ``sig``."""
        body = {k: v for k, v in obj.items() if k != "sig"}
        try:
            signed = _canonical_lenient(body)
        except (TypeError, ValueError):
            return obj
        return {**obj, "sig": sign_bytes(self.key, signed)}


def _canonical_lenient(obj: Any) -> bytes:
    """The canonical encoding, with lone surrogates passed through (so such a body can still be signed)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8", "surrogatepass")


def _payload(rng: random.Random) -> dict[str, Any]:
    return {
        "outbox_depth": rng.randint(0, 50),
        "note": rng.choice(["", "仓库", "ok", "门口"]),
        "n": rng.randint(-(2**40), 2**40),
    }


# -- mutations of a decoded event ------------------------------------------------------------------------------

Obj = dict[str, Any]

_NON_ASCII_DIGITS = ["٠١٢٣٤٥٦٧٨٩", "０１２３４５６７８９", "०१२३४५६७८९", "𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗"]


def _non_ascii_ts(rng: random.Random, ts: str) -> str:
    digits = rng.choice(_NON_ASCII_DIGITS)
    chars = list(ts)
    positions = [i for i, c in enumerate(chars) if c.isdigit()]
    for i in rng.sample(positions, rng.randint(1, 3)):
        chars[i] = digits[int(chars[i])]
    return "".join(chars)


_IMPOSSIBLE_TS = [
    "2026-02-30T10:00:00.000Z", "2026-13-01T10:00:00.000Z", "2026-00-10T10:00:00.000Z", "2026-04-31T10:00:00.000Z",
    "2026-01-01T24:00:00.000Z", "2026-01-01T23:60:00.000Z", "2026-01-01T23:59:60.000Z", "0000-01-01T00:00:00.000Z",
    "2026-1-01T10:00:00.000Z", "2026-01-01T10:00:00.00Z", "2026-01-01T10:00:00.000+00:00", "2026-01-01 10:00:00.000Z",
    "2026-01-01T10:00:00.000z", "2026-01-01T10:00:00.000Z\n", " 2026-01-01T10:00:00.000Z", "",
]  # fmt: skip

_WRONG_SEQS: list[Any] = [True, False, "15", "1", 1.0, 15.5, 0, -1, 2**53, 2**63, 2**64 + 1, None, [1], {"n": 1}, 1e308]


def _set(name: str, values: Callable[[random.Random, Obj], Any]) -> Callable[[random.Random, Obj], Obj]:
    def mutate(rng: random.Random, obj: Obj) -> Obj:
        return {**obj, name: values(rng, obj)}

    mutate.__name__ = f"set_{name}"
    return mutate


def _drop_field(rng: random.Random, obj: Obj) -> Obj:
    name = rng.choice(sorted(obj))
    return {k: v for k, v in obj.items() if k != name}


def _extra_field(rng: random.Random, obj: Obj) -> Obj:
    return {**obj, rng.choice(["x", "extra", "Seq", "sig2", "\u0000", "v "]): rng.choice([1, "", None, [], {}])}


def _lone_surrogate(rng: random.Random, obj: Obj) -> Obj:
    field_name = rng.choice(["case_no", "payload", "type", "event_id", "device_id"])
    value = rng.choice(["\ud800", "\udfff", "a\udc00b", "\ud83d"])
    if field_name == "payload":
        return {**obj, "payload": {**obj["payload"], "note": value}}
    return {**obj, field_name: value}


def _nul(rng: random.Random, obj: Obj) -> Obj:
    field_name = rng.choice(["case_no", "payload", "type", "device_id"])
    if field_name == "payload":
        return {**obj, "payload": {**obj["payload"], "note": "a\u0000b"}}
    return {**obj, field_name: str(obj[field_name]) + "\u0000"}


def _other_device(rng: random.Random, obj: Obj) -> Obj:
    return {**obj, "device_id": rng.choice(["seal-legit", "seal-nobody", "Seal-Fuzz", "seal-fuzz\n", "a" * 65])}


def _payload_change(rng: random.Random, obj: Obj) -> Obj:
    return {**obj, "payload": {**obj["payload"], "outbox_depth": rng.randint(51, 10**6)}}


def _payload_type(rng: random.Random, obj: Obj) -> Obj:
    return {**obj, "payload": rng.choice([[], "x", 1, None, True, [obj["payload"]]])}


def _huge_number(rng: random.Random, obj: Obj) -> Obj:
    return {**obj, "payload": {**obj["payload"], "n": rng.choice([10**400, -(10**30), 1e308, 2**1000])}}


MUTATIONS: list[Callable[[random.Random, Obj], Obj]] = [
    _set("seq", lambda rng, obj: rng.choice(_WRONG_SEQS)),
    _set("v", lambda rng, obj: rng.choice([True, "1", 1.0, 2, 0, None])),
    _set("ts", lambda rng, obj: _non_ascii_ts(rng, obj["ts"])),
    _set("ts", lambda rng, obj: rng.choice(_IMPOSSIBLE_TS)),
    _set("event_id", lambda rng, obj: rng.choice([str(uuid.uuid4()).upper(), uuid.uuid4().hex, "x", 1, None])),
    _set(
        "prev_hash", lambda rng, obj: rng.choice([(obj["prev_hash"] or "ab" * 32).upper(), "0" * 64, "", 1, "g" * 64])
    ),
    _set("sig", lambda rng, obj: rng.choice([obj["sig"].upper(), obj["sig"][:-2], "", None, 0, obj["sig"] + "00"])),
    _set("type", lambda rng, obj: rng.choice(["Intrusion", "nope", "", 1, None, "heartbeat "])),
    _set("case_no", lambda rng, obj: rng.choice(["(2099)苏0214执9号", "", "x" * 65, 1, None])),
    _set("device_id", lambda rng, obj: rng.choice(["", 1, None])),
    _drop_field,
    _extra_field,
    _lone_surrogate,
    _nul,
    _other_device,
    _payload_change,
    _payload_type,
    _huge_number,
]

# -- re-encodings of the bytes ----------------------------------------------------------------------------------


def _reencode(rng: random.Random, obj: Obj) -> bytes:
    """The same object in other bytes: whitespace, key order, ASCII escapes, duplicate keys, number forms."""
    choice = rng.randrange(8)
    if choice == 0:
        return json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()  # spaces after , and :
    if choice == 1:
        return json.dumps(obj, sort_keys=True, indent=rng.choice([None, 0, 1, 2]), ensure_ascii=False).encode()
    if choice == 2:  # keys in another order
        shuffled = dict(sorted(obj.items(), key=lambda _item: rng.random()))
        return json.dumps(shuffled, separators=(",", ":"), ensure_ascii=False).encode()
    if choice == 3:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()  # \\u escapes
    if choice == 4:
        return b" " + canonical_json(obj) + rng.choice([b"\n", b" ", b"\r\n", b"\t"])
    if choice == 5:  # a duplicate key, the second one winning in Python's json
        text = canonical_json(obj).decode()
        return ('{"seq":' + str(obj["seq"] + 1) + "," + text[1:]).encode()
    if choice == 6:
        return canonical_json(obj).replace(b'"seq":', b'"seq": ', 1)
    text = canonical_json(obj).decode()
    return text.replace(f'"seq":{obj["seq"]}', f'"seq":{obj["seq"]}.0', 1).encode()


def _raw_mutation(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    choice = rng.randrange(7)
    if choice == 0:
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        return "bitflip", bytes(buf)
    if choice == 1:
        return "truncated", data[: rng.randrange(len(data))]
    if choice == 2:
        i = rng.randrange(len(data))
        return "nul_byte", data[:i] + b"\x00" + data[i:]
    if choice == 3:
        depth = rng.choice([50, 1000, 20_000, 100_000])
        nested = b"[" * depth + b"]" * depth
        return "deep_nesting", data.replace(b'"payload":{', b'"payload":{"deep":' + nested + b",", 1)
    if choice == 4:
        digits = rng.choice([400, 4301, 10_000, 60_000])
        return "huge_int", data.replace(b'"seq":', b'"seq":' + b"9" * digits, 1)
    if choice == 5:
        return "invalid_utf8", data.replace(b"\xe4", b"\xe4\xff", 1) if b"\xe4" in data else data + b"\xc3"
    # Lone high and low surrogates, a pair (valid JSON, never canonical: the canonical form writes the character),
    # an escaped NUL, an escaped ASCII letter.
    escape = rng.choice([b"\\ud800", b"\\udc80", b"\\udfff", b"x\\udbff", b"\\ud83d\\ude00", b"\\u0000", b"\\u0041"])
    return "literal_escape", data.replace(b'"note":"', b'"note":"' + escape, 1)


# -- other kinds ----------------------------------------------------------------------------------------------


def _status(rng: random.Random) -> tuple[str, bytes]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + "123Z"
    valid = {"agent_version": "0.1.0", "state": rng.choice(["online", "offline"]), "ts": now}
    choice = rng.randrange(10)
    if choice == 0:
        return "valid", canonical_json(valid)
    if choice == 1:
        return "reencoded", _reencode_status(rng, valid)
    if choice == 2:
        return "wrong_state", canonical_json({**valid, "state": rng.choice(["ONLINE", "", 1, None, "gone"])})
    if choice == 3:
        return "bad_ts", canonical_json({**valid, "ts": rng.choice([*_IMPOSSIBLE_TS, _non_ascii_ts(rng, now), 5])})
    if choice == 4:
        escape = rng.choice([b"\\udc80", b"\\ud800", b"a\\udfff", b"\\ud83d\\ude00"])
        return "lone_surrogate", canonical_json(valid).replace(b'"0.1.0"', b'"' + escape + b'"')
    if choice == 5:
        return "extra_field", canonical_json({**valid, "x": 1})
    if choice == 6:
        return "empty", b""
    if choice == 7:
        return "random_bytes", rng.randbytes(rng.randint(1, 300))
    if choice == 8:
        return "huge", canonical_json({**valid, "agent_version": "v" * rng.choice([65, 5000, 70_000])})
    return "not_object", rng.choice([b"[]", b"null", b"1", b'"online"', b"{}", b"{", b"\xff"])


def _reencode_status(rng: random.Random, obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=rng.random() < 0.5, indent=rng.choice([None, 1])).encode()


def jpeg_bytes(rng: random.Random) -> bytes:
    """A small, valid, unique JPEG."""
    import cv2
    import numpy as np

    image = np.frombuffer(rng.randbytes(24 * 32 * 3), np.uint8).reshape(24, 32, 3)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return bytes(encoded.tobytes())


def _snapshot(rng: random.Random, seal: FuzzSeal, sent: list[bytes]) -> tuple[str, str, bytes]:
    """(label, topic, payload)."""
    choice = rng.randrange(8)
    jpeg = jpeg_bytes(rng)
    sha = hashlib.sha256(jpeg).hexdigest()
    if choice == 0:
        sent.append(jpeg)
        return "valid", seal.topic("snapshot", sha), jpeg
    if choice == 1 and sent:
        old = rng.choice(sent)
        return "again", seal.topic("snapshot", hashlib.sha256(old).hexdigest()), old
    if choice == 2:
        return "wrong_hash", seal.topic("snapshot", hashlib.sha256(jpeg + b"x").hexdigest()), jpeg
    if choice == 3:
        data = rng.choice([b"GIF89a" + rng.randbytes(50), b"\x89PNG\r\n" + rng.randbytes(50), b"", rng.randbytes(99)])
        return "not_jpeg", seal.topic("snapshot", hashlib.sha256(data).hexdigest()), data
    if choice == 4:
        data = jpeg[: rng.randrange(2, len(jpeg) - 1)]
        return "truncated_jpeg", seal.topic("snapshot", hashlib.sha256(data).hexdigest()), data
    if choice == 5:
        level = rng.choice([sha.upper(), sha[:-1], sha + "0", "x", "", "é" * 64])
        return "bad_topic", seal.topic("snapshot", level), jpeg
    if choice == 6:
        data = b"\xff\xd8\xff" + rng.randbytes(rng.randint(10, 200)) + b"\xff\xd9"
        return "jpeg_markers_only", seal.topic("snapshot", hashlib.sha256(data).hexdigest()), data
    data = jpeg + b"\x00" * rng.choice([1, 100])
    return "trailing_bytes", seal.topic("snapshot", hashlib.sha256(data).hexdigest()), data


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 2**53, 10**20, rng.randint(-(10**9), 10**9)])
    if kind == 2:
        return rng.random() * 10 ** rng.randint(-5, 300)
    if kind in (3, 4):
        return "".join(chr(rng.choice([rng.randint(32, 126), rng.randint(0x4E00, 0x9FFF), 0])) for _ in range(5))
    if kind == 5:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["v", "seq", "ts", "sig", "type", "payload", "device_id", "case_no", "event_id", "prev_hash", "x"]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 11))}


def unread_topic(rng: random.Random, seal: FuzzSeal) -> str:
    """A topic of a kind the server does not read (the broker's ACL refuses it to a seal, or routes it nowhere)."""
    return rng.choice(
        [
            seal.topic("receipt"),
            seal.topic("cmd"),
            seal.topic("foo"),
            seal.topic("event", "extra"),
            seal.topic("EVENT"),
            seal.topic("status", "x"),
            seal.topic("snapshot"),
            seal.topic("snapshot", "0" * 64 + "\n"),  # a control character: a malformed packet to Mosquitto
            f"{TOPIC_ROOT}/seal-legit/event",
            f"seal/v2/{seal.device_id}/event",
        ]
    )


# -- the stream -------------------------------------------------------------------------------------------------


#: Strings for the properties: paho's own parser refused U+FEFF (MQTT 5 says to keep it) and dropped the connection.
_PROPERTY_TEXT = ("\ufeff", "x\ufeff", "\u202e法院", "a" * 2000, "é", "\U0001f512")


def _properties(rng: random.Random) -> dict[str, Any]:
    """Properties a seal's account may send and the broker forwards: user properties, a content type, a response
    topic, correlation data (no expiry: the broker would drop the message, and the accounting with it)."""
    chosen: dict[str, Any] = {}
    if rng.random() < 0.6:
        chosen["UserProperty"] = [
            (rng.choice(_PROPERTY_TEXT), rng.choice(_PROPERTY_TEXT)) for _ in range(rng.randint(1, 3))
        ]
    if rng.random() < 0.4:
        chosen["ContentType"] = rng.choice(_PROPERTY_TEXT)
    if rng.random() < 0.3:
        chosen["ResponseTopic"] = "reply/" + rng.choice(_PROPERTY_TEXT)[:50]
    if rng.random() < 0.3 or not chosen:
        chosen["CorrelationData"] = rng.randbytes(rng.randint(0, 64))
    return chosen


def generate(
    rng: random.Random, seal: FuzzSeal, count: int, *, unread_share: float = 0.003, properties_share: float = 0.05
) -> Iterator[FuzzMessage]:
    """``count`` messages: ~12 % genuine events, the rest hostile, on every topic kind; ``properties_share`` of them
    (genuine ones too) sent with MQTT v5 properties the court must not be upset by."""
    for message in _generate(rng, seal, count, unread_share=unread_share):
        if rng.random() < properties_share:
            message = replace(message, properties=_properties(rng))
        yield message


def _generate(rng: random.Random, seal: FuzzSeal, count: int, *, unread_share: float) -> Iterator[FuzzMessage]:
    genuine: list[bytes] = []
    jpegs: list[bytes] = []
    produced = 0
    while produced < count:
        roll = rng.random()
        if roll < unread_share:
            yield FuzzMessage(unread_topic(rng, seal), rng.choice([b"{}", rng.randbytes(20)]), "unread_topic")
        elif roll < 0.12 or not genuine:
            data = seal.next_event(rng)
            obj = json.loads(data)
            if rng.random() < 0.3:  # the forged first copy: the seal's own signature, other bytes
                produced += 1
                yield FuzzMessage(seal.topic("event"), _reencode(rng, obj), "reencoded")
            genuine.append(data)
            yield FuzzMessage(seal.topic("event"), data, "genuine", genuine_seq=obj["seq"])
        elif roll < 0.14:
            yield FuzzMessage(seal.topic("event"), rng.choice(genuine), "redelivery")
        elif roll < 0.55:
            obj = json.loads(rng.choice(genuine))
            mutate = rng.choice(MUTATIONS)
            changed = mutate(rng, obj)
            signed = rng.random() < 0.5
            if signed:
                changed = seal.resign(changed)
            label = f"mutation:{mutate.__name__.lstrip('_')}{'+signed' if signed else ''}"
            yield FuzzMessage(seal.topic("event"), _canonical_lenient(changed), label)
        elif roll < 0.68:
            name, data = _raw_mutation(rng, rng.choice(genuine))
            yield FuzzMessage(seal.topic("event"), data, f"raw:{name}")
        elif roll < 0.72:
            obj = json.loads(rng.choice(genuine))
            yield FuzzMessage(seal.topic("event"), _reencode(rng, obj), "reencoded_late")
        elif roll < 0.80:
            data = rng.choice([rng.randbytes(rng.randint(0, 400)), canonical_json(_random_json(rng))])
            if rng.random() < 0.02:
                data = rng.randbytes(rng.choice([65 * 1024, 300 * 1024]))
            yield FuzzMessage(seal.topic("event"), data, "random")
        elif roll < 0.84:
            obj = json.loads(rng.choice(genuine))
            stale = (datetime.now(UTC) - timedelta(days=rng.randint(1, 4000))).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            changed = seal.resign({**obj, "ts": stale, "event_id": str(uuid.uuid4())})
            yield FuzzMessage(seal.topic("event"), canonical_json(changed), "replayed_seq+signed")
        elif roll < 0.92:
            name, data = _status(rng)
            yield FuzzMessage(seal.topic("status"), data, f"status:{name}")
        else:
            name, topic, data = _snapshot(rng, seal, jpegs)
            yield FuzzMessage(topic, data, f"snapshot:{name}")
        produced += 1
