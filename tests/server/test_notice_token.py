"""The notice token: a round trip, and every way a token can fail to verify, each with its reason."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seal_protocol.signing import SigningKey, generate_signing_key
from server.notices.facts import NoticeFacts, end_of_court_day
from server.notices.keys import key_id
from server.notices.token import (
    CONTEXT,
    NoticeClaims,
    Refusal,
    b64url,
    b64url_decode,
    canonical_json,
    sign_token,
    verify_token,
)

NOW = datetime(2026, 12, 4, 6, 30, tzinfo=UTC)
KEY = generate_signing_key()
FACTS = NoticeFacts(
    court="无锡市滨湖区人民法院",
    court_phone="0510-85000000",
    case_no="(2021)苏0214执1234号",
    judge="张法官",
    judge_phone="0510-85001234",
    sealed_on="2026-12-04",
    property="房屋一套",
    address="无锡市滨湖区某路1号",
    seizure_expires_on="2029-12-03",
    device_id="seal-0001",
)


def claims(key: SigningKey = KEY, **changes: object) -> NoticeClaims:
    values: dict[str, object] = {
        "notice_id": 7,
        "device_id": "seal-0001",
        "case_no": FACTS.case_no,
        "issued_at": NOW,
        "expires_at": NOW + timedelta(days=30),
        "facts_sha256": FACTS.sha256(),
        "key_id": key_id(key.verify_key),
    }
    values.update(changes)
    return NoticeClaims(**values)  # type: ignore[arg-type]


def test_a_token_round_trips() -> None:
    token = sign_token(claims(), KEY)
    check = verify_token(token, [KEY.verify_key], now=NOW)
    assert check.valid and check.refusal is None
    assert check.claims == claims()
    assert token == sign_token(claims(), KEY), "the same notice gives the same token"
    assert len(token) < 350 and set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def test_the_payload_is_canonical_json_and_the_signature_covers_the_context_and_payload() -> None:
    payload, signature = (b64url_decode(part) for part in sign_token(claims(), KEY).split("."))
    members = json.loads(payload)
    assert payload == canonical_json(members)
    assert members == {
        "v": 1,
        "k": key_id(KEY.verify_key),
        "n": 7,
        "d": "seal-0001",
        "c": "(2021)苏0214执1234号",
        "i": int(NOW.timestamp()),
        "x": int((NOW + timedelta(days=30)).timestamp()),
        "h": b64url(hashlib.sha256(FACTS.canonical()).digest()),
    }
    KEY.verify_key.verify(CONTEXT + payload, signature)  # what a third party does (docs/notice.md)


def test_an_expired_token_keeps_its_claims() -> None:
    token = sign_token(claims(), KEY)
    check = verify_token(token, [KEY.verify_key], now=NOW + timedelta(days=30))
    assert check.refusal is Refusal.EXPIRED
    assert check.claims == claims()


def test_a_token_of_another_key_is_foreign() -> None:
    other = generate_signing_key()
    check = verify_token(sign_token(claims(other), other), [KEY.verify_key], now=NOW)
    assert check.refusal is Refusal.FOREIGN_KEY and check.claims is None


def test_a_token_signed_by_another_key_under_our_key_id_is_tampered() -> None:
    other = generate_signing_key()
    payload = canonical_json(
        {
            "v": 1,
            "k": key_id(KEY.verify_key),
            "n": 7,
            "d": "seal-0001",
            "c": "x",
            "i": 1,
            "x": 2**32,
            "h": b64url(bytes(32)),
        }
    )
    forged = f"{b64url(payload)}.{b64url(other.sign(CONTEXT + payload).signature)}"
    assert verify_token(forged, [KEY.verify_key], now=NOW).refusal is Refusal.TAMPERED


def test_a_changed_payload_is_tampered() -> None:
    payload, signature = sign_token(claims(), KEY).split(".")
    members = json.loads(b64url_decode(payload))
    for name, value in [("c", "(2021)苏0214执9999号"), ("x", members["x"] + 86400 * 365), ("n", 8), ("d", "seal-0002")]:
        changed = b64url(canonical_json({**members, name: value}))
        assert verify_token(f"{changed}.{signature}", [KEY.verify_key], now=NOW).refusal is Refusal.TAMPERED, name


def test_a_flipped_signature_bit_is_tampered() -> None:
    payload, signature = sign_token(claims(), KEY).split(".")
    raw = bytearray(b64url_decode(signature))
    raw[10] ^= 1
    assert verify_token(f"{payload}.{b64url(bytes(raw))}", [KEY.verify_key], now=NOW).refusal is Refusal.TAMPERED


@pytest.mark.parametrize("cut", [1, 2, 5, 40, 87, 100, 200])
def test_a_truncated_token_is_malformed(cut: int) -> None:
    token = sign_token(claims(), KEY)
    check = verify_token(token[:-cut], [KEY.verify_key], now=NOW)
    assert check.refusal in (Refusal.MALFORMED, Refusal.TAMPERED)
    if cut < 87:  # the signature lost characters: it cannot be 64 bytes any more
        assert check.refusal is Refusal.MALFORMED


@pytest.mark.parametrize(
    "token",
    [
        "",
        ".",
        "abc",
        "a.b.c",
        "!!!.???",
        "封条.公告",
        "x" * 100_000,
        "\x00.\x00",
        base64.urlsafe_b64encode(b"not json").decode().rstrip("=") + "." + b64url(bytes(64)),
        b64url(b"[1,2]") + "." + b64url(bytes(64)),
        b64url(b'{"v":1}') + "." + b64url(bytes(64)),
        b64url(b"\xff\xfe") + "." + b64url(bytes(64)),
        "YQ==." + b64url(bytes(64)),  # padded
        "YR." + b64url(bytes(64)),  # unused bits set: not canonical
    ],
)
def test_strings_that_are_no_token_are_malformed(token: str) -> None:
    check = verify_token(token, [KEY.verify_key], now=NOW)
    assert check.refusal is Refusal.MALFORMED and check.claims is None and check.detail


def test_payload_members_of_the_wrong_type_or_version_are_malformed() -> None:
    good = json.loads(b64url_decode(sign_token(claims(), KEY).split(".")[0]))
    for name, value in [("v", 2), ("n", True), ("n", -1), ("i", 1.5), ("d", 5), ("h", b64url(bytes(31))), ("x", 2**60)]:
        payload = canonical_json({**good, name: value})
        token = f"{b64url(payload)}.{b64url(KEY.sign(CONTEXT + payload).signature)}"
        assert verify_token(token, [KEY.verify_key], now=NOW).refusal is Refusal.MALFORMED, (name, value)


@given(st.text(max_size=400))
def test_verification_never_raises(token: str) -> None:
    assert verify_token(token, [KEY.verify_key], now=NOW).refusal is Refusal.MALFORMED


def test_the_facts_hash_is_of_their_canonical_json() -> None:
    assert FACTS.canonical().startswith(b'{"address":"')
    assert NoticeFacts.from_json(FACTS.canonical().decode()) == FACTS
    assert FACTS.sha256() == hashlib.sha256(FACTS.canonical()).digest()


def test_a_seizure_ends_at_midnight_china_time() -> None:
    from datetime import date

    assert end_of_court_day(date(2029, 12, 3)) == datetime(2029, 12, 3, 16, 0, tzinfo=UTC)
