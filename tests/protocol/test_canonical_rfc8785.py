"""Our canonical JSON agrees with RFC 8785 (the ``rfc8785`` package) on every value the wire admits with the
ASCII keys the protocol uses, so a third party in any language can rebuild the signed bytes with a JCS library."""

from __future__ import annotations

import os

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from seal_protocol.wirejson import MAX_SAFE_INTEGER, canonical_json, check_wire_value

EXAMPLES = 5000 if os.environ.get("SEAL_LONG_TESTS") else 500
wire_text = st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=30)
wire_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER) | wire_text,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=10), children
        )
    ),
    max_leaves=20,
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(wire_values)
def test_canonical_json_is_rfc8785_for_what_the_wire_admits(value: object) -> None:
    check_wire_value(value)
    assert canonical_json(value) == rfc8785.dumps(value)


def test_the_envelope_of_a_real_event_is_rfc8785() -> None:
    envelope = {
        "case_no": "(2021)苏0214执1234号",
        "device_id": "seal-0001",
        "event_id": "0b6f5c1e-2f4d-4a57-9d55-6c1a3c9e8f10",
        "payload": {"armed": True, "camera": "ok", "snapshots": ["ab" * 32], "warning": "played"},
        "prev_hash": None,
        "seq": 1,
        "ts": "2026-12-01T08:00:00.123Z",
        "type": "intrusion",
        "v": 1,
    }
    assert canonical_json(envelope) == rfc8785.dumps(envelope)
