import json
import re
import uuid
from pathlib import Path

import pytest

from seal_protocol import (
    MAX_ENVELOPE_BYTES,
    MAX_NAMED_SNAPSHOTS,
    EventType,
    InvalidEnvelope,
    canonical_json,
    decode_envelope,
    decode_signed_envelope,
    encode_envelope,
    envelope_hash,
    new_envelope,
    utc_now_ms,
)
from seal_protocol.envelope import SIMULATED_FIELD, is_simulated, parse_ts
from seal_protocol.errors import SignatureError
from seal_protocol.signing import (
    generate_signing_key,
    load_or_create_signing_key,
    public_key_b64,
    sign_envelope,
    verify_envelope,
    verify_key_from_b64,
)

CASE = "(2021)苏0214执1234号"


def make(seq: int = 1, **payload: object):
    return new_envelope(device_id="seal-a", case_no=CASE, seq=seq, type=EventType.INTRUSION, payload=dict(payload))


def test_canonical_json_is_sorted_compact_utf8():
    assert canonical_json({"b": 1, "a": "执", "c": [1, {"z": 0, "y": None}]}) == (
        '{"a":"执","b":1,"c":[1,{"y":null,"z":0}]}'.encode()
    )


def test_encode_decode_round_trip_is_byte_exact():
    env = make(seq=7, pir=True, note="法院查控财产")
    data = encode_envelope(env)
    back = decode_envelope(data)
    assert back == env
    assert encode_envelope(back) == data
    obj = json.loads(data)
    assert list(obj) == sorted(obj)
    assert obj["ts"].endswith("Z") and len(obj["ts"]) == len("2026-11-26T05:03:23.123Z")
    assert obj["sig"] is None and obj["prev_hash"] is None


def test_utc_now_ms_shape():
    from datetime import UTC, datetime

    assert utc_now_ms(datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)) == "2026-01-02T03:04:05.678Z"
    # Four digits of year however small (strftime's %Y gives "999" on glibc, which parse_ts rightly refuses).
    for year in (1, 999):
        ts = utc_now_ms(datetime(year, 1, 1, tzinfo=UTC))
        assert ts == f"{year:04d}-01-01T00:00:00.000Z" and parse_ts(ts) == datetime(year, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe{}", "invalid UTF-8"),
        (b"{not json", "invalid JSON"),
        (b"[1,2]", "expected a JSON object"),
        (b'{"v":1}', "event_id"),
        (b"x" * (MAX_ENVELOPE_BYTES + 1), "oversized"),
    ],
)
def test_decode_rejects_with_reason(data: bytes, reason: str):
    with pytest.raises(InvalidEnvelope, match=reason):
        decode_envelope(data)


def test_decode_rejects_unknown_fields_bad_seq_and_nan():
    good = json.loads(encode_envelope(make()))
    for key, value, where in [("extra", 1, "extra"), ("seq", 0, "seq"), ("ts", "2026-01-01 00:00:00", "ts")]:
        bad = dict(good, **{key: value})
        with pytest.raises(InvalidEnvelope, match=where):
            decode_envelope(json.dumps(bad).encode())
    with pytest.raises(InvalidEnvelope, match="NaN"):
        decode_envelope(encode_envelope(make()).replace(b'"payload":{}', b'"payload":{"x":NaN}'))


def test_invalid_device_id_is_refused():
    with pytest.raises(InvalidEnvelope, match="device_id"):
        new_envelope(device_id="Bad/Id", case_no=CASE, seq=1, type=EventType.HEARTBEAT)


def test_signature_covers_every_field():
    key = generate_signing_key()
    signed = sign_envelope(make(seq=3, pir=True), key)
    verify_key = verify_key_from_b64(public_key_b64(key))
    verify_envelope(decode_envelope(encode_envelope(signed)), verify_key)
    for change in (
        {"seq": 4},
        {"case_no": "(2021)苏0214执9999号"},
        {"payload": {"pir": False}},
        {"event_id": uuid.uuid4()},
        {"prev_hash": "0" * 64},
    ):
        with pytest.raises(SignatureError, match="bad signature"):
            verify_envelope(signed.model_copy(update=change), verify_key)
    with pytest.raises(SignatureError, match="bad signature"):
        verify_envelope(signed, generate_signing_key().verify_key)
    with pytest.raises(SignatureError, match="unsigned"):
        verify_envelope(make(), verify_key)


def test_decoding_for_verification_gives_the_signed_bytes():
    key = generate_signing_key()
    for payload in ({}, {"note": '门口有人 \u00e9\n\t"', "nested": {"a": [1, {"b": None}]}}, {"sig": "x" * 10}):
        signed = sign_envelope(make(seq=7, **payload), key)
        envelope, signing_bytes = decode_signed_envelope(encode_envelope(signed))
        assert envelope == decode_envelope(encode_envelope(signed))
        assert signing_bytes == signed.signing_bytes()
        key.verify_key.verify(signing_bytes, bytes.fromhex(signed.sig or ""))
    with pytest.raises(InvalidEnvelope):
        decode_signed_envelope(encode_envelope(signed).replace(b'"seq":7', b'"seq": 7'))


def test_chain_hash_is_sha256_of_encoded_bytes():
    import hashlib

    data = encode_envelope(make())
    assert envelope_hash(data) == hashlib.sha256(data).hexdigest()


def test_private_key_file_is_0600_and_reloaded(tmp_path):
    path = tmp_path / "keys" / "device.key"
    key, created = load_or_create_signing_key(path)
    assert created and (path.stat().st_mode & 0o777) == 0o600
    again, created_again = load_or_create_signing_key(path)
    assert not created_again and bytes(again) == bytes(key)


def test_bad_public_key_is_refused():
    with pytest.raises(SignatureError, match="32 bytes"):
        verify_key_from_b64("AAAA")
    with pytest.raises(SignatureError, match="base64"):
        verify_key_from_b64("not base64!")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\xff", "invalid_utf8"),
        (b"{", "invalid_json"),
        (b"{}", "invalid_envelope"),
        (b" " * (MAX_ENVELOPE_BYTES + 1), "oversized"),
    ],
)
def test_refusal_codes(data: bytes, code: str):
    with pytest.raises(InvalidEnvelope) as info:
        decode_envelope(data)
    assert info.value.code == code


def test_stale_temporary_key_file_is_not_reused(tmp_path):
    path = tmp_path / "device.key"
    stale = tmp_path / "device.key.tmp"
    stale.write_text("old")
    stale.chmod(0o644)
    load_or_create_signing_key(path)
    assert (path.stat().st_mode & 0o777) == 0o600 and not stale.exists()


def test_corrupt_private_key_file_is_a_signature_error(tmp_path):
    from seal_protocol.signing import load_signing_key

    path = tmp_path / "device.key"
    path.write_text("not base64!\n")
    with pytest.raises(SignatureError, match="not base64"):
        load_signing_key(path)


@pytest.mark.parametrize("field", ["seq", "v", "payload"])
def test_minus_zero_is_non_canonical_wherever_it_stands(field):
    """docs/protocol.md: -0 is a spelling canonical JSON never writes, refused as non_canonical before any field's
    own bounds (seq >= 1, v == 1) could give it another reason."""
    signed = encode_envelope(sign_envelope(make(seq=1, level=0), generate_signing_key()))
    text = signed.decode()
    target = {"seq": '"seq":1', "v": '"v":1', "payload": '"level":0'}[field]
    assert target in text
    data = text.replace(target, target[:-1] + "-0", 1).encode()
    with pytest.raises(InvalidEnvelope) as info:
        decode_envelope(data)
    assert info.value.code == "non_canonical"


def _names(count: int) -> list[str]:
    return [f"{number:064x}" for number in range(count)]


def test_an_event_names_at_most_max_named_snapshots_pictures():
    """docs/protocol.md, "Limits": ``payload.snapshots`` names at most MAX_NAMED_SNAPSHOTS pictures; a sender cannot
    build a longer one, and a receiver refuses its bytes as ``invalid_envelope``, signed or not."""
    key = generate_signing_key()
    at_limit = encode_envelope(sign_envelope(make(snapshots=_names(MAX_NAMED_SNAPSHOTS)), key))
    assert len(decode_envelope(at_limit).payload["snapshots"]) == MAX_NAMED_SNAPSHOTS

    with pytest.raises(InvalidEnvelope, match=f"snapshots names {MAX_NAMED_SNAPSHOTS + 1} pictures, limit"):
        make(snapshots=_names(MAX_NAMED_SNAPSHOTS + 1))

    # built without validation (a key in the wrong hands need not use new_envelope), then signed
    envelope = make().model_copy(update={"payload": {"snapshots": _names(MAX_NAMED_SNAPSHOTS + 1)}})
    data = encode_envelope(sign_envelope(envelope, key))
    with pytest.raises(InvalidEnvelope) as info:
        decode_signed_envelope(data)
    assert info.value.code == "invalid_envelope"
    assert f"snapshots names {MAX_NAMED_SNAPSHOTS + 1} pictures, limit {MAX_NAMED_SNAPSHOTS}" in str(info.value)


def test_the_agent_never_names_more_pictures_than_the_protocol_allows():
    """The agent's longest lists: an ``outbox_full`` part, and a trigger's snapshots (at most the configured frames)."""
    from seal_agent.devices.camera.config import CameraConfig
    from seal_agent.journal.snapshot_spool import MAX_LISTED

    assert MAX_LISTED <= MAX_NAMED_SNAPSHOTS
    most_frames = max(m.le for m in CameraConfig.model_fields["snapshot_max_frames"].metadata if hasattr(m, "le"))
    assert most_frames <= MAX_NAMED_SNAPSHOTS


@pytest.mark.parametrize(
    ("payload", "simulated"),
    [({SIMULATED_FIELD: True}, True), ({}, False), ({SIMULATED_FIELD: "true"}, False), ({SIMULATED_FIELD: 1}, False)],
)
def test_is_simulated_takes_the_json_true_alone(payload: dict[str, object], simulated: bool) -> None:
    assert is_simulated(payload) is simulated


def test_the_simulated_mark_is_read_and_written_through_the_wire_contract_alone() -> None:
    """One test of the mark (:func:`is_simulated`) and one name of its field (``SIMULATED_FIELD``): no package spells
    ``"simulated"`` as a key of its own, which could drift from the wire contract's."""
    root = Path(__file__).resolve().parents[2]
    spelt = re.compile(r"""(\.get\(|\[)\s*["']simulated["']""")
    found = [
        f"{path.relative_to(root)}:{number}"
        for package in ("seal_protocol", "seal_agent", "server", "seal_dev", "seal_verify")
        for path in sorted((root / package).rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if spelt.search(line)
    ]
    assert found == []
