"""Whoever may read a seal's events reads its enrolled public key and enrolment record — who registered it, when,
every registration (a replaced key included), its bindings — and can verify the stored envelopes with that key."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from seal_protocol import EventType, decode_envelope
from seal_protocol.signing import generate_signing_key, public_key_b64, verify_envelope, verify_key_from_b64
from server.app import create_app
from server.auth.access import Role
from server.cli import main
from server.core.db import SessionFactory, session_scope
from server.core.metrics import IngestMetrics
from server.ingest.ingestor import Ingestor
from server.seals.cases import add_case
from tests.server.auth_helpers import add_user, bearer, make_settings
from tests.server.helpers import SimulatedSeal, message
from tests.server.test_cli import write_config

CASE = "(2023)苏0214执77号"
OTHER = "(2023)苏0214执78号"


@pytest.fixture
def client(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[TestClient]:
    with session_scope(session_factory) as session:
        add_case(session, actor=None, case_no=CASE, court="无锡市滨湖区人民法院")
        add_case(session, actor=None, case_no=OTHER)
    add_user(session_factory, "clerk", Role.CLERK)
    add_user(session_factory, "judge", Role.JUDGE, [CASE])
    add_user(session_factory, "debtor", Role.DEBTOR, [CASE])
    add_user(session_factory, "officer", Role.OFFICER, [CASE])
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False)) as instance:
        yield instance


def test_the_judge_reads_the_key_and_enrolment_and_verifies_events_with_it(
    client: TestClient,
    session_factory: SessionFactory,
    tmp_path: Path,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seal = SimulatedSeal("seal-77", CASE)
    clerk, officer, judge = (bearer(session_factory, name) for name in ("clerk", "officer", "judge"))
    registered = client.post(
        "/api/seals", json={"device_id": seal.device_id, "public_key": seal.public_key}, headers=clerk
    )
    assert registered.status_code == 201
    assert client.put("/api/seals/seal-77/binding", json={"case_no": CASE}, headers=officer).status_code == 200
    Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots").ingest(
        [message(seal.event_topic, seal.event(EventType.AGENT_STARTED))]
    )

    enrolment = client.get("/api/seals/seal-77/enrolment", headers=judge).json()
    raw_key = base64.b64decode(seal.public_key)
    assert enrolment == enrolment | {
        "device_id": "seal-77",
        "public_key": seal.public_key,
        "public_key_sha256": hashlib.sha256(raw_key).hexdigest(),
        "registered_by": "clerk",
    }
    assert [(r["by"], r["public_key"]) for r in enrolment["registrations"]] == [("clerk", seal.public_key)]
    assert [(b["case_no"], b["bound_by"], b["unbound_at"]) for b in enrolment["bindings"]] == [(CASE, "officer", None)]
    (event,) = client.get(f"/api/cases/{quote(CASE, safe='')}/events", headers=judge).json()["events"]
    verify_envelope(decode_envelope(event["envelope"].encode()), verify_key_from_b64(enrolment["public_key"]))

    # The device is re-provisioned on the command line with a new key: it would start its chain again at seq 1, which
    # the court (keeping the old chain) would quarantine for ever, so the key is refused and the operator told what
    # to do instead.
    new_key = public_key_b64(generate_signing_key())
    config = write_config(tmp_path, database_url)
    args = ["seal", "add", "seal-77", "--case", CASE, "--public-key", new_key, "--replace-key", "--config", str(config)]
    assert main(args) == 1
    assert "new device id" in capsys.readouterr().err
    again = client.get("/api/seals/seal-77/enrolment", headers=judge).json()
    assert again["public_key"] == seal.public_key and len(again["registrations"]) == 1


def test_a_key_replaced_before_any_event_shows_both_registrations(
    client: TestClient, session_factory: SessionFactory, tmp_path: Path, database_url: str
) -> None:
    seal = SimulatedSeal("seal-78", CASE)
    clerk, judge = bearer(session_factory, "clerk"), bearer(session_factory, "judge")
    body = {"device_id": seal.device_id, "public_key": seal.public_key}
    assert client.post("/api/seals", json=body, headers=clerk).status_code == 201
    new_key = public_key_b64(generate_signing_key())
    config = write_config(tmp_path, database_url)
    args = ["seal", "add", "seal-78", "--case", CASE, "--public-key", new_key, "--replace-key", "--config", str(config)]
    assert main(args) == 0
    enrolment = client.get("/api/seals/seal-78/enrolment", headers=judge).json()
    assert (enrolment["public_key"], enrolment["registered_by"]) == (new_key, None)
    assert [(r["by"], r["public_key"]) for r in enrolment["registrations"]] == [
        ("clerk", seal.public_key),
        (None, new_key),
    ]


def test_who_may_read_the_enrolment(client: TestClient, session_factory: SessionFactory) -> None:
    clerk = bearer(session_factory, "clerk")
    for device_id, case_no in (("seal-own", CASE), ("seal-other", OTHER)):
        body = {"device_id": device_id, "public_key": public_key_b64(generate_signing_key())}
        assert client.post("/api/seals", json=body, headers=clerk).status_code == 201
        assert (
            client.put(f"/api/seals/{device_id}/binding", json={"case_no": case_no}, headers=clerk).status_code == 200
        )
    assert client.get("/api/seals/seal-own/enrolment", headers=bearer(session_factory, "judge")).status_code == 200
    assert client.get("/api/seals/seal-own/enrolment", headers=bearer(session_factory, "debtor")).status_code == 403
    assert client.get("/api/seals/seal-other/enrolment", headers=bearer(session_factory, "judge")).status_code == 404
    assert client.get("/api/seals/seal-other/enrolment", headers=clerk).status_code == 200
    assert client.get("/api/seals/seal-own/enrolment").status_code == 401


def test_the_key_stays_readable_to_the_case_after_its_seal_is_unbound_and_moved_to_another_case(
    client: TestClient, session_factory: SessionFactory
) -> None:
    """A closed case's events must stay verifiable: its judge keeps reading the key of a seal that left the case,
    and sees only the bindings to the cases the judge may see; a judge of neither case still sees nothing."""
    clerk, judge = bearer(session_factory, "clerk"), bearer(session_factory, "judge")
    key = public_key_b64(generate_signing_key())
    assert (
        client.post("/api/seals", json={"device_id": "seal-moves", "public_key": key}, headers=clerk).status_code == 201
    )
    assert client.put("/api/seals/seal-moves/binding", json={"case_no": CASE}, headers=clerk).status_code == 200
    assert client.delete("/api/seals/seal-moves/binding", headers=clerk).status_code == 204
    unbound = client.get("/api/seals/seal-moves/enrolment", headers=judge)
    assert unbound.status_code == 200 and unbound.json()["public_key"] == key
    assert client.put("/api/seals/seal-moves/binding", json={"case_no": OTHER}, headers=clerk).status_code == 200
    moved = client.get("/api/seals/seal-moves/enrolment", headers=judge)
    assert moved.status_code == 200 and moved.json()["public_key"] == key
    assert [b["case_no"] for b in moved.json()["bindings"]] == [CASE]  # not the other case's binding
    assert [b["case_no"] for b in client.get("/api/seals/seal-moves/bindings", headers=judge).json()] == [CASE]
    assert client.get("/api/seals/seal-moves", headers=judge).status_code == 404  # its present belongs to OTHER
    add_user(session_factory, "stranger", Role.JUDGE, [])
    assert client.get("/api/seals/seal-moves/enrolment", headers=bearer(session_factory, "stranger")).status_code == 404
