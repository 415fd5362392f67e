"""``seal-server init DIR --force`` run again on a court's directory, as the README has a court do after moving its
database: every value the court set in ``server.toml``, and ``mosquitto.conf``'s ports and TLS files, stay unless an
option given now changes them; a file it changes is copied to ``FILE.bak`` first, and each change is printed. And
``init`` records the database URL (``--database-url`` or ``DATABASE_URL``) in ``server.toml``, which the installed
service reads."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from server.cli import main
from server.config import load_settings
from server.setup.systemd_units import POSTGRESQL_UNIT, SERVER_UNIT

PG_URL = "postgresql+psycopg://court@localhost/court"


def edit(path: Path, replacements: dict[str, str]) -> None:
    text = path.read_text(encoding="utf-8")
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    path.write_text(text, encoding="utf-8")


def conf_lines(court: Path) -> list[str]:
    return (court / "mosquitto.conf").read_text(encoding="utf-8").splitlines()


def wants(court: Path) -> list[str]:
    """The server unit's ``Wants=``."""
    unit = (court / "systemd" / SERVER_UNIT).read_text(encoding="utf-8")
    return next(line for line in unit.splitlines() if line.startswith("Wants=")).removeprefix("Wants=").split()


@pytest.fixture
def court(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    """The reviewer's court: ports and TLS files of its own, a public address, then edits by hand."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    options = ["--mqtt-port", "18831", "--mqtt-tls-port", "18884", "--http-port", "8099", "--public-url"]
    tls = ["--tls-cert", "/srv/x.crt", "--tls-key", "/srv/x.key", "--tls-ca", "/srv/ca.crt"]
    assert main(["init", "court", *options, "https://seal.court.example", *tls]) == 0
    directory = tmp_path / "court"
    edit(
        directory / "server.toml",
        {
            "trusted_proxies = []": '# our nginx\ntrusted_proxies = ["127.0.0.1"]',
            "session_ttl_s = 28800": "session_ttl_s = 3600",
            'webhook_secret_file = ""': 'webhook_secret_file = "/etc/x"',
            f'database_url = "sqlite:///{directory / "court.db"}"': f'database_url = "{PG_URL}"',
        },
    )
    capsys.readouterr()
    return directory


def test_init_force_keeps_every_setting_and_the_broker_s_ports_and_tls_files(
    court: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before the fix ``init --force`` kept only the database, evidence and key settings: trusted_proxies, the
    ports, the session's lifetime, the webhook's secret and public_base_url (no notice printed) went back to the
    defaults, and mosquitto.conf back to 1883/8883 and court/tls/, with no copy of either."""
    toml_before = (court / "server.toml").read_text(encoding="utf-8")
    conf_before = (court / "mosquitto.conf").read_text(encoding="utf-8")

    assert main(["init", "court", "--force"]) == 0

    out = capsys.readouterr().out
    settings = load_settings(court / "server.toml", env={})
    assert [str(proxy) for proxy in settings.http.trusted_proxies] == ["127.0.0.1/32"]
    assert (settings.http.port, settings.mqtt.port) == (8099, 18831)
    assert settings.auth.session_ttl_s == 3600
    assert str(settings.notices.public_base_url).rstrip("/") == "https://seal.court.example"
    assert settings.database_url == PG_URL
    assert settings.notify.webhook_secret_file == Path("/etc/x")
    lines = conf_lines(court)
    for line in ("listener 18831 127.0.0.1", "listener 18884", "cafile /srv/ca.crt", "certfile /srv/x.crt"):
        assert line in lines
    assert "keyfile /srv/x.key" in lines
    assert (court / "mosquitto.conf").read_text(encoding="utf-8") == conf_before
    assert f"unchanged {court / 'mosquitto.conf'}" in out
    # the only thing lost is the court's comment, and that is in the copy
    assert (court / "server.toml.bak").read_text(encoding="utf-8") == toml_before
    assert f"changed {court / 'server.toml'} (the old one is {court / 'server.toml.bak'})" in out
    assert 'kept http.trusted_proxies = ["127.0.0.1"]' in out
    assert 'kept notices.public_base_url = "https://seal.court.example"' in out
    assert "→" not in out  # no setting changed
    assert POSTGRESQL_UNIT in wants(court)


def test_a_broker_config_edited_by_hand_keeps_its_ports(court: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The reviewer moved the listeners by hand (1883 was taken): a re-run keeps them, and the bound of the seals'
    listener's connections set there."""
    edit(court / "mosquitto.conf", {"listener 18831 127.0.0.1": "listener 18830 127.0.0.1"})
    edit(court / "mosquitto.conf", {"listener 18884": "listener 18883"})
    edit(court / "mosquitto.conf", {"max_connections 10000": "max_connections 3000"})

    assert main(["init", "court", "--force"]) == 0

    lines = conf_lines(court)
    assert {"listener 18830 127.0.0.1", "listener 18883", "max_connections 3000"} <= set(lines)
    assert lines.index("listener 18883") < lines.index("max_connections 3000")


def test_an_option_given_now_changes_its_value_says_so_and_keeps_a_copy(
    court: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "court", "--force", "--http-port", "8100", "--mqtt-tls-port", "9999"]) == 0

    out = capsys.readouterr().out
    assert "  http.port: 8099 → 8100" in out
    assert "  -listener 18884" in out and "  +listener 9999" in out
    assert load_settings(court / "server.toml", env={}).http.port == 8100
    assert "port = 8099" in (court / "server.toml.bak").read_text(encoding="utf-8")
    assert "listener 18884" in (court / "mosquitto.conf.bak").read_text(encoding="utf-8").splitlines()
    assert {"listener 9999", "cafile /srv/ca.crt", "listener 18831 127.0.0.1"} <= set(conf_lines(court))
    assert stat.S_IMODE((court / "mosquitto.conf.bak").stat().st_mode) == 0o644


def test_a_server_toml_naming_what_is_not_a_setting_is_refused_and_left_alone(
    court: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(court / "server.toml", {"session_ttl_s = 3600": "session_ttl_s = 3600\nsesion_ttl = 60"})
    before = (court / "server.toml").read_text(encoding="utf-8")

    assert main(["init", "court", "--force"]) != 0

    assert "auth.sesion_ttl" in capsys.readouterr().err
    assert (court / "server.toml").read_text(encoding="utf-8") == before
    assert not (court / "server.toml.bak").exists()


def test_init_records_database_url_from_the_environment_for_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """README: ``DATABASE_URL`` or ``database_url``. Before the fix the service, which reads server.toml only, ran
    on a new SQLite file while every command of the README's steps had used PostgreSQL."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", PG_URL)

    assert main(["init", "court"]) == 0

    assert "database_url from $DATABASE_URL" in capsys.readouterr().out
    assert load_settings(tmp_path / "court" / "server.toml", env={}).database_url == PG_URL
    assert POSTGRESQL_UNIT in wants(tmp_path / "court")


def test_database_url_option_moves_a_court_and_a_password_makes_server_toml_private(
    court: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql+psycopg://court:s3cret@db.court.example/court"

    assert main(["init", "court", "--force", "--database-url", url]) == 0

    out = capsys.readouterr().out
    assert f'  database_url: "{PG_URL}" → "postgresql+psycopg://court:***@db.court.example/court"' in out
    assert "s3cret" not in out  # masked, as check-config shows it
    assert main(["init", "court", "--force"]) == 0  # kept: printed masked too
    out = capsys.readouterr().out
    assert 'kept database_url = "postgresql+psycopg://court:***@db.court.example/court"' in out and "s3cret" not in out
    assert load_settings(court / "server.toml", env={}).database_url == url
    assert stat.S_IMODE((court / "server.toml").stat().st_mode) == 0o600
    assert stat.S_IMODE((court / "server.toml.bak").stat().st_mode) == 0o600
    assert load_settings(court / "server.toml", env={}).http.trusted_proxies  # still kept


def test_a_database_url_that_is_not_one_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as refused:
        main(["init", "court", "--database-url", "court.db"])
    assert refused.value.code == 2
    assert not (tmp_path / "court").exists()
