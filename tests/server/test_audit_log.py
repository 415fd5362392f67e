"""Every human action on the record, in the Merkle log: an audit entry keeps its canonical JSON record and its case,
becomes a leaf when its transaction commits (and only then), names who acted, and reads of evidence are entries too;
a case's entries come with inclusion proofs to the signed checkpoint for its judge and the clerk."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import quote

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from seal_protocol import EventType, canonical_json, snapshot_topic
from seal_verify import merkle as verifier
from server.alarms.models import Alarm
from server.app import create_app
from server.audit.models import AuditEntry
from server.audit.service import acting_as, at_text, entry_record, record_audit
from server.auth.access import Role
from server.auth.users import get_user, unassign_user
from server.config import RemovalSettings
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.core.metrics import IngestMetrics
from server.evidence import log, merkle
from server.evidence.checkpoints import LogKey, open_checkpoint
from server.evidence.models import LogLeaf
from server.ingest.ingestor import Ingestor
from server.removal.grounds import RemovalGround
from server.removal.proofs import ProofStore, check_proof
from server.removal.service import file_request
from tests.server.auth_helpers import LOG_ORIGIN, add_user, bearer, make_settings
from tests.server.helpers import CASE_A, CASE_B, SimulatedSeal, jpeg_bytes, message, register
from tests.server.log_checks import assert_whole_tree
from tests.server.removal_world import pdf_bytes


def leaf_count(session_factory: SessionFactory) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(LogLeaf)) or 0


def test_an_entry_is_its_record_and_becomes_a_leaf_when_its_transaction_commits(
    session_factory: SessionFactory,
) -> None:
    register(session_factory, SimulatedSeal("seal-a", CASE_A))
    with session_scope(session_factory) as session, acting_as("cli:alice"):
        entry = record_audit(
            session, actor=None, action="case.note", target=CASE_A, case_no=CASE_A, details={"note": "封条完好"}
        )
        assert log.leaf_of_audit(session, entry) is None  # not before the commit
    with session_factory() as session:
        stored = session.get(AuditEntry, entry.id)
        assert stored is not None and stored.actor == "cli:alice" and stored.case_no == CASE_A
        record = json.loads(stored.record)
        assert record == {
            "kind": "audit",
            "id": entry.id,
            "at": at_text(stored.at),
            "actor": "cli:alice",
            "action": "case.note",
            "target": CASE_A,
            "case_no": CASE_A,
            "details": {"note": "封条完好"},
        }
        assert stored.record == canonical_json(record) == entry_record(stored)
        assert record["at"].endswith("Z") and len(record["at"]) == len("2026-12-04T17:47:21.123Z")
        leaf = log.leaf_of_audit(session, stored)
        assert leaf is not None and leaf.event_id is None
        assert leaf.leaf_hash == hashlib.sha256(b"\x00" + stored.record).digest()
        assert [e.id for e, _ in log.audit_leaves_of_case(session, CASE_A)][-1] == entry.id

    before = leaf_count(session_factory)
    with session_factory() as session:  # rolled back: neither the entry nor a leaf
        record_audit(session, actor=None, action="case.note", target=CASE_A, case_no=CASE_A)
        session.rollback()
    with session_factory() as session, session.begin():  # a rolled-back savepoint's entry is no leaf either
        savepoint = session.begin_nested()
        record_audit(session, actor=None, action="case.note", target="dropped", case_no=CASE_A)
        savepoint.rollback()
        kept = record_audit(session, actor=None, action="case.note", target="kept", case_no=CASE_A)
    assert leaf_count(session_factory) == before + 1
    with session_factory() as session:
        assert session.scalars(select(AuditEntry.target).where(AuditEntry.id >= kept.id)).all() == ["kept"]
        assert session.scalar(select(AuditEntry.actor).where(AuditEntry.id == kept.id)) == "-"  # no CLI, no user
    assert_whole_tree(session_factory)


def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> tuple[TestClient, str, int]:
    """A case with a seal that sent an intrusion and a picture, a removal request with a proof, and users; the
    client, the picture's SHA-256 and the request's id."""
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal, SimulatedSeal("seal-b", CASE_B))
    picture = jpeg_bytes(shade=3)
    sha = hashlib.sha256(picture).hexdigest()
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    ingestor.ingest(
        [
            message(seal.event_topic, seal.event(EventType.INTRUSION, {"snapshot_sha256": sha})),
            message(snapshot_topic(seal.device_id, sha), picture),
        ]
    )
    add_user(session_factory, "judge-a", Role.JUDGE, (CASE_A,))
    add_user(session_factory, "judge-b", Role.JUDGE, (CASE_B,))
    add_user(session_factory, "officer-a", Role.OFFICER, (CASE_A,))
    add_user(session_factory, "clerk", Role.CLERK)
    add_user(session_factory, "debtor-a", Role.DEBTOR, (CASE_A,))
    with session_scope(session_factory) as session:
        receipt = check_proof(pdf_bytes("paid"), filename="r.pdf", declared_type="", max_bytes=2**20)
        request = file_request(
            session,
            actor=get_user(session, username="debtor-a"),
            case_no=CASE_A,
            ground=RemovalGround.PAID_IN_FULL,
            statement="已清偿",
            proofs=[receipt],
            store=ProofStore(tmp_path / "removal-proofs"),  # the proof_dir of make_settings
            settings=RemovalSettings(),
            now=utc_now(),
        )
        request_id = request.id
    client = TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False))
    return client, sha, request_id


def test_reads_of_evidence_and_notes_are_the_case_s_entries_with_proofs(
    database_url: str, session_factory: SessionFactory, tmp_path: Path
) -> None:
    client, sha, request_id = world(database_url, session_factory, tmp_path)
    with client:
        judge = bearer(session_factory, "judge-a")
        case_url = f"/api/cases/{quote(CASE_A, safe='')}"
        assert client.get(f"/api/snapshots/{sha}", headers=judge).status_code == 200
        assert client.get(f"{case_url}/events", params={"limit": 5}, headers=judge).status_code == 200
        assert client.get("/api/seals/seal-a/events", headers=judge).status_code == 200
        request = client.get(f"/api/removal-requests/{request_id}", headers=judge).json()
        proof_sha = request["proofs"][0]["sha256"]
        assert client.get(f"/api/removal-requests/{request_id}/proofs/{proof_sha}", headers=judge).status_code == 200
        assert client.get(f"/api/snapshots/{sha}", headers=bearer(session_factory, "judge-b")).status_code == 404
        with session_factory() as session:
            alarm_id = session.scalars(select(Alarm.id).where(Alarm.case_no == CASE_A)).first()
        assert alarm_id is not None
        ack = client.post(f"/api/alarms/{alarm_id}/ack", json={"note": "已派员前往"}, headers=judge)
        assert ack.status_code == 200, ack.text
        close = client.post(f"/api/alarms/{alarm_id}/close", json={"note": "误报：风吹门动"}, headers=judge)
        assert close.status_code == 200, close.text
        with session_scope(session_factory) as session:
            log.make_checkpoint(session, LogKey(tmp_path / "log.key", LOG_ORIGIN))

        with session_factory() as session:
            pairs = log.audit_leaves_of_case(session, CASE_A)
        assert [leaf.leaf_index for _, leaf in pairs] == sorted(leaf.leaf_index for _, leaf in pairs)
        assert all(entry.case_no == CASE_A for entry, _ in pairs)
        by_action: dict[str, list[AuditEntry]] = {}
        for entry, _ in pairs:
            by_action.setdefault(entry.action, []).append(entry)
        [snapshot] = by_action["evidence.snapshot"]
        assert (snapshot.actor, snapshot.target, snapshot.details) == ("judge-a", sha, {"device_id": "seal-a"})
        case_read, seal_read = by_action["evidence.events"]
        assert (case_read.target, case_read.details["limit"], case_read.details["events"]) == (CASE_A, 5, 1)
        assert (seal_read.target, seal_read.details["cases"]) == ("seal-a", [CASE_A])
        [proof] = by_action["evidence.proof"]
        assert (proof.target, proof.details["request_id"]) == (proof_sha, request_id)
        assert by_action["alarm.ack"][0].details["note"] == "已派员前往"
        assert by_action["alarm.close"][0].details["note"] == "误报：风吹门动"
        assert {"case.create", "seal.register", "removal.file"} <= by_action.keys()
        with session_factory() as session:  # the foreign judge's refused read is no entry of this case
            assert not [e for e, _ in log.audit_leaves_of_case(session, CASE_B) if e.action.startswith("evidence.")]

        published = client.get("/api/log/key").text.strip()
        clerk = bearer(session_factory, "clerk")
        listed = client.get("/api/audit", params={"case_no": CASE_A, "limit": 500}, headers=clerk).json()["entries"]
        assert sorted(e["id"] for e in listed) == sorted(entry.id for entry, _ in pairs)
        assert all(e["case_no"] == CASE_A for e in listed)
        for entry, leaf in pairs:
            answer = client.get(f"/api/log/inclusion/audit/{entry.id}", headers=judge if entry.id % 2 else clerk)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["record"].encode() == entry.record and body["leaf_index"] == leaf.leaf_index
            signed = open_checkpoint(body["checkpoint"], published)
            proof_hashes = [bytes.fromhex(h) for h in body["proof"]]
            leaf_hash = merkle.leaf_hash(entry.record)
            assert verifier.root_from_inclusion(leaf.leaf_index, signed.tree_size, leaf_hash, proof_hashes) == (
                signed.root_hash
            )
        first = pairs[0][0].id
        assert (  # an officer proves no audit entries: one of their case is as unknown to them as any other
            client.get(f"/api/log/inclusion/audit/{first}", headers=bearer(session_factory, "officer-a")).status_code
            == 404
        )
        assert (
            client.get(f"/api/log/inclusion/audit/{first}", headers=bearer(session_factory, "judge-b")).status_code
            == 404
        )
        with session_factory() as session:
            no_case = session.scalars(select(AuditEntry.id).where(AuditEntry.case_no.is_(None))).first()
        assert no_case is not None
        assert client.get(f"/api/log/inclusion/audit/{no_case}", headers=clerk).status_code == 404
        late = client.get(f"{case_url}/events", headers=judge)  # its own entry is in no checkpoint yet
        assert late.status_code == 200
        with session_factory() as session:
            newest = session.scalar(select(func.max(AuditEntry.id)))
        assert client.get(f"/api/log/inclusion/audit/{newest}", headers=judge).status_code == 409
    assert_whole_tree(session_factory)


def test_taking_a_user_off_a_case_typed_with_full_width_parentheses_is_an_entry_of_that_case(
    session_factory: SessionFactory,
) -> None:
    """The clerk's form passes the case number as typed: the entry must still name the case as stored, or it is
    missing from the case's export and from its judge's proofs."""
    register(session_factory, SimulatedSeal("seal-a", CASE_A))
    add_user(session_factory, "judge-a", Role.JUDGE, [CASE_A])
    add_user(session_factory, "clerk", Role.CLERK)
    typed = CASE_A.replace("(", "（").replace(")", "）")
    with session_scope(session_factory) as session:
        clerk = get_user(session, username="clerk")
        unassign_user(session, actor=clerk, user=get_user(session, username="judge-a"), case_no=typed)
    with session_factory() as session:
        entries = [e for e, _ in log.audit_leaves_of_case(session, CASE_A) if e.action == "case.unassign"]
        assert len(entries) == 1
        assert entries[0].target == CASE_A and json.loads(entries[0].record)["case_no"] == CASE_A


def test_a_picture_shown_again_and_again_is_one_entry_per_reader_not_a_leaf_per_page_view(
    database_url: str, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """The pages show thumbnails through ``/api/snapshots/{sha}`` (no-store): every page view and every live update
    of an overview tile fetches them again. A repeated identical read by the same user within the window is not
    re-recorded; another user's read, or a read of other evidence, is."""
    client, sha, _request_id = world(database_url, session_factory, tmp_path)
    with client:
        judge, clerk = bearer(session_factory, "judge-a"), bearer(session_factory, "clerk")
        case_url = f"/api/cases/{quote(CASE_A, safe='')}"

        def entries(action: str, actor: str) -> int:
            with session_factory() as session:
                return sum(
                    1 for e, _ in log.audit_leaves_of_case(session, CASE_A) if (e.action, e.actor) == (action, actor)
                )

        assert client.get(f"/api/snapshots/{sha}", headers=judge).status_code == 200
        leaves = leaf_count(session_factory)
        for _ in range(20):
            assert client.get(f"/api/snapshots/{sha}", headers=judge).status_code == 200
        assert leaf_count(session_factory) == leaves
        assert entries("evidence.snapshot", "judge-a") == 1
        assert client.get(f"/api/snapshots/{sha}", headers=clerk).status_code == 200
        assert entries("evidence.snapshot", "clerk") == 1

        for _ in range(3):
            assert client.get(f"{case_url}/events", params={"limit": 5}, headers=judge).status_code == 200
        assert entries("evidence.events", "judge-a") == 1
        assert client.get(f"{case_url}/events", params={"limit": 4}, headers=judge).status_code == 200
        assert entries("evidence.events", "judge-a") == 2  # another read: other details
