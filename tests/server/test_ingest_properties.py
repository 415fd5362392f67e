"""Property test of the whole ingest handler on a real database: whatever arrives on whichever topic, no exception
escapes, every message gets exactly one committed outcome, and nothing invalid is stored."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from seal_protocol import decode_envelope, encode_envelope, snapshot_topic
from seal_protocol.signing import verify_envelope
from seal_protocol.wirejson import canonical_json
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.evidence.models import Event
from server.ingest.ingestor import Ingestor
from server.ingest.models import QuarantinedMessage
from server.ingest.results import Message, Outcome
from server.seals.models import Seal
from tests.server.helpers import CASE_A, CASE_B, SimulatedSeal, jpeg_bytes, register

EXAMPLES = 1000 if os.environ.get("SEAL_LONG_TESTS") else 60
SEAL_A = SimulatedSeal("seal-a", CASE_A)
SEAL_B = SimulatedSeal("seal-b", CASE_B)
TEMPLATES = [SEAL_A.event(), SEAL_A.event(), SEAL_B.event()]
PICTURE = jpeg_bytes()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(alphabet=st.characters(codec=None), max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)


@st.composite
def event_payloads(draw: st.DrawFn) -> bytes:
    obj: dict[str, Any] = json.loads(draw(st.sampled_from(TEMPLATES)))
    for name in draw(st.lists(st.sampled_from(sorted(obj)), max_size=3)):
        obj[name] = draw(json_values)
    if draw(st.booleans()):  # validly signed by the seal whose topic it goes to (its key in the wrong hands)
        obj.pop("sig", None)
        try:
            obj["sig"] = SEAL_A.key.sign(canonical_json(obj)).signature.hex()
        except (UnicodeEncodeError, ValueError, TypeError):
            pass
    try:
        return json.dumps(obj, ensure_ascii=draw(st.booleans()), sort_keys=True).encode("utf-8", "surrogatepass")
    except ValueError:
        return b"{}"


@st.composite
def messages(draw: st.DrawFn) -> Message:
    kind = draw(st.sampled_from(["event", "status", "snapshot", "other"]))
    if kind == "event":
        topic, payload = SEAL_A.event_topic, draw(event_payloads() | st.binary(max_size=300))
    elif kind == "status":
        payload = draw(
            st.binary(max_size=80) | json_values.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass"))
        )
        topic = SEAL_A.status_topic
    elif kind == "snapshot":
        payload = draw(st.sampled_from([PICTURE, PICTURE[:-5], b""]) | st.binary(max_size=200))
        digest = hashlib.sha256(payload).hexdigest() if draw(st.booleans()) else "0" * 64
        topic = snapshot_topic("seal-a", digest)
    else:
        topic = draw(st.text(max_size=40) | st.just("seal/v1/seal-a/cmd") | st.just("seal/v1/seal-zz/event"))
        payload = draw(st.binary(max_size=100))
    return Message(topic, payload, datetime.now(UTC))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batch=st.lists(messages(), min_size=1, max_size=6), with_valid=st.booleans())
def test_no_message_escapes_the_ingest_or_stores_anything_invalid(
    session_factory: SessionFactory, tmp_path: Path, batch: list[Message], with_valid: bool
) -> None:
    """The database fixture lives across Hypothesis' examples: counts are compared before and after each."""
    _register_once(session_factory)
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    if with_valid:  # a legitimate event in the same batch must be stored whatever its neighbours are
        batch = [*batch, Message(SEAL_B.event_topic, TEMPLATES[2], datetime.now(UTC))]
    quarantined_before = _count(session_factory, QuarantinedMessage)

    results = ingestor.ingest(batch)

    assert len(results) == len(batch)
    with session_factory() as session:
        events = list(session.scalars(select(Event)))
    quarantined = _count(session_factory, QuarantinedMessage) - quarantined_before
    assert quarantined == sum(r.outcome is Outcome.QUARANTINED for r in results)
    for event in events:  # everything stored is a seal's canonical, verified bytes
        envelope = decode_envelope(event.raw)
        assert encode_envelope(envelope) == event.raw
        verify_envelope(envelope, (SEAL_A if envelope.device_id == "seal-a" else SEAL_B).key.verify_key)
    if with_valid:
        assert any(e.raw == TEMPLATES[2] for e in events)


def _count(session_factory: SessionFactory, model: type[QuarantinedMessage]) -> int:
    """Quarantined messages: copies of the same refused bytes count on one row."""
    with session_factory() as session:
        return int(session.scalar(select(func.sum(model.copies))) or 0)


def _register_once(session_factory: SessionFactory) -> None:
    with session_factory() as session:
        if session.scalar(select(func.count()).select_from(Seal)):
            return
    register(session_factory, SEAL_A, SEAL_B)
