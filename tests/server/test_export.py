"""The export's edges: the download route (the judge and the clerks of the case; audited as the user), and
``seal-server export`` on the command line."""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from seal_verify import verify_bundle
from server.app import create_app
from server.audit.models import AuditEntry
from server.auth.access import Role
from server.cli import main
from server.core.db import SessionFactory
from server.export.models import EvidenceExport
from tests.server.auth_helpers import add_user, bearer
from tests.server.helpers import CASE_A, CASE_B
from tests.server.test_cli import write_config
from tests.verify.world import build_world


def test_the_judge_and_a_clerk_download_a_bundle_that_verifies_others_do_not(
    session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    world = build_world(session_factory, database_url, tmp_path)
    add_user(session_factory, "judge-a", Role.JUDGE, (CASE_A,))
    add_user(session_factory, "judge-b", Role.JUDGE, (CASE_B,))
    add_user(session_factory, "officer-a", Role.OFFICER, (CASE_A,))
    add_user(session_factory, "clerk", Role.CLERK)
    url = f"/api/cases/{quote(CASE_A, safe='')}/export.zip"
    with TestClient(create_app(world.settings, with_ingest=False)) as client:
        answer = client.get(url, headers=bearer(session_factory, "judge-a"))
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/zip"
        verdict = verify_bundle(io.BytesIO(answer.content), log_key=world.log_key.verifier())
        assert verdict.ok, verdict.text()
        assert verdict.facts["exported_by"] == "judge-a"
        assert client.get(url, headers=bearer(session_factory, "clerk")).status_code == 200
        assert client.get(url, headers=bearer(session_factory, "officer-a")).status_code == 403
        assert client.get(url, headers=bearer(session_factory, "judge-b")).status_code == 404
        assert client.get(url).status_code == 401
        naive = client.get(url, params={"from": "2026-01-01T00:00:00"}, headers=bearer(session_factory, "clerk"))
        assert naive.status_code == 422
        future = client.get(url, params={"from": "2099-01-01T00:00:00Z"}, headers=bearer(session_factory, "clerk"))
        assert future.status_code == 200 and verify_bundle(io.BytesIO(future.content)).ok
    with session_factory() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action == "evidence.export")).all()
        exports = session.scalars(select(EvidenceExport)).all()
    assert [e.actor for e in entries] == ["judge-a", "clerk", "clerk"]
    assert all(e.case_no == CASE_A and e.details["checkpoint_size"] > 0 for e in entries)
    assert [x.events for x in exports] == [9, 9, 0]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_seal_server_export_writes_the_bundle(
    session_factory: SessionFactory, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = build_world(session_factory, database_url, tmp_path)
    config = write_config(tmp_path, database_url)
    log_key = world.settings.evidence.log_key_file
    config.write_text(
        config.read_text(encoding="utf-8")
        + f'[evidence]\nlog_key_file = "{log_key}"\nlog_origin = "{world.settings.evidence.log_origin}"\n',
        encoding="utf-8",
    )
    target = tmp_path / "out" / "case.zip"
    args = ["export", CASE_A.replace("(", "（").replace(")", "）"), "-o", str(target), "--config", str(config)]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert f"{target}: case {CASE_A}, 9 events, 3 snapshots" in printed.out
    assert "export: verifying the staged files (seal-verify)" in printed.err
    verdict = verify_bundle(target, log_key=world.log_key.verifier())
    assert verdict.ok and verdict.facts["exported_by"].startswith("cli:")
    assert [p.name for p in target.parent.iterdir()] == ["case.zip"]  # no temporary file left behind
    assert main(["export", "(2020)苏0214执9号", "-o", str(tmp_path / "x.zip"), "--config", str(config)]) == 1
    assert not (tmp_path / "x.zip").exists()
    late = ["--from", "2026-12-01T08:00", "--to", "2026-12-01T07:00"]
    assert main([*args, *late]) == 1


def test_the_record_of_exports_is_append_only(
    session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    from sqlalchemy import delete, update
    from sqlalchemy.exc import DBAPIError

    world = build_world(session_factory, database_url, tmp_path)
    world.export(CASE_A, tmp_path / "case.zip")
    for change in (update(EvidenceExport).values(checkpoint_size=1), delete(EvidenceExport)):
        with session_factory() as session, pytest.raises(DBAPIError, match="append-only"):
            session.execute(change)
            session.flush()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_seal_server_export_of_a_bundle_that_does_not_verify_exits_1_and_keeps_it(
    session_factory: SessionFactory, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A snapshot whose bytes were changed in the store: the bundle is written, with its report, and the command
    says so; the review found it exited 0 anyway, so a script (a clerk's batch) could not tell."""
    world = build_world(session_factory, database_url, tmp_path)
    config = write_config(tmp_path, database_url)
    config.write_text(
        config.read_text(encoding="utf-8")
        + f'[evidence]\nlog_key_file = "{world.settings.evidence.log_key_file}"\n'
        + f'log_origin = "{world.settings.evidence.log_origin}"\n',
        encoding="utf-8",
    )
    snapshot = next(path for path in world.settings.snapshot_dir.rglob("*") if path.is_file())
    snapshot.write_bytes(b"other bytes than the seal signed")
    target = tmp_path / "case.zip"
    assert main(["export", CASE_A, "-o", str(target), "--config", str(config)]) == 1
    printed = capsys.readouterr()
    assert "WARNING: the bundle does not verify; see report.pdf" in printed.out
    assert f"{target}: case {CASE_A}" in printed.out
    assert target.is_file() and not verify_bundle(target, log_key=world.log_key.verifier()).ok
