"""Settings from TOML: the demo's file, the environment override, refusals with readable reasons."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import load_settings, read_password
from server.errors import ConfigError
from server.notify.webhook import read_secret

#: A file with every section, as an operator might keep it (``seal-server init`` writes one; tests/server/test_init.py
#: reads that back).
DEMO_TOML = """\
database_url = "sqlite:///var/demo/court.db"
snapshot_dir = "var/demo/snapshots"
offline_after_s = 180
[http]
host = "127.0.0.1"
port = 8080
trusted_proxies = []
[mqtt]
host = "127.0.0.1"
port = 1883
username = "court-server"
password_file = "var/demo/court-server.mqtt-password"
tls_ca_file = ""
[alarms]
fold_window_s = 300
[liveness]
check_interval_s = 15
[notify]
webhook_secret_file = "var/demo/webhook-secret"
[auth]
session_ttl_s = 28800
cookie_secure = true
login_max_failures = 5
login_window_s = 300
login_address_max_failures = 20
login_network_max_failures = 50
login_user_max_failures = 100
login_user_window_s = 60
[commands]
signing_key_file = "var/demo/court-command.key"
ttl_s = 600
[broker]
password_file = "/etc/mosquitto/court-seal.passwd"
acl_file = "/etc/mosquitto/court-seal.acl"
pid_file = "/run/mosquitto/mosquitto.pid"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "server.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_documented_example_loads(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, DEMO_TOML), env={})
    assert settings.database_url == "sqlite:///var/demo/court.db"
    assert settings.snapshot_dir == Path("var/demo/snapshots")
    assert settings.http.port == 8080
    assert settings.mqtt.password_file == Path("var/demo/court-server.mqtt-password")
    assert settings.mqtt.tls_ca_file is None
    assert settings.mqtt.client_id == "court-server-ingest"


def test_database_url_from_environment(tmp_path: Path) -> None:
    url = "postgresql+psycopg://court@db.example/court"
    settings = load_settings(write(tmp_path, DEMO_TOML), env={"DATABASE_URL": url})
    assert settings.database_url == url


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda t: t.replace("port = 8080", "port = 70000"), "http.port"),
        (lambda t: t.replace("offline_after_s = 180", "offline_after_s = 1"), "offline_after_s"),
        (lambda t: t + "colour = 'red'\n", "colour"),
        (lambda t: t.replace('username = "court-server"\n', 'username = "court-server"\npassword = "x"\n'), "password"),
        (lambda t: t.replace('password_file = "var/demo/court-server.mqtt-password"\n', ""), "mqtt.password_file"),
        (lambda t: t.replace('database_url = "sqlite:///var/demo/court.db"\n', ""), "database_url"),
    ],
)
def test_invalid_settings_name_the_field(tmp_path: Path, change: object, where: str) -> None:
    path = write(tmp_path, change(DEMO_TOML))  # type: ignore[operator]
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert where in str(info.value)
    assert str(path) in str(info.value)


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "absent.toml", env={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "database_url = "), env={})


def test_read_password(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("s3cret\n")
    assert read_password(path) == "s3cret"
    path.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        read_password(path)
    with pytest.raises(ConfigError, match="cannot read"):
        read_password(tmp_path / "absent")


@pytest.mark.parametrize(
    "content", [b"", b"\n", b"  \n", b"\nsecond-line-holds-it\n", b"\xff\xfe not utf-8\n"], ids=repr
)
def test_password_and_secret_files_are_read_alike(tmp_path: Path, content: bytes) -> None:
    """First line, stripped; an empty first line or an unreadable file is refused with the file's name."""
    path = tmp_path / "secret-file"
    path.write_bytes(content)
    for read in (read_password, read_secret):
        with pytest.raises(ConfigError, match=str(path)):
            read(path)
    path.write_bytes(b"  0123456789abcdef-secret \r\nignored\n")
    assert read_password(path) == read_secret(path) == "0123456789abcdef-secret"


@pytest.mark.parametrize("proof_dir", ["var/demo/snapshots", "var/demo/../demo/snapshots/"])
def test_proofs_may_not_share_the_snapshots_directory(tmp_path: Path, proof_dir: str) -> None:
    """Both stores name a file by its SHA-256: removing an unfiled proof could remove a snapshot of the same bytes."""
    path = write(tmp_path, DEMO_TOML + f'[removal]\nproof_dir = "{proof_dir}"\n')
    with pytest.raises(ConfigError, match="proof_dir must not be snapshot_dir"):
        load_settings(path, env={})
    assert load_settings(write(tmp_path, DEMO_TOML + '[removal]\nproof_dir = "var/demo/proofs"\n'), env={})


@pytest.mark.parametrize(
    ("origin", "reason"),
    [
        ("court\\u0001log", "control character U+0001"),  # was accepted: checkpoints every C2SP verifier refuses
        ("court\\u001flog", "control character U+001F"),
        ("court\\tlog", "control character U+0009"),
        ("court log", "space U+0020"),
        ("court\\u00a0log", "space U+00A0"),
        ("court\\u3000log", "space U+3000"),
        ("court+log", "'+'"),
    ],
)
def test_the_log_origin_is_a_signed_note_key_name(tmp_path: Path, origin: str, reason: str) -> None:
    """The origin names the log's key in every checkpoint it signs (c2sp.org/signed-note: no Unicode spaces, no '+',
    no ASCII control character): a setting that breaks it is refused, naming the key, before any note is signed."""
    path = write(tmp_path, DEMO_TOML + f'[evidence]\nlog_origin = "{origin}"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert "evidence.log_origin" in str(info.value) and reason in str(info.value)
    assert str(path) in str(info.value)
    good = load_settings(write(tmp_path, DEMO_TOML + '[evidence]\nlog_origin = "法院.example/seal-log"\n'), env={})
    assert good.evidence.log_origin == "法院.example/seal-log"
