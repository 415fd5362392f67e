"""Property tests of the wire decoders: whatever the bytes, they raise only their own refusal, and whatever they
accept is byte-exact (the bytes are the canonical encoding of what they parse to)."""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seal_protocol import EventType, InvalidEnvelope, decode_envelope, encode_envelope, new_envelope
from seal_protocol.envelope import decode_signed_envelope
from seal_protocol.signing import SignatureError, generate_signing_key, sign_envelope, verify_envelope
from seal_protocol.status import decode_status
from seal_protocol.wirejson import canonical_json

EXAMPLES = 2000 if os.environ.get("SEAL_LONG_TESTS") else 300
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = generate_signing_key()
VALID = encode_envelope(
    sign_envelope(
        new_envelope(
            device_id="seal-a",
            case_no="(2021)苏0214执1234号",
            seq=7,
            type=EventType.INTRUSION,
            payload={"armed": True, "warning": "played", "snapshots": ["ab" * 32], "note": "有人\n进入"},
            prev_hash="cd" * 32,
        ),
        KEY,
    )
)
FIELDS = list(json.loads(VALID))

#: Any JSON-ish value, including what Python's json accepts beyond the wire's rules (floats, huge integers,
#: surrogates, NUL).
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(alphabet=st.characters(codec=None), max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def _accepted_is_byte_exact(data: bytes) -> None:
    try:
        envelope = decode_envelope(data)
    except InvalidEnvelope as exc:
        assert exc.code in {"oversized", "invalid_utf8", "invalid_json", "invalid_envelope", "non_canonical"}
        return
    assert encode_envelope(envelope) == data
    # The bytes the ingest verifies (cut from the received bytes) are those the envelope's signature covers.
    assert decode_signed_envelope(data) == (envelope, envelope.signing_bytes())
    try:
        verify_envelope(envelope, KEY.verify_key)
    except SignatureError:
        pass


@PROPERTY
@given(st.binary(max_size=600))
def test_any_bytes_are_decoded_or_refused(data: bytes) -> None:
    _accepted_is_byte_exact(data)


@PROPERTY
@given(st.data())
def test_mutated_envelopes_are_decoded_or_refused(data: st.DataObject) -> None:
    obj: dict[str, Any] = json.loads(VALID)
    for name in data.draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3)):
        obj[name] = data.draw(json_values)
    resign = data.draw(st.booleans())
    if resign:  # the seal's own key in the wrong hands: the signature is valid, the content is not
        obj.pop("sig", None)
        try:
            obj["sig"] = KEY.sign(canonical_json(obj)).signature.hex()
        except (UnicodeEncodeError, ValueError):
            return  # not even encodable: nothing a seal could sign
    encoded = json.dumps(obj, ensure_ascii=data.draw(st.booleans()), sort_keys=data.draw(st.booleans()))
    _accepted_is_byte_exact(encoded.encode("utf-8", "surrogatepass"))


@PROPERTY
@given(st.integers(min_value=0, max_value=len(VALID) - 1), st.integers(min_value=0, max_value=255), st.booleans())
def test_byte_flips_and_cuts_of_a_valid_envelope_are_refused(at: int, value: int, cut: bool) -> None:
    data = VALID[:at] if cut else VALID[:at] + bytes([value]) + VALID[at + 1 :]
    if data == VALID:
        return
    try:
        envelope = decode_envelope(data)
    except InvalidEnvelope:
        return
    # A change that still decodes must be caught by the signature.
    try:
        verify_envelope(envelope, KEY.verify_key)
    except SignatureError:
        return
    raise AssertionError(f"a changed envelope still verifies: {data!r}")


@PROPERTY
@given(st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass"))))
def test_status_messages_are_decoded_or_refused(data: bytes) -> None:
    try:
        state, ts = decode_status(data)
    except InvalidEnvelope:
        return
    assert canonical_json(json.loads(data)) == data and isinstance(ts, str) and state.value in {"online", "offline"}


def test_every_surrogate_escape_is_refused_as_invalid_json() -> None:
    """High and low, lone or paired: never an exception other than the refusal, never accepted."""
    for code in (0xD800, 0xDBFF, 0xDC00, 0xDFFF):
        escape = f"\\u{code:04x}".encode()
        for data in (
            VALID.replace(b'"note":"', b'"note":"' + escape, 1),
            b'{"agent_version":"' + escape + b'","state":"online","ts":"2026-01-01T00:00:00.000Z"}',
        ):
            decoder = decode_envelope if data.startswith(b'{"case_no"') else decode_status
            try:
                decoder(data)
            except InvalidEnvelope as exc:
                assert exc.code == "invalid_json", (data, exc)
            else:
                raise AssertionError(f"accepted {data!r}")
