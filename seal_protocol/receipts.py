"""Court → seal receipts: the court's signed word that it committed the exact bytes of some of a seal's messages.

A seal keeps every event (and every queued snapshot) until a receipt names it; the broker's PUBACK only says that
the broker took the message. A receipt names messages by the SHA-256 of their bytes (for an event that is its
``envelope_hash``, for a snapshot the hash in its topic), so it can only ever make a seal delete bytes the court
holds, whoever provoked it; replaying an old receipt deletes nothing that is not already safe.

Wire form, canonical JSON (``seal_protocol.canonical_json``), every key always present::

    {"committed": ["<sha256 hex>", ...], "device_id": "<seal>", "sig": "<hex>", "ts": "<envelope ts>", "v": 1}

``sig`` is the court's Ed25519 signature (its command key, which every seal pins) over the canonical bytes of the
object without ``sig``. :func:`check_receipt` is strict: exact keys, exact JSON types, the bytes must be the
canonical encoding, 1 to :data:`MAX_RECEIPT_HASHES` distinct lowercase hashes, and the device id must be the
receiving seal's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from seal_protocol.envelope import canonical_json, parse_ts, utc_now_ms
from seal_protocol.errors import ProtocolError, SignatureError
from seal_protocol.signing import SigningKey, VerifyKey, sign_bytes, verify_bytes
from seal_protocol.topics import validate_device_id

RECEIPT_VERSION = 1
#: At most this many hashes in one receipt; the court splits a larger batch into several receipts.
MAX_RECEIPT_HASHES = 1000
#: Upper bound of an encoded receipt (1000 hashes take about 67 KB).
MAX_RECEIPT_BYTES = 80 * 1024

_KEYS = frozenset({"v", "device_id", "ts", "committed", "sig"})
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SIG = re.compile(r"[0-9a-f]{128}")
_TS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")


class RefusalReason(StrEnum):
    """Why a seal refused a receipt (it is logged; a refused receipt changes nothing)."""

    MALFORMED = "malformed"
    NON_CANONICAL = "non_canonical"
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    WRONG_DEVICE = "wrong_device"


class ReceiptRefused(ProtocolError, ValueError):
    """Bytes that are not a valid receipt for this seal; ``reason`` says which check failed."""

    def __init__(self, reason: RefusalReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Receipt:
    """A verified receipt: the court committed the messages whose SHA-256 (hex) is in ``committed``."""

    device_id: str
    ts: str
    committed: frozenset[str]


def encode_receipt(device_id: str, committed: Sequence[str], key: SigningKey, *, now: datetime | None = None) -> bytes:
    """The signed wire bytes of a receipt for ``committed`` (1 to :data:`MAX_RECEIPT_HASHES` distinct hashes)."""
    validate_device_id(device_id)
    hashes = list(committed)
    if not 1 <= len(hashes) <= MAX_RECEIPT_HASHES:
        raise ValueError(f"a receipt names 1 to {MAX_RECEIPT_HASHES} hashes, not {len(hashes)}")
    if len(set(hashes)) != len(hashes) or not all(type(h) is str and _SHA256.fullmatch(h) for h in hashes):
        raise ValueError("receipt hashes must be distinct lowercase SHA-256 hex strings")
    body: dict[str, Any] = {"v": RECEIPT_VERSION, "device_id": device_id, "ts": utc_now_ms(now), "committed": hashes}
    return canonical_json({**body, "sig": sign_bytes(key, canonical_json(body))})


def check_receipt(data: bytes, *, device_id: str, court_key: VerifyKey) -> Receipt:
    """Parse and verify a received receipt; raise :class:`ReceiptRefused` with the reason, else return it.

    Checked in this order: ``malformed`` (size, UTF-8, JSON, keys, types, values), ``unsigned`` (``sig`` missing
    or null), ``non_canonical``, ``bad_signature``, ``wrong_device``.
    """
    obj = _parse(data)
    if obj.get("sig") is None:
        raise ReceiptRefused(RefusalReason.UNSIGNED, "the receipt carries no signature")
    if canonical_json(obj) != data:
        raise ReceiptRefused(RefusalReason.NON_CANONICAL, "the bytes are not the canonical encoding")
    body = {name: value for name, value in obj.items() if name != "sig"}
    try:
        verify_bytes(court_key, canonical_json(body), obj["sig"])
    except SignatureError:
        raise ReceiptRefused(RefusalReason.BAD_SIGNATURE, "not signed by the pinned court key") from None
    if obj["device_id"] != device_id:
        raise ReceiptRefused(RefusalReason.WRONG_DEVICE, f"addressed to {obj['device_id']!r}")
    return Receipt(obj["device_id"], obj["ts"], frozenset(obj["committed"]))


def _parse(data: bytes) -> dict[str, Any]:
    """The receipt's JSON object with every field checked (``sig`` may be missing or null); else ``malformed``."""

    def malformed(detail: str) -> ReceiptRefused:
        return ReceiptRefused(RefusalReason.MALFORMED, detail)

    if type(data) is not bytes or len(data) > MAX_RECEIPT_BYTES:
        raise malformed(f"not bytes, or more than {MAX_RECEIPT_BYTES} bytes")
    try:
        obj = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise malformed(f"invalid UTF-8 at byte {exc.start}") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, NaN/Infinity, an integer with too many digits
        raise malformed(f"invalid JSON: {exc}") from None
    if type(obj) is not dict:
        raise malformed("not a JSON object")
    keys = set(obj)
    if keys - {"sig"} != _KEYS - {"sig"} or not keys <= _KEYS:
        raise malformed(f"keys must be exactly {sorted(_KEYS)}, got {sorted(keys)}")
    if type(obj["v"]) is not int or obj["v"] != RECEIPT_VERSION:
        raise malformed(f"v must be the integer {RECEIPT_VERSION}")
    device = obj["device_id"]
    if type(device) is not str:
        raise malformed("device_id must be a string")
    try:
        validate_device_id(device)
    except ValueError:
        raise malformed(f"invalid device_id {device!r}") from None
    ts = obj["ts"]
    if type(ts) is not str or not _TS.fullmatch(ts):
        raise malformed("ts must be YYYY-MM-DDTHH:MM:SS.mmmZ in ASCII digits")
    try:
        parse_ts(ts)
    except ValueError:
        raise malformed(f"ts {ts!r} is not a real moment") from None
    committed = obj["committed"]
    if type(committed) is not list or not 1 <= len(committed) <= MAX_RECEIPT_HASHES:
        raise malformed(f"committed must be a list of 1 to {MAX_RECEIPT_HASHES} hashes")
    if not all(type(h) is str and _SHA256.fullmatch(h) for h in committed):
        raise malformed("committed must hold lowercase SHA-256 hex strings")
    if len(set(committed)) != len(committed):
        raise malformed("committed names a hash twice")
    sig = obj.get("sig")
    if sig is not None and (type(sig) is not str or not _SIG.fullmatch(sig)):
        raise malformed("sig must be 128 lowercase hex digits")
    return obj


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")
