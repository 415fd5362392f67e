"""``seal-server init DIR``: a commented ``server.toml`` holding every setting, ``mosquitto.conf``, secrets 0600."""

from __future__ import annotations

import getpass
import grp
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from seal_protocol.signing import load_signing_key, public_key_b64
from server.cli import main
from server.config import Settings, load_settings
from server.evidence.checkpoints import parse_verifier_key
from server.evidence.signed_record import record_path
from server.seals.broker_config import TLS_MAX_CONNECTIONS
from server.seals.broker_files import PBKDF2_ITERATIONS, SERVER_USERNAME
from server.setup.court_dir import CourtDir
from server.setup.systemd_units import (
    BROKER_OPEN_FILES,
    BROKER_UNIT,
    POSTGRESQL_UNIT,
    SERVER_OPEN_FILES,
    SERVER_REQUESTS_STOP_S,
    SERVER_STOP_TIMEOUT_S,
    SERVER_UNIT,
    CourtUnits,
    local_postgresql,
)

SECRET_FILES = ("court-server.mqtt-password", "court-command.key", "evidence-log.key", "notice.key")


def model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= model_keys(annotation, f"{name}.")
        else:
            keys.add(prefix + name)
    return keys


def file_keys(data: dict[str, object], prefix: str = "") -> set[str]:
    keys = set()
    for name, value in data.items():
        keys |= file_keys(value, f"{name}.") if isinstance(value, dict) else {prefix + name}
    return keys


@pytest.fixture
def court(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["init", "court"]) == 0
    return tmp_path / "court"


def test_every_setting_is_written_with_its_description(court: Path) -> None:
    text = (court / "server.toml").read_text(encoding="utf-8")
    assert file_keys(tomllib.loads(text)) == model_keys(Settings)
    settings = load_settings(court / "server.toml", env={})
    for description in (
        Settings.model_fields["offline_after_s"].description,
        Settings.model_fields["mqtt"].description,
    ):
        assert description is not None and f"# {description}" in text
    # Absolute paths, all inside the directory: the server may be started anywhere.
    layout = CourtDir(court)
    assert settings.database_url == f"sqlite:///{court / 'court.db'}"
    assert settings.mqtt.password_file == layout.mqtt_password_file
    assert settings.commands.signing_key_file == layout.court_key_file
    assert settings.evidence.log_key_file == layout.log_key_file
    # The record of the signed checkpoints, beside the key: in the directory the unit's ReadWritePaths= opens.
    assert record_path(layout.log_key_file) == court / "evidence-log.last-checkpoint"
    assert (settings.notices.key_file, settings.notices.public_base_url) == (layout.notice_key_file, None)
    assert (settings.broker.password_file, settings.broker.acl_file, settings.broker.pid_file) == (
        layout.broker.password_file,
        layout.broker.acl_file,
        layout.broker.pid_file,
    )
    assert (settings.mqtt.host, settings.mqtt.port, settings.mqtt.tls_ca_file) == ("127.0.0.1", 1883, None)


def test_mosquitto_conf_is_the_courts(court: Path) -> None:
    lines = (court / "mosquitto.conf").read_text().splitlines()
    for line in (
        "allow_anonymous false",
        f"password_file {court / 'mosquitto.passwd'}",
        f"acl_file {court / 'mosquitto.acl'}",
        f"pid_file {court / 'mosquitto.pid'}",
        "persistence true",
        f"persistence_location {court / 'mosquitto'}/",
        "max_queued_messages 0",
        "max_inflight_messages 1000",
        "max_inflight_bytes 67108864",
        "message_size_limit 8388608",
        "max_packet_size 8519680",
        "listener 1883 127.0.0.1",
        "listener 8883",
        f"cafile {court / 'tls' / 'ca.crt'}",
        f"certfile {court / 'tls' / 'server.crt'}",
        f"keyfile {court / 'tls' / 'server.key'}",
        # sessions (a seal's account may ask for ones that never expire) kept no longer than two weeks
        "persistent_client_expiration 14d",
    ):
        assert line in lines
    # The seals' listener holds a bounded number of connections (Mosquitto 2.0 never closes one that sends nothing):
    # listener options apply to the listener above them.
    assert lines.index("listener 1883 127.0.0.1") < lines.index("listener 8883") < lines.index("max_connections 10000")


def test_secrets_are_private_and_never_overwritten(court: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in SECRET_FILES:
        assert (court / name).stat().st_mode & 0o777 == 0o600
    secrets = {name: (court / name).read_bytes() for name in SECRET_FILES}
    (court / "server.toml").write_text("# the court's own edits\n")
    capsys.readouterr()

    assert main(["init", "court"]) == 1
    assert "not overwriting" in capsys.readouterr().err
    assert (court / "server.toml").read_text() == "# the court's own edits\n"

    assert main(["init", "court", "--force", "--http-port", "8090"]) == 0
    assert "kept" in capsys.readouterr().out
    assert {name: (court / name).read_bytes() for name in SECRET_FILES} == secrets
    assert load_settings(court / "server.toml", env={}).http.port == 8090


def test_the_server_account_takes_the_password_init_wrote(court: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = ["--config", str(court / "server.toml")]
    password = (court / "court-server.mqtt-password").read_text()
    assert main(["init-db", *config]) == 0
    assert main(["broker", "server-account", *config]) == 0
    assert "created with the password in" in capsys.readouterr().out
    assert (court / "court-server.mqtt-password").read_text() == password
    assert (court / "mosquitto.passwd").read_text().startswith(f"{SERVER_USERNAME}:$7$")
    # hashed with Mosquitto's own rounds: every CONNECT naming the account costs the broker one such hash
    assert (court / "mosquitto.passwd").read_text().startswith(f"{SERVER_USERNAME}:$7${PBKDF2_ITERATIONS}$")
    assert PBKDF2_ITERATIONS == 101
    # The account exists now: the same command gives it a new password, written where the server reads it.
    assert main(["broker", "server-account", *config]) == 0
    assert (court / "court-server.mqtt-password").read_text() != password


def test_alembic_says_nothing_at_info(court: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = ["--config", str(court / "server.toml")]
    assert main(["init-db", *config]) == 0
    assert " alembic." not in capsys.readouterr().err  # e.g. "INFO alembic.runtime.migration: Context impl …"
    assert main(["init-db", "--log-level", "debug", *config]) == 0
    assert " alembic.runtime.migration: " in capsys.readouterr().err


def test_log_key_prints_the_verifier_key_that_checks_the_log_s_checkpoints(
    court: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = court / "server.toml"
    capsys.readouterr()
    assert main(["log-key", "--config", str(config)]) == 0
    line = capsys.readouterr().out.strip()
    name, _key_id, _key = parse_verifier_key(line)
    assert name.endswith("/seal-log")
    assert stat.S_IMODE((court / "evidence-log.key").stat().st_mode) == 0o600
    assert main(["log-key", "--config", str(config)]) == 0  # the same key again, never a new one
    assert capsys.readouterr().out.strip() == line


def test_notice_key_prints_the_public_key_of_the_key_init_made(court: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = court / "server.toml"
    capsys.readouterr()
    assert main(["notice-key", "--config", str(config)]) == 0
    line = capsys.readouterr().out.strip()
    assert line == public_key_b64(load_signing_key(court / "notice.key"))
    assert main(["notice-key", "--config", str(config)]) == 0  # the same key again, never a new one
    assert capsys.readouterr().out.strip() == line


def test_init_takes_the_public_address_of_the_notices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "court"), "--public-url", "https://seal.court.example"]) == 0
    settings = load_settings(tmp_path / "court" / "server.toml", env={})
    assert settings.notices.public_base_url == "https://seal.court.example"
    for wrong in ("https://seal.court.example/", "ftp://seal.court.example", "seal.court.example", "https://x/?a=1"):
        with pytest.raises(SystemExit) as exited:
            main(["init", str(tmp_path / "other"), "--public-url", wrong])
        assert exited.value.code == 2
        assert "--public-url" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_the_database_the_readme_s_steps_make_is_the_court_s_alone(
    court: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``init`` then ``init-db`` under a login shell's umask: court.db (password hashes, all evidence) is 0600, and
    so are its -wal and -shm once the server writes (SQLite gives them the main file's mode). They were 0644."""
    old = os.umask(0o022)
    try:
        assert main(["init-db", "--config", str(court / "server.toml")]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((court / "court.db").stat().st_mode) == 0o600


def test_init_as_root_says_the_broker_would_stay_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README runs init as an unprivileged account, whose name the ``user`` line carries (Mosquitto started as
    root drops to it). Run as root, init writes ``user root``: it says so, loudly, on stderr and in the file."""
    assert main(["init", str(tmp_path / "court")]) == 0
    conf = (tmp_path / "court" / "mosquitto.conf").read_text()
    err = capsys.readouterr().err
    account = getpass.getuser()
    assert f"\nuser {account}\n" in conf
    if account == "root":
        assert "WARNING: written by seal-server init run as root" in conf
        assert "seal-server init runs as root" in err and "would keep root" in err
    else:
        assert "WARNING" not in conf and "runs as root" not in err


def unit_values(path: Path) -> dict[str, dict[str, str]]:
    """A unit file's settings by section (each key set once in ours)."""
    return unit_values_of(path.read_text(encoding="utf-8"))


def unit_values_of(text: str) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    section: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = sections.setdefault(line[1:-1], {})
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert key not in section, f"{key} set twice"
            section[key] = value
    return sections


def command_line(value: str) -> list[str]:
    """An ``ExecStart=`` command line, unquoted as systemd does for the paths ours holds."""
    return [word.replace("%%", "%") for word in shlex.split(value.replace("$$", "$"))]


def mosquitto_conf_value(court: Path, key: str) -> str:
    [value] = [
        line.split(" ", 1)[1]
        for line in (court / "mosquitto.conf").read_text().splitlines()
        if line.startswith(f"{key} ")
    ]
    return value


def test_init_writes_the_systemd_units_of_this_court_s_broker_and_server(
    court: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README installs ``court/systemd/*.service`` as they are: absolute paths to this directory and to this
    venv's ``seal-server``, run as the account that ran init, the server after its broker."""
    broker = unit_values(court / "systemd" / BROKER_UNIT)["Service"]
    server_unit = unit_values(court / "systemd" / SERVER_UNIT)
    server = server_unit["Service"]
    settings = load_settings(court / "server.toml", env={})

    # The broker: Mosquitto with the court's mosquitto.conf, forking, and the pid file it writes is the one systemd
    # reads and the one the server signals.
    assert command_line(broker["ExecStart"]) == ["/usr/sbin/mosquitto", "-c", str(court / "mosquitto.conf"), "-d"]
    assert broker["Type"] == "forking"
    # A descriptor per connection: far above systemd's default of 1,024 and above the seals' listener's bound.
    assert int(broker["LimitNOFILE"]) == BROKER_OPEN_FILES > TLS_MAX_CONNECTIONS
    assert Path(broker["PIDFile"]) == Path(mosquitto_conf_value(court, "pid_file")) == settings.broker.pid_file

    # The server: this venv's seal-server (beside its python, not where the python symlink leads), absolute.
    executable, *arguments = command_line(server["ExecStart"])
    assert Path(executable) == Path(sys.executable).parent / "seal-server"
    assert Path(executable).is_absolute() and Path(executable).is_file() and os.access(executable, os.X_OK)
    assert arguments == ["run", "--config", str(court / "server.toml")]
    assert "no seal-server at" not in capsys.readouterr().out
    # started with the broker, not stopped or restarted with it (the ingest reconnects by itself)
    assert "Requires" not in server_unit["Unit"] and "BindsTo" not in server_unit["Unit"]
    assert set(server_unit["Unit"]["Wants"].split()) == {BROKER_UNIT, "network-online.target"}
    # after PostgreSQL (an ordering only), not wanting it: this court's database is SQLite
    assert set(server_unit["Unit"]["After"].split()) == {BROKER_UNIT, "network-online.target", POSTGRESQL_UNIT}
    assert server["Restart"] == "on-failure"
    # docs/deploy.md: systemd's default stop (SIGTERM to the whole control group) is the clean one.
    assert (server["KillMode"], server["TimeoutStopSec"]) == ("control-group", str(SERVER_STOP_TIMEOUT_S))
    # the requests still open are cancelled well before (then the ingest stops, at most 10 s for its worker and
    # 10 s for its receipts), so that a slow client does not hold every restart until the SIGKILL
    assert SERVER_REQUESTS_STOP_S + 2 * 10 <= SERVER_STOP_TIMEOUT_S
    # One client's 1,100 slow connections used up systemd's default soft limit (1,024): every page and the health
    # timed out, "Too many open files". The server has the broker's limit.
    assert int(server["LimitNOFILE"]) == SERVER_OPEN_FILES == BROKER_OPEN_FILES >= 65536

    account = mosquitto_conf_value(court, "user")
    group = grp.getgrgid(pwd.getpwnam(account).pw_gid).gr_name
    database = Path(settings.database_url.removeprefix("sqlite:///"))
    for service in (broker, server):
        assert (service["User"], service["Group"]) == (account, group)
        assert (service["NoNewPrivileges"], service["ProtectSystem"]) == ("yes", "strict")
        # Not "yes": that hides /home, where the README's clone is, and no ReadWritePaths= reopens a path in it.
        assert service["ProtectHome"] == "read-only"
        # Everything either writes is in the directory: the database, the snapshots, the broker's files.
        writable = [Path(path) for path in shlex.split(service["ReadWritePaths"])]
        assert writable[0] == court
        for written in (database, settings.snapshot_dir, settings.broker.password_file, Path(broker["PIDFile"])):
            assert written.is_relative_to(court)
        # A /tmp of its own (the server's exports and uploads; ProtectSystem=strict makes the real one read-only),
        # unless that would hide the directory, as it would the test's, in /tmp: then the real one stays writable.
        if court.is_relative_to("/tmp"):
            assert "PrivateTmp" not in service and writable[1:] == [Path("/tmp"), Path("/var/tmp")]
        else:
            assert service["PrivateTmp"] == "yes" and writable[1:] == []
    for unit in (BROKER_UNIT, SERVER_UNIT):
        assert stat.S_IMODE((court / "systemd" / unit).stat().st_mode) == 0o644


def test_init_rewrites_the_units_only_with_force(court: Path, capsys: pytest.CaptureFixture[str]) -> None:
    unit = court / "systemd" / SERVER_UNIT
    written = unit.read_text()
    unit.write_text("# the court's own edits\n")
    assert main(["init", "court"]) == 1
    assert str(unit) in capsys.readouterr().err
    assert unit.read_text() == "# the court's own edits\n"
    assert main(["init", "court", "--force"]) == 0
    assert unit.read_text() == written


def test_a_court_outside_tmp_gets_a_private_tmp() -> None:
    clone = Path("/home/clerk/court-seal")
    units = CourtUnits(
        clone / "court", clone / "court/server.toml", clone / ".venv/bin/seal-server", "clerk", "clerk", "sqlite://"
    )
    for text in (units.broker_unit(), units.server_unit()):
        lines = text.splitlines()
        assert {"PrivateTmp=yes", "ProtectHome=read-only", f"ReadWritePaths={clone / 'court'}"} <= set(lines)


@pytest.mark.parametrize(
    ("database_url", "local"),
    [
        ("postgresql+psycopg:///court", True),  # libpq's default Unix socket
        ("postgresql+psycopg://seal@/court?host=/var/run/postgresql", True),
        ("postgresql+psycopg://seal@localhost/court", True),
        ("postgresql+psycopg://seal:pw@127.0.0.1:5432/court", True),
        ("postgresql://seal@[::1]/court", True),
        ("postgresql+psycopg://seal@/court?host=db.court.example&host=127.0.0.1", True),
        ("postgresql+psycopg://seal@db.court.example/court", False),
        ("postgresql+psycopg://seal@10.0.0.7/court", False),
        ("postgresql+psycopg://seal@/court?host=db.court.example", False),
        ("sqlite:////srv/court/court.db", False),
        ("not a url", False),
    ],
)
def test_postgresql_on_this_machine(database_url: str, local: bool) -> None:
    assert local_postgresql(database_url) is local


def test_the_server_wants_a_postgresql_on_this_machine(court: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A court that moved its database to PostgreSQL here gets, from ``init --force`` (which keeps its database_url),
    a server unit that starts PostgreSQL, not only one ordered after it; still not one stopped with it."""
    settings = court / "server.toml"
    url = "postgresql+psycopg://seal@/court?host=/var/run/postgresql"
    text = settings.read_text(encoding="utf-8")
    settings.write_text(
        "\n".join(f'database_url = "{url}"' if line.startswith("database_url") else line for line in text.splitlines())
    )
    assert main(["init", "court", "--force"]) == 0
    unit = unit_values(court / "systemd" / SERVER_UNIT)["Unit"]
    assert set(unit["Wants"].split()) == {BROKER_UNIT, "network-online.target", POSTGRESQL_UNIT}
    assert set(unit["After"].split()) == {BROKER_UNIT, "network-online.target", POSTGRESQL_UNIT}
    assert "Requires" not in unit and "BindsTo" not in unit
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:  # Wants= of a unit this machine lacks is no error either (systemd.unit(5))
        path = str(court / "systemd" / SERVER_UNIT)
        verify = subprocess.run([analyze, "verify", path], capture_output=True, text=True, timeout=60)
        assert verify.returncode == 0 and "court-seal" not in verify.stderr, verify.stderr

    remote = "postgresql+psycopg://seal@db.court.example/court"
    units = CourtUnits(court, settings, Path(sys.executable), "clerk", "clerk", remote)
    remote_unit = unit_values_of(units.server_unit())["Unit"]
    assert POSTGRESQL_UNIT not in remote_unit["Wants"].split() and POSTGRESQL_UNIT in remote_unit["After"].split()


@pytest.mark.parametrize("name", ["court", "a court 100%"])
def test_systemd_analyze_verifies_the_units(tmp_path: Path, name: str) -> None:
    """``systemd-analyze verify`` parses the units as systemd would and checks that ExecStart's programs exist. A
    directory with a blank and a ``%`` (systemd's specifiers; verify does not expand them) is quoted and escaped."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("no systemd-analyze")
    court = tmp_path / name
    assert main(["init", str(court)]) == 0
    units = [court / "systemd" / BROKER_UNIT, court / "systemd" / SERVER_UNIT]
    verify = subprocess.run([analyze, "verify", *map(str, units)], capture_output=True, text=True, timeout=60)
    complaints = [line for line in verify.stderr.splitlines() if "court-seal" in line]
    assert verify.returncode == 0 and not complaints, verify.stderr
    assert int(unit_values(units[1])["Service"]["LimitNOFILE"]) == SERVER_OPEN_FILES  # verified above with it
    broker = unit_values(units[0])["Service"]
    assert command_line(broker["ExecStart"]) == ["/usr/sbin/mosquitto", "-c", str(court / "mosquitto.conf"), "-d"]
    assert broker["PIDFile"].replace("%%", "%") == mosquitto_conf_value(court, "pid_file")
