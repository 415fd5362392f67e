"""``seal-server init DIR``: a court server's directory, ready for ``init-db`` and for Mosquitto.

It holds ``server.toml`` (every setting, described), ``mosquitto.conf`` (:mod:`server.seals.broker_config`), the
systemd units of both (``systemd/``, :mod:`server.setup.systemd_units`) and the secrets, each created with mode 0600:
the server's MQTT password (adopted by the first ``seal-server broker server-account``), the court's command-signing
key, the evidence log's key and the notice key. Mosquitto's password and ACL files are the server's to write (``broker
server-account``, ``seal add``). Every path written into the files is absolute, so the server and Mosquitto may be
started from any directory.
"""

from __future__ import annotations

import os
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from seal_protocol.signing import load_or_create_signing_key
from server.config import HttpSettings
from server.errors import AlreadyExists, UsageError
from server.evidence.errors import CheckpointRefused
from server.evidence.signed_record import SignedRecord, record_path
from server.seals.broker_config import (
    LOCAL_PORT,
    TLS_MAX_CONNECTIONS,
    TLS_PORT,
    BrokerFiles,
    MosquittoConfig,
    TlsListener,
)
from server.seals.broker_files import SERVER_USERNAME, write_private_file
from server.seals.provisioning import new_password
from server.setup.rerun import (
    BrokerListeners,
    Replaced,
    existing_listeners,
    existing_settings,
    flat,
    layered,
    own_values,
    replace_file,
    setting_changes,
)
from server.setup.settings_file import render_settings
from server.setup.systemd_units import BROKER_UNIT, SERVER_UNIT, CourtUnits, primary_group, seal_server_executable

HTTP_PORT = int(HttpSettings.model_fields["port"].get_default())
SETTINGS_HEADER = (
    "Settings of the court server (seal-server), written by `seal-server init`. Every key is here with its "
    "description; check the file with `seal-server check-config --config FILE`. Relative paths are relative to "
    "the directory the server is started in. For PostgreSQL set database_url = "
    '"postgresql+psycopg://user@host/db" here (`seal-server init DIR --force --database-url URL` does, and rewrites '
    "the units): the installed service reads this file only, DATABASE_URL in a shell reaches one command."
)
#: The configuration files and the units hold no secret (they name the files that do).
CONFIG_MODE = 0o644


@dataclass(frozen=True)
class CourtDir:
    """The files of a court server's directory."""

    directory: Path

    @property
    def broker(self) -> BrokerFiles:
        return BrokerFiles(self.directory)

    @property
    def settings_file(self) -> Path:
        return self.directory / "server.toml"

    @property
    def mqtt_password_file(self) -> Path:
        return self.directory / "court-server.mqtt-password"

    @property
    def court_key_file(self) -> Path:
        return self.directory / "court-command.key"

    @property
    def log_key_file(self) -> Path:
        return self.directory / "evidence-log.key"

    @property
    def notice_key_file(self) -> Path:
        return self.directory / "notice.key"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.directory / 'court.db'}"

    @property
    def snapshot_dir(self) -> Path:
        return self.directory / "snapshots"

    @property
    def proof_dir(self) -> Path:
        """The removal proofs' directory: ``[removal] proof_dir``'s default, beside ``snapshot_dir``."""
        return self.directory / "removal-proofs"

    @property
    def tls_dir(self) -> Path:
        return self.directory / "tls"

    @property
    def systemd_dir(self) -> Path:
        return self.directory / "systemd"

    @property
    def broker_unit_file(self) -> Path:
        return self.systemd_dir / BROKER_UNIT

    @property
    def server_unit_file(self) -> Path:
        return self.systemd_dir / SERVER_UNIT


@dataclass(frozen=True)
class InitOptions:
    """What ``init`` was told now; ``None``: not given (a re-run keeps the court's value, a new court the default)."""

    http_port: int | None = None
    mqtt_port: int | None = None
    #: The seals' TLS listener's port.
    mqtt_tls_port: int | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Where to write the server's settings (default: ``server.toml`` in the directory).
    settings_file: Path | None = None
    #: ``[notices] public_base_url``: the address in the notices' QR codes (unset: notices are not printed).
    public_base_url: str | None = None
    #: ``database_url`` (``--database-url``, or ``DATABASE_URL`` in init's environment).
    database_url: str | None = None


@dataclass
class InitResult:
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    #: Files written again with the same text.
    unchanged: list[Path] = field(default_factory=list)
    #: Files written again with other text: the copy of the old one (``<file>.bak``) and what changed in it.
    replaced: list[Replaced] = field(default_factory=list)
    tls: TlsListener | None = None
    #: The ``seal-server`` the server's unit starts.
    seal_server: Path | None = None
    #: The court's own values kept from the existing ``server.toml`` (those a new court's differ from), ``key = value``.
    kept_settings: list[str] = field(default_factory=list)
    #: The settings the existing ``server.toml`` had otherwise, ``key: old → new``.
    changed_settings: list[str] = field(default_factory=list)


def court_settings(
    court: CourtDir,
    *,
    http_port: int = HTTP_PORT,
    mqtt_port: int = LOCAL_PORT,
    public_base_url: str | None = None,
    log_origin: str | None = None,
) -> dict[str, Any]:
    """The settings that differ from the model's defaults for a court server kept in ``court``; the log's origin
    is ``log_origin``, by default this host's name with ``/seal-log``."""
    return {
        "database_url": court.database_url,
        "snapshot_dir": court.snapshot_dir,
        "http": {"port": http_port},
        "mqtt": {
            "host": "127.0.0.1",
            "port": mqtt_port,
            "username": SERVER_USERNAME,
            "password_file": court.mqtt_password_file,
            "tls_ca_file": None,
        },
        "commands": {"signing_key_file": court.court_key_file},
        "evidence": {
            "log_key_file": court.log_key_file,
            "log_origin": log_origin or f"{socket.gethostname()}/seal-log",
        },
        "notices": {"key_file": court.notice_key_file, "public_base_url": public_base_url},
        "broker": {
            "password_file": court.broker.password_file,
            "acl_file": court.broker.acl_file,
            "pid_file": court.broker.pid_file,
        },
    }


def settings_text(
    court: CourtDir,
    *,
    http_port: int = HTTP_PORT,
    mqtt_port: int = LOCAL_PORT,
    public_base_url: str | None = None,
    log_origin: str | None = None,
) -> str:
    """``server.toml`` for a new court server kept in ``court``."""
    values = court_settings(
        court, http_port=http_port, mqtt_port=mqtt_port, public_base_url=public_base_url, log_origin=log_origin
    )
    return render_settings(values, header=SETTINGS_HEADER)


def recorded_origin(log_key_file: Path) -> str | None:
    """The origin of the checkpoints the log key at ``log_key_file`` signed (its record), if it signed any: a court
    directory written again keeps its log's origin even without the ``server.toml`` that named it."""
    try:
        signed = SignedRecord(record_path(log_key_file)).read()
    except CheckpointRefused:
        return None  # unreadable: the server refuses to sign, and says why
    return signed.origin if signed is not None else None


def init_court_dir(directory: Path, options: InitOptions | None = None, *, force: bool = False) -> InitResult:
    """Write a court server's directory; refuse (:class:`AlreadyExists`, nothing written) if a file it would write
    exists, unless ``force``. Even with ``force`` an existing secret is kept (seals and the broker already use it),
    and so is every value of the existing ``server.toml`` and the ports and TLS files of the existing
    ``mosquitto.conf`` that an option of ``options`` does not change (:mod:`server.setup.rerun`); each file replaced
    with other text is copied to ``<file>.bak`` first."""
    options = options or InitOptions()
    court = CourtDir(directory.resolve())
    settings_file = (options.settings_file or court.settings_file).absolute()
    config_files = [settings_file, court.broker.conf_file, court.broker_unit_file, court.server_unit_file]
    secret_files = [court.mqtt_password_file, court.court_key_file, court.log_key_file, court.notice_key_file]
    existing_files = [path for path in config_files + secret_files if path.exists()]
    if existing_files and not force:
        raise AlreadyExists(
            "not overwriting " + ", ".join(map(str, existing_files)) + " (--force rewrites the configuration files, "
            "keeping the secrets, every setting of server.toml and mosquitto.conf's ports and TLS files that no "
            "option given changes, and a copy of each file it changes as FILE.bak)"
        )
    existing = existing_settings(settings_file) if force else {}
    listeners = (existing_listeners(court.broker.conf_file) if force else None) or BrokerListeners()
    tls = _tls_listener(court, options, listeners)
    local_port = options.mqtt_port or listeners.local_port or LOCAL_PORT
    http_port = options.http_port or existing.get("http", {}).get("port") or HTTP_PORT
    _refuse_shared_ports(http=http_port, mqtt=local_port, mqtt_tls=tls.port)
    conf = MosquittoConfig(court.broker, local_port=local_port, tls=tls)
    # The stores' directories are made here, and only here: the server never makes them (an unmounted disk's).
    made = (court.snapshot_dir, court.proof_dir, court.broker.persistence_dir, court.tls_dir, court.systemd_dir)
    for path in (court.directory, *made):
        path.mkdir(mode=0o700, parents=True, exist_ok=True)

    given: dict[str, Any] = {}
    if options.database_url is not None:
        given["database_url"] = options.database_url
    if options.http_port is not None:
        given["http"] = {"port": options.http_port}
    if options.mqtt_port is not None:
        given["mqtt"] = {"port": options.mqtt_port}
    if options.public_base_url is not None:
        given["notices"] = {"public_base_url": options.public_base_url}
    log_key_file = Path(existing.get("evidence", {}).get("log_key_file") or court.log_key_file)
    new_court = court_settings(court, mqtt_port=local_port, log_origin=recorded_origin(log_key_file))
    values = layered(new_court, existing, given)
    settings = render_settings(values, header=SETTINGS_HEADER)
    result = InitResult(tls=tls)
    if existing:
        result.kept_settings = [
            line
            for line in own_values(existing, tomllib.loads(settings_text(court)))
            if line.split(" = ")[0] not in flat(given)
        ]
        result.changed_settings = setting_changes(existing, tomllib.loads(settings))
    database_url = str(values["database_url"])
    units = CourtUnits(
        court.directory, settings_file, seal_server_executable(), conf.user, primary_group(conf.user), database_url
    )
    result.seal_server = units.seal_server
    texts = {
        settings_file: settings,
        court.broker.conf_file: conf.render(),
        court.broker_unit_file: units.broker_unit(),
        court.server_unit_file: units.server_unit(),
    }
    for path, text in texts.items():
        # a password in the database URL: server.toml is for its owner only
        private = path == settings_file and _has_password(database_url)
        replaced = replace_file(path, text, CONFIG_MODE, private=private)
        if not replaced.existed:
            result.written.append(path)
        elif replaced.changed:
            result.replaced.append(replaced)
        else:
            result.unchanged.append(path)
    if court.mqtt_password_file.exists():
        result.kept.append(court.mqtt_password_file)
    else:
        write_private_file(court.mqtt_password_file, new_password() + "\n")
        result.written.append(court.mqtt_password_file)
    # The command key, the evidence log's own key, and the key that signs the notices' QR codes; where the settings
    # name a file of the court's own elsewhere, that file is left as it is.
    named = {
        court.court_key_file: values["commands"]["signing_key_file"],
        court.log_key_file: values["evidence"]["log_key_file"],
        court.notice_key_file: values["notices"]["key_file"],
    }
    for key_file, setting in named.items():
        if setting and _absolute(Path(setting)) != key_file:
            continue
        _key, created = load_or_create_signing_key(key_file)  # mode 0600
        (result.written if created else result.kept).append(key_file)
    return result


def _refuse_shared_ports(**ports: int) -> None:
    """Refuse (:class:`UsageError`, nothing written) two listeners of this machine on one port: the broker's plain
    and TLS listeners, and the API's. Mosquitto would otherwise fail at its start ("Address already in use"), or the
    server at its own."""
    options = {"http": "--http-port", "mqtt": "--mqtt-port", "mqtt_tls": "--mqtt-tls-port"}
    seen: dict[int, str] = {}
    for name, port in ports.items():
        if port in seen:
            both = f"{options[seen[port]]} 与 {options[name]}"
            raise UsageError(
                f"{both} 都是端口 {port}：两个监听不能共用一个端口，请给其中之一另一个端口 / "
                f"{options[seen[port]]} and {options[name]} are both port {port}: two listeners cannot share a port, "
                "give one of them another"
            )
        seen[port] = name


def _has_password(database_url: str) -> bool:
    try:
        return bool(make_url(database_url).password)
    except ArgumentError:
        return False


def _tls_listener(court: CourtDir, options: InitOptions, kept: BrokerListeners) -> TlsListener:
    """The seals' listener: each of its port and files as given now, else as the existing ``mosquitto.conf`` has it,
    else the default; its ``max_connections`` as the existing file has it, else the default."""
    return TlsListener(
        cafile=_absolute(options.tls_ca or kept.cafile or court.tls_dir / "ca.crt"),
        certfile=_absolute(options.tls_cert or kept.certfile or court.tls_dir / "server.crt"),
        keyfile=_absolute(options.tls_key or kept.keyfile or court.tls_dir / "server.key"),
        port=options.mqtt_tls_port or kept.tls_port or TLS_PORT,
        max_connections=kept.tls_max_connections or TLS_MAX_CONNECTIONS,
    )


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))
