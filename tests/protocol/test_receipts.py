"""Receipts: the court's signed list of the hashes it committed; every refusal a seal makes."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from seal_protocol import canonical_json
from seal_protocol.receipts import (
    MAX_RECEIPT_HASHES,
    ReceiptRefused,
    RefusalReason,
    check_receipt,
    encode_receipt,
)
from seal_protocol.signing import generate_signing_key, sign_bytes
from seal_protocol.topics import MessageKind, parse_topic, receipt_topic, topic_filter

COURT = generate_signing_key()
NOW = datetime(2026, 11, 26, 8, 0, 1, 234000, tzinfo=UTC)
H1 = hashlib.sha256(b"one").hexdigest()
H2 = hashlib.sha256(b"two").hexdigest()


def check(data: bytes, device: str = "seal-a"):
    return check_receipt(data, device_id=device, court_key=COURT.verify_key)


def resigned(mutate: Any) -> bytes:
    """A receipt whose body ``mutate(body)`` changed, signed again by the court: only the change is wrong."""
    body = json.loads(encode_receipt("seal-a", [H1], COURT, now=NOW))
    del body["sig"]
    mutate(body)
    return json.dumps({**body, "sig": sign_bytes(COURT, canonical_json(body))}, sort_keys=True, separators=(",", ":"))


def refusal(data: bytes | str, device: str = "seal-a") -> RefusalReason:
    with pytest.raises(ReceiptRefused) as info:
        check(data.encode() if isinstance(data, str) else data, device)
    return info.value.reason


def test_round_trip_is_canonical_and_names_the_hashes() -> None:
    data = encode_receipt("seal-a", [H2, H1], COURT, now=NOW)
    assert data == canonical_json(json.loads(data))
    assert json.loads(data)["ts"] == "2026-11-26T08:00:01.234Z"
    receipt = check(data)
    assert receipt.device_id == "seal-a" and receipt.committed == {H1, H2} and receipt.ts == "2026-11-26T08:00:01.234Z"


def test_receipt_topic_is_its_own_kind() -> None:
    assert receipt_topic("seal-a") == "seal/v1/seal-a/receipt"
    assert parse_topic("seal/v1/seal-a/receipt").kind is MessageKind.RECEIPT
    assert topic_filter(MessageKind.RECEIPT, "%u") == "seal/v1/%u/receipt"


def test_encoder_refuses_what_the_checker_would() -> None:
    with pytest.raises(ValueError):
        encode_receipt("seal-a", [], COURT)
    with pytest.raises(ValueError):
        encode_receipt("seal-a", [H1, H1], COURT)
    with pytest.raises(ValueError):
        encode_receipt("seal-a", [H1.upper()], COURT)
    with pytest.raises(ValueError):
        encode_receipt("Seal A", [H1], COURT)
    with pytest.raises(ValueError):
        encode_receipt("seal-a", [H1] * (MAX_RECEIPT_HASHES + 1), COURT)


def test_a_receipt_of_the_largest_size_passes() -> None:
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(MAX_RECEIPT_HASHES)]
    assert len(check(encode_receipt("seal-a", hashes, COURT)).committed) == MAX_RECEIPT_HASHES


def test_wrong_key_and_wrong_device() -> None:
    assert refusal(encode_receipt("seal-a", [H1], generate_signing_key())) is RefusalReason.BAD_SIGNATURE
    assert refusal(encode_receipt("seal-a", [H1], COURT), device="seal-b") is RefusalReason.WRONG_DEVICE


def test_a_changed_hash_breaks_the_signature() -> None:
    data = encode_receipt("seal-a", [H1], COURT)
    assert refusal(data.replace(H1.encode(), H2.encode())) is RefusalReason.BAD_SIGNATURE


def test_unsigned() -> None:
    body = json.loads(encode_receipt("seal-a", [H1], COURT))
    del body["sig"]
    assert refusal(canonical_json(body)) is RefusalReason.UNSIGNED
    assert refusal(canonical_json({**body, "sig": None})) is RefusalReason.UNSIGNED


def test_non_canonical_bytes_are_refused_even_with_a_valid_signature() -> None:
    data = encode_receipt("seal-a", [H1], COURT)
    assert refusal(json.dumps(json.loads(data), indent=1)) is RefusalReason.NON_CANONICAL
    assert refusal(json.dumps(json.loads(data)).encode()) is RefusalReason.NON_CANONICAL  # ", " and ": "


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda b: b.update(v=True), id="v-true"),
        pytest.param(lambda b: b.update(v=1.0), id="v-float"),
        pytest.param(lambda b: b.update(v=2), id="v-2"),
        pytest.param(lambda b: b.update(v="1"), id="v-str"),
        pytest.param(lambda b: b.update(device_id=7), id="device-int"),
        pytest.param(lambda b: b.update(device_id="Seal-A"), id="device-invalid"),
        pytest.param(lambda b: b.update(ts="2026-02-30T08:00:00.000Z"), id="ts-impossible"),
        pytest.param(lambda b: b.update(ts="2026-11-26T08:00:00Z"), id="ts-no-ms"),
        pytest.param(lambda b: b.update(ts="２026-11-26T08:00:00.000Z"), id="ts-fullwidth-digit"),
        pytest.param(lambda b: b.update(ts=None), id="ts-null"),
        pytest.param(lambda b: b.update(committed=[]), id="committed-empty"),
        pytest.param(lambda b: b.update(committed=H1), id="committed-str"),
        pytest.param(lambda b: b.update(committed={"h": H1}), id="committed-object"),
        pytest.param(lambda b: b.update(committed=[H1.upper()]), id="hash-uppercase"),
        pytest.param(lambda b: b.update(committed=[H1[:-1]]), id="hash-short"),
        pytest.param(lambda b: b.update(committed=[H1 + "\n"]), id="hash-newline"),
        pytest.param(lambda b: b.update(committed=[1]), id="hash-int"),
        pytest.param(lambda b: b.update(committed=[H1, H1]), id="hash-twice"),
        pytest.param(lambda b: b.update(committed=[H1] * (MAX_RECEIPT_HASHES + 1)), id="too-many"),
        pytest.param(lambda b: b.update(extra=1), id="extra-key"),
        pytest.param(lambda b: b.pop("ts"), id="missing-key"),
    ],
)
def test_malformed_bodies_are_refused_even_when_signed(mutate: Any) -> None:
    assert refusal(resigned(mutate)) is RefusalReason.MALFORMED


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[1]", id="array"),
        pytest.param(b"null", id="null"),
        pytest.param(b'{"v":NaN}', id="nan"),
        pytest.param(b"[" * 50_000 + b"]" * 50_000, id="deep"),
        pytest.param(b'{"v":' + b"9" * 5000 + b"}", id="huge-int"),
        pytest.param(b'{"v":1,"sig":"' + b"a" * 90_000 + b'"}', id="oversized"),
        pytest.param(b'{"v":1,"v":1}', id="duplicate-key"),
    ],
)
def test_bytes_that_are_no_receipt(data: bytes) -> None:
    assert refusal(data) is RefusalReason.MALFORMED


def test_a_malformed_sig_is_malformed() -> None:
    data = encode_receipt("seal-a", [H1], COURT)
    sig = json.loads(data)["sig"]
    assert refusal(data.replace(sig.encode(), sig.upper().encode())) is RefusalReason.MALFORMED
