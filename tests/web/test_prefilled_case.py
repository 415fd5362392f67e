"""``bench.ingest_load.prefill`` stores what a court stores: each event a canonical heartbeat envelope signed by its
seal's registered key and chained to the one before, so that the benches and the tests that meet a big case through
it see the product's behaviour on it (the events API and the pages, not a decoding error on filler bytes)."""

from __future__ import annotations

import hashlib
from urllib.parse import quote

from sqlalchemy import select

from bench.ingest_load import prefill
from seal_protocol.envelope import decode_signed_envelope
from seal_protocol.signing import verify_envelope, verify_key_from_b64
from server.core.db import session_scope
from server.seals.models import Seal
from tests.server.auth_helpers import bearer
from tests.web.conftest import CASE, PagesWorld


def test_prefilled_events_are_signed_chained_heartbeats_the_api_and_pages_show(world: PagesWorld) -> None:
    prefill(world.session_factory, CASE, 60, seals=3, chunk=25)
    with session_scope(world.session_factory) as session:
        keys = {
            s.device_id: s.public_key for s in session.scalars(select(Seal).where(Seal.device_id.like("seal-fill-%")))
        }
    assert len(keys) == 3
    with world.client("judge") as client:
        headers = bearer(world.session_factory, "judge")
        answer = client.get(f"/api/cases/{quote(CASE, safe='')}/events?limit=500", headers=headers)
        assert answer.status_code == 200, answer.text
        assert client.get(f"/cases/{quote(CASE, safe='')}").status_code == 200
    filled = [e for e in answer.json()["events"] if e["device_id"] in keys]
    assert len(filled) == 60
    last: dict[str, str] = {}
    for event in sorted(filled, key=lambda e: (e["device_id"], e["seq"])):
        raw = event["envelope"].encode("utf-8")
        envelope, _ = decode_signed_envelope(raw)
        verify_envelope(envelope, verify_key_from_b64(keys[event["device_id"]]))
        assert (envelope.seq, envelope.type.value, str(envelope.event_id)) == (
            event["seq"],
            "heartbeat",
            event["event_id"],
        )
        assert envelope.prev_hash == last.get(event["device_id"]) == event["prev_hash"]
        last[event["device_id"]] = hashlib.sha256(raw).hexdigest()
    assert {e["seq"] for e in filled} == set(range(1, 21))
