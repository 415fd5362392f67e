"""An export is recorded only once its bundle is in place, and is refused while a store of the evidence is away:
no ``evidence_exports`` row nor ``evidence.export`` audit entry names a bundle that is not there, and no bundle calls
every picture lost because the snapshots' disk is not mounted."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from seal_verify import verify_bundle
from server.app import create_app
from server.audit.models import AuditEntry
from server.auth.access import Role
from server.cli import main
from server.core.db import SessionFactory
from server.export.errors import StoreAway
from server.export.models import EvidenceExport
from tests.server.auth_helpers import add_user, bearer
from tests.server.helpers import CASE_A
from tests.server.test_cli import write_config
from tests.verify.world import CourtWorld, build_world

ON_SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _config(world: CourtWorld, tmp_path: Path, database_url: str) -> Path:
    config = write_config(tmp_path, database_url)
    evidence = world.settings.evidence
    config.write_text(
        config.read_text(encoding="utf-8")
        + f'[evidence]\nlog_key_file = "{evidence.log_key_file}"\nlog_origin = "{evidence.log_origin}"\n',
        encoding="utf-8",
    )
    return config


def _recorded(session_factory: SessionFactory) -> tuple[list[str], list[str]]:
    """The exports recorded: the manifests' SHA-256s of ``evidence_exports`` and of the audit entries."""
    with session_factory() as session:
        rows = [e.manifest_sha256 for e in session.scalars(select(EvidenceExport))]
        query = select(AuditEntry).where(AuditEntry.action == "evidence.export")
        audited = [e.details["manifest_sha256"] for e in session.scalars(query)]
    return rows, audited


@ON_SQLITE
def test_an_export_to_a_directory_is_refused_and_not_recorded(
    session_factory: SessionFactory, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = build_world(session_factory, database_url, tmp_path)
    config = _config(world, tmp_path, database_url)
    target = tmp_path / "out" / "case.zip"
    target.mkdir(parents=True)
    (target / "kept").write_text("a file of the directory")

    assert main(["export", CASE_A, "-o", str(target), "--config", str(config)]) == 1

    assert "it is a directory" in capsys.readouterr().err
    assert _recorded(session_factory) == ([], [])
    assert [p.name for p in target.parent.iterdir()] == ["case.zip"]  # no temporary file left
    assert [p.name for p in target.iterdir()] == ["kept"]


def test_an_export_whose_record_cannot_be_committed_leaves_no_bundle(
    session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    """The bundle is in place before the export is recorded; if the record fails, the bundle is removed again."""
    world = build_world(session_factory, database_url, tmp_path)
    _refuse_export_records(session_factory, database_url)
    target = tmp_path / "out" / "case.zip"

    with pytest.raises(Exception, match="refused by the test"):
        world.export(CASE_A, target)

    assert _recorded(session_factory) == ([], [])
    assert list(target.parent.iterdir()) == []


def test_a_reexport_whose_record_fails_keeps_the_recorded_bundle(
    session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    """A bundle recorded before, at the target's path, is put back if the re-export to that path is not recorded."""
    world = build_world(session_factory, database_url, tmp_path)
    target = tmp_path / "out" / "case.zip"
    world.export(CASE_A, target)
    first, recorded = target.read_bytes(), _recorded(session_factory)
    _refuse_export_records(session_factory, database_url)

    with pytest.raises(Exception, match="refused by the test"):
        world.export(CASE_A, target)

    assert target.read_bytes() == first and _recorded(session_factory) == recorded
    assert [p.name for p in target.parent.iterdir()] == ["case.zip"]  # nothing kept aside, no temporary file
    assert verify_bundle(target, log_key=world.log_key.verifier()).ok


@ON_SQLITE
def test_a_reexport_whose_record_fails_keeps_the_recorded_bundle_without_hard_links(
    session_factory: SessionFactory, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a filesystem without hard links (a FAT or exFAT stick), the recorded bundle is copied aside instead."""
    world = build_world(session_factory, database_url, tmp_path)
    target = tmp_path / "out" / "case.zip"
    world.export(CASE_A, target)
    first, recorded = target.read_bytes(), _recorded(session_factory)
    _refuse_export_records(session_factory, database_url)

    def no_link(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    with pytest.raises(Exception, match="refused by the test"):
        world.export(CASE_A, target)

    assert target.read_bytes() == first and _recorded(session_factory) == recorded
    assert [p.name for p in target.parent.iterdir()] == ["case.zip"]


def test_a_recorded_reexport_replaces_the_bundle_and_keeps_nothing_aside(
    session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    world = build_world(session_factory, database_url, tmp_path)
    target = tmp_path / "out" / "case.zip"
    world.export(CASE_A, target)
    second = world.export(CASE_A, target)
    with zipfile.ZipFile(target) as bundle:
        manifest = hashlib.sha256(bundle.read("manifest.json")).hexdigest()
    rows, audited = _recorded(session_factory)
    assert manifest == second.manifest_sha256 and rows[-1] == audited[-1] == manifest and len(rows) == 2
    assert [p.name for p in target.parent.iterdir()] == ["case.zip"]


def test_a_recorded_export_names_the_bundle_in_place(
    session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    world = build_world(session_factory, database_url, tmp_path)
    target = tmp_path / "case.zip"
    result = world.export(CASE_A, target)
    with zipfile.ZipFile(target) as bundle:
        manifest = hashlib.sha256(bundle.read("manifest.json")).hexdigest()
    assert _recorded(session_factory) == ([manifest], [manifest]) and result.manifest_sha256 == manifest


@ON_SQLITE
@pytest.mark.parametrize("away", ["snapshot_dir", "proof_dir"])
def test_the_command_refuses_to_export_while_a_store_s_directory_is_away(
    session_factory: SessionFactory,
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    away: str,
) -> None:
    world = build_world(session_factory, database_url, tmp_path)
    config = _config(world, tmp_path, database_url)
    directory: Path = getattr(world.settings, away)
    directory.rename(directory.with_name("unmounted"))  # the disk not mounted: no directory there
    target = tmp_path / "out" / "case.zip"

    assert main(["export", CASE_A, "-o", str(target), "--config", str(config)]) == 1

    err = capsys.readouterr().err
    assert "cannot be used" in err and str(directory) in err and "nothing recorded" in err
    assert not target.exists() and _recorded(session_factory) == ([], [])
    assert not directory.exists()  # not made again on the disk below


def test_the_download_is_refused_with_503_while_the_snapshots_are_away(
    session_factory: SessionFactory, database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world = build_world(session_factory, database_url, tmp_path)
    add_user(session_factory, "judge-a", Role.JUDGE, (CASE_A,))
    snapshots = world.settings.snapshot_dir
    snapshots.rename(snapshots.with_name("unmounted"))
    url = f"/api/cases/{quote(CASE_A, safe='')}/export.zip"
    with TestClient(create_app(world.settings, with_ingest=False)) as client, caplog.at_level(logging.ERROR):
        answer = client.get(url, headers=bearer(session_factory, "judge-a"))
    assert answer.status_code == 503, answer.text
    assert str(snapshots) not in answer.text  # the store's address stays in the log
    assert any(str(snapshots) in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert _recorded(session_factory) == ([], [])
    assert not snapshots.exists()


@ON_SQLITE
def test_the_service_refuses_while_the_snapshots_are_away_and_one_missing_picture_is_still_lost(
    session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    world = build_world(session_factory, database_url, tmp_path)
    snapshots = world.settings.snapshot_dir
    snapshots.rename(tmp_path / "unmounted")
    with pytest.raises(StoreAway, match="store of snapshots"):
        world.export(CASE_A, tmp_path / "away.zip")
    assert not (tmp_path / "away.zip").exists() and _recorded(session_factory) == ([], [])

    (tmp_path / "unmounted").rename(snapshots)  # mounted again; one picture's file gone from it
    gone = sorted(snapshots.iterdir())[0]
    gone.unlink()
    target = tmp_path / "case.zip"
    world.export(CASE_A, target)
    with zipfile.ZipFile(target) as bundle:
        lines = [json.loads(line) for line in bundle.read("snapshots.jsonl").splitlines()]
    lost = [line["sha256"] for line in lines if line["absent_reason"] == "lost"]
    assert lost == [gone.name.removesuffix(".jpg")]
    assert not verify_bundle(target, log_key=world.log_key.verifier()).ok  # a lost picture fails, as before


def _refuse_export_records(session_factory: SessionFactory, database_url: str) -> None:
    """Make the database refuse every row of ``evidence_exports`` (a trigger), as a full or broken table would."""
    with session_factory() as session:
        if database_url.startswith("postgresql"):
            session.execute(
                text(
                    "CREATE FUNCTION refuse_export() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql"
                )
            )
            session.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON evidence_exports FOR EACH ROW "
                    "EXECUTE FUNCTION refuse_export()"
                )
            )
        else:
            session.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON evidence_exports "
                    "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                )
            )
        session.commit()
