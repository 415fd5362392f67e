"""A refused picture whose quarantine row holds no bytes (the database refused the row with them, so
``Ingestor._store_quarantine`` stored it with ``keep_raw=False``) is listed with ``kept`` false and not carried;
``seal-verify`` trusts such an honest bundle and notes the loss, and fails one that says the court kept the bytes
but leaves them out (``docs/evidence.md``, "Snapshots")."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update

from seal_verify import verify_bundle
from server.core.db import SessionFactory, session_scope
from server.export.report_facts import SnapshotFacts
from server.export.report_sections import ReportStyles, _absence
from server.ingest.models import QuarantinedMessage
from server.notices.fonts import find_font, register_font
from tests.server.helpers import CASE_A
from tests.verify.test_export_refused import _line, _refused_picture, _with_line
from tests.verify.world import CourtWorld, build_world, read_members, resign, write_members


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    return build_world(session_factory, database_url, tmp_path)


def _without_bytes(session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as session:
        session.execute(update(QuarantinedMessage).values(raw=b""))


def test_a_refused_picture_kept_without_its_bytes_verifies_and_is_noted_lost(
    world: CourtWorld, session_factory: SessionFactory, tmp_path: Path
) -> None:
    sha, data = _refused_picture(world)
    _without_bytes(session_factory)
    path = world.export(CASE_A, tmp_path / "q.zip").path
    members = read_members(path)
    line = _line(members, sha)
    assert line["absent_reason"] == "refused_by_court"
    assert [(c["sha256"], c["size"], c["kept"]) for c in line["refused"]] == [(sha, len(data), False)]
    assert not [name for name in members if name.startswith("refused/")]
    verdict = verify_bundle(path, log_key=world.log_key.verifier())
    assert verdict.ok and verdict.trusted, verdict.failed
    notes = verdict.check("snapshots").notes
    assert any(sha in note and "did not keep its bytes" in note for note in notes), notes


def test_a_bundle_saying_the_court_kept_bytes_it_leaves_out_fails(
    world: CourtWorld, session_factory: SessionFactory, tmp_path: Path
) -> None:
    sha, _ = _refused_picture(world)
    _without_bytes(session_factory)
    members = read_members(world.export(CASE_A, tmp_path / "q.zip").path)
    line = _line(members, sha)
    forged = _with_line(members, sha, line | {"refused": [line["refused"][0] | {"kept": True}]})
    verdict = verify_bundle(
        write_members(tmp_path / "f.zip", resign(forged, world.log_key)), log_key=world.log_key.verifier()
    )
    assert not verdict.ok
    assert any("is missing" in problem for problem in verdict.check("snapshots").problems)


@pytest.mark.parametrize(
    ("kept", "size", "said"),
    [
        (True, 1000, "the bytes are in the bundle's refused/"),
        (False, 1000, "the court did not keep its bytes"),
        (False, 300 * 1024, "too large: the quarantine kept only its start"),
    ],
)
def test_the_report_says_whether_the_court_kept_the_bytes(kept: bool, size: int, said: str) -> None:
    sha = "ab" * 32
    copy = {"copies": 1, "device_id": "seal-a1", "kept": kept, "reason": "invalid_snapshot", "sha256": sha}
    facts = SnapshotFacts(sha, "seal-a1", None, None, "refused_by_court", refused=[copy | {"size": size}])
    text = _absence(facts, ReportStyles(register_font(find_font(None)))).text
    assert said in text, text
