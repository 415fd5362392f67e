"""A directory store's directory is made when the court is set up (``seal-server init``), never by a write: with the
snapshots' disk not mounted, a picture is not written to a directory made again on the disk below (where it would be
hidden once the disk is mounted over it) — the ingest quarantines it unreceipted, and the seal sends it again."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest

from seal_protocol import EventType, snapshot_topic
from server.cli import main
from server.config import load_settings
from server.core.db import SessionFactory
from server.core.files import DirectoryObjects
from server.core.metrics import IngestMetrics
from server.errors import ConfigError, ContentStoreUnavailable
from server.evidence.snapshot_files import SnapshotStore
from server.ingest.ingestor import Ingestor
from server.ingest.results import Outcome, Reason
from server.stores import Stores
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A, SimulatedSeal, jpeg_bytes, message, register


def test_a_directory_store_never_makes_its_directory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mount_point = tmp_path / "mnt"  # the disk's mount point, its disk not mounted: empty
    mount_point.mkdir()
    directory = mount_point / "snapshots"
    objects = DirectoryObjects(directory)
    with caplog.at_level(logging.ERROR):
        for attempt in (
            lambda: objects.put_once("a.jpg", b"picture"),
            lambda: objects.open("a.jpg"),
            lambda: objects.size("a.jpg"),
            objects.check,
        ):
            with pytest.raises(ContentStoreUnavailable, match="does not exist"):
                attempt()
    assert list(mount_point.iterdir()) == []
    assert any(str(directory) in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)

    directory.write_text("not a directory")
    with pytest.raises(ContentStoreUnavailable, match="is not a directory"):
        objects.put_once("a.jpg", b"picture")
    directory.unlink()

    directory.mkdir()  # mounted
    objects.check()
    assert objects.open("a.jpg") is None and objects.size("a.jpg") is None  # one object missing: just missing
    assert objects.put_once("a.jpg", b"picture") and objects.size("a.jpg") == 7


def test_the_ingest_quarantines_a_picture_unreceipted_while_the_snapshots_are_away(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    directory = tmp_path / "mnt" / "snapshots"
    directory.parent.mkdir()
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshots=SnapshotStore(DirectoryObjects(directory)))
    picture = jpeg_bytes(shade=40)
    sha = hashlib.sha256(picture).hexdigest()
    topic = snapshot_topic(seal.device_id, sha)
    ingestor.ingest([message(seal.event_topic, seal.event(EventType.INTRUSION, {"armed": True, "snapshots": [sha]}))])

    [away] = ingestor.ingest([message(topic, picture)])

    assert (away.outcome, away.reason) == (Outcome.QUARANTINED, Reason.STORAGE_ERROR)
    assert not directory.exists()
    directory.mkdir()  # the disk mounted again: the seal's next attempt is stored
    [stored] = ingestor.ingest([message(topic, picture)])
    assert stored.outcome is Outcome.SNAPSHOT
    assert (directory / f"{sha}.jpg").read_bytes() == picture


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("away", ["snapshot_dir", "proof_dir"])
def test_the_server_does_not_start_without_a_store_s_directory(database_url: str, tmp_path: Path, away: str) -> None:
    settings = make_settings(database_url, tmp_path)
    Stores.from_settings(settings).check()
    directory: Path = getattr(settings, away)
    directory.rmdir()
    with pytest.raises(ConfigError, match="mounted") as refused:
        Stores.from_settings(settings).check()
    assert str(directory) in str(refused.value)
    assert not directory.exists()


def test_init_makes_both_stores_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["init", "court"]) == 0
    settings = load_settings(tmp_path / "court" / "server.toml", env={})
    assert settings.snapshot_dir.is_dir() and settings.proof_dir.is_dir()
    Stores.from_settings(settings).check()


def test_init_db_makes_a_store_s_directory_an_older_court_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upgrade's step: a court set up before `init` made ``removal-proofs/`` gets it from ``init-db``."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["init", "court"]) == 0
    config = tmp_path / "court" / "server.toml"
    settings = load_settings(config, env={})
    settings.proof_dir.rmdir()
    with pytest.raises(ConfigError):
        Stores.from_settings(settings).check()
    assert main(["init-db", "--config", str(config)]) == 0
    assert settings.proof_dir.is_dir() and settings.snapshot_dir.is_dir()
    Stores.from_settings(settings).check()
