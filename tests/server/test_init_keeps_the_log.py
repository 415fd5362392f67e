"""``seal-server init --force`` on an existing court keeps what identifies its evidence: the log's origin and key
file (else, on a renamed host, the key's record refuses every checkpoint as ``other_log``), the database, the
pictures' and proofs' places and store, and the key files; and the ``other_log`` refusal says to set the origin
back."""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path

import pytest

from server.cli import main
from server.config import load_settings
from server.core.db import SessionFactory
from server.evidence import log
from server.evidence.checkpoints import LogKey
from server.evidence.errors import CheckpointRefused
from server.evidence.signed_record import record_path
from server.setup.court_dir import init_court_dir
from tests.server.ingest_world import Court, make_court

SECRETS = ("court-command.key", "evidence-log.key", "notice.key", "court-server.mqtt-password")


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    return make_court(session_factory, tmp_path)


def log_key_of(directory: Path) -> LogKey:
    evidence = tomllib.loads((directory / "server.toml").read_text(encoding="utf-8"))["evidence"]
    return LogKey(Path(evidence["log_key_file"]), evidence["log_origin"])


def sign(court: Court, key: LogKey) -> None:
    """One new event, and a checkpoint of it signed (and committed) by ``key``."""
    court.send(court.a, court.a.event())
    with court.session_factory() as session:
        assert log.make_checkpoint(session, key) is not None
        session.commit()


def test_init_force_on_a_renamed_host_keeps_the_origin_and_the_key_signs_on(
    court: Court, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "court"
    monkeypatch.setattr(socket, "gethostname", lambda: "court-old")
    init_court_dir(directory)
    before = log_key_of(directory)
    assert before.origin == "court-old/seal-log"
    sign(court, before)

    monkeypatch.setattr(socket, "gethostname", lambda: "court-new")
    result = init_court_dir(directory, force=True)

    after = log_key_of(directory)
    assert (after.path, after.origin) == (before.path, "court-old/seal-log")
    assert 'evidence.log_origin = "court-old/seal-log"' in result.kept_settings
    sign(court, after)  # before the fix: CheckpointRefused("other_log")


def test_without_server_toml_init_force_writes_the_origin_of_the_key_s_record(
    court: Court, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "court"
    monkeypatch.setattr(socket, "gethostname", lambda: "court-old")
    init_court_dir(directory)
    sign(court, log_key_of(directory))
    (directory / "server.toml").unlink()

    monkeypatch.setattr(socket, "gethostname", lambda: "court-new")
    init_court_dir(directory, force=True)

    assert log_key_of(directory).origin == "court-old/seal-log"
    sign(court, log_key_of(directory))


def test_init_force_keeps_the_settings_that_say_where_the_evidence_and_keys_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "court"
    assert main(["init", str(directory)]) == 0
    own_key = tmp_path / "keys" / "command.key"
    own_key.parent.mkdir()
    own_key.write_bytes((directory / "court-command.key").read_bytes())
    secrets = {name: (directory / name).read_bytes() for name in SECRETS}
    settings_file = directory / "server.toml"
    text = settings_file.read_text(encoding="utf-8")
    for old, new in {
        f'database_url = "sqlite:///{directory / "court.db"}"': 'database_url = "postgresql+psycopg://court@db/court"',
        f'snapshot_dir = "{directory / "snapshots"}"': 'snapshot_dir = "/srv/court/snapshots"',
        f'signing_key_file = "{directory / "court-command.key"}"': f'signing_key_file = "{own_key}"',
        'log_origin = "': 'log_origin = "法院.example/seal-log"  # was "',
        'proof_dir = ""': 'proof_dir = "/srv/court/proofs"',
        'backend = "directory"': 'backend = "s3"',
        'bucket = ""': 'bucket = "court-evidence"',
        'access_key_id = ""': 'access_key_id = "court"',
        'secret_access_key_file = ""': f'secret_access_key_file = "{tmp_path / "s3.secret"}"',
    }.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    settings_file.write_text(text, encoding="utf-8")
    capsys.readouterr()

    assert main(["init", str(directory), "--force", "--http-port", "8090"]) == 0

    out = capsys.readouterr().out
    assert 'kept evidence.log_origin = "法院.example/seal-log"' in out
    settings = load_settings(settings_file, env={})
    assert settings.http.port == 8090  # what --force is for: rewritten
    assert settings.database_url == "postgresql+psycopg://court@db/court"
    assert settings.snapshot_dir == Path("/srv/court/snapshots")
    assert settings.commands.signing_key_file == own_key
    assert settings.evidence.log_origin == "法院.example/seal-log"
    assert settings.evidence.log_key_file == directory / "evidence-log.key"
    assert settings.notices.key_file == directory / "notice.key"
    assert settings.removal.proof_dir == Path("/srv/court/proofs")
    assert (settings.storage.backend, settings.storage.bucket) == ("s3", "court-evidence")
    assert {name: (directory / name).read_bytes() for name in SECRETS} == secrets


def test_init_force_refuses_a_server_toml_it_cannot_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "court"
    assert main(["init", str(directory)]) == 0
    (directory / "server.toml").write_text("[evidence\nlog_origin = 'mine'\n", encoding="utf-8")
    capsys.readouterr()

    assert main(["init", str(directory), "--force"]) != 0

    assert "is not TOML" in capsys.readouterr().err
    assert (directory / "server.toml").read_text(encoding="utf-8") == "[evidence\nlog_origin = 'mine'\n"


def test_the_other_log_refusal_names_the_recorded_origin_to_set_back(court: Court, tmp_path: Path) -> None:
    directory = tmp_path / "court"
    init_court_dir(directory)
    key = log_key_of(directory)
    sign(court, key)

    court.send(court.a, court.a.event())
    with court.session_factory() as session, pytest.raises(CheckpointRefused) as refused:
        log.make_checkpoint(session, LogKey(key.path, "court-new/seal-log"))

    assert refused.value.kind == "other_log"
    assert f"set [evidence] log_origin = {key.origin!r}".replace("'", '"') in str(refused.value)
    assert record_path(key.path).exists()
