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

from seal_protocol.signing import load_or_create_signing_key
from server.config import HttpSettings
from server.errors import AlreadyExists, ConfigError
from server.evidence.errors import CheckpointRefused
from server.evidence.signed_record import SignedRecord, record_path
from server.seals.broker_config import LOCAL_PORT, TLS_PORT, BrokerFiles, MosquittoConfig, TlsListener
from server.seals.broker_files import SERVER_USERNAME, write_private_file
from server.seals.provisioning import new_password
from server.setup.settings_file import render_settings, toml_value
from server.setup.systemd_units import BROKER_UNIT, SERVER_UNIT, CourtUnits, primary_group, seal_server_executable

HTTP_PORT = int(HttpSettings.model_fields["port"].get_default())
#: The configuration files and the units hold no secret (they name the files that do).
CONFIG_MODE = 0o644
#: The settings of an existing ``server.toml`` that ``init --force`` keeps: where the court's database, evidence
#: (pictures, proof files, their store) and keys are, and the origin its log key signs under. Rewritten from the
#: defaults, they would silently leave the court's evidence behind, make new keys the seals and the published
#: verifier key do not know, or stop the log key signing (a checkpoint record of another origin: ``other_log``).
KEPT_SETTINGS: tuple[tuple[str, ...], ...] = (
    ("database_url",),
    ("snapshot_dir",),
    ("commands", "signing_key_file"),
    ("evidence", "log_key_file"),
    ("evidence", "log_origin"),
    ("notices", "key_file"),
    ("removal", "proof_dir"),
    ("storage",),  # the whole section: the store the pictures and proof files are in
)


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
    http_port: int = HTTP_PORT
    mqtt_port: int = LOCAL_PORT
    #: The seals' TLS listener; ``None``: none at all (the demo's broker).
    mqtt_tls_port: int | None = TLS_PORT
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Where to write the server's settings (default: ``server.toml`` in the directory).
    settings_file: Path | None = None
    #: ``[notices] public_base_url``: the address in the notices' QR codes (unset: notices are not printed).
    public_base_url: str | None = None


@dataclass
class InitResult:
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    tls: TlsListener | None = None
    #: The ``seal-server`` the server's unit starts.
    seal_server: Path | None = None
    #: The settings kept from the existing ``server.toml`` (``--force``: :data:`KEPT_SETTINGS`), as ``key = value``.
    kept_settings: list[str] = field(default_factory=list)


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
    kept: dict[str, Any] | None = None,
) -> str:
    """``server.toml`` for a court server kept in ``court``; ``kept`` (:func:`settings_to_keep`) overrides the values
    written for a new court."""
    header = (
        "Settings of the court server (seal-server), written by `seal-server init`. Every key is here with its "
        "description; check the file with `seal-server check-config --config FILE`. Relative paths are relative to "
        "the directory the server is started in. For PostgreSQL set database_url = "
        '"postgresql+psycopg://user@host/db" (or DATABASE_URL).'
    )
    values = court_settings(
        court, http_port=http_port, mqtt_port=mqtt_port, public_base_url=public_base_url, log_origin=log_origin
    )
    for name, value in (kept or {}).items():
        if isinstance(value, dict):
            values[name] = {**values.get(name, {}), **value}
        else:
            values[name] = value
    return render_settings(values, header=header)


def settings_to_keep(settings_file: Path) -> dict[str, Any]:
    """The :data:`KEPT_SETTINGS` of an existing ``settings_file`` (top-level keys, and one mapping per section);
    empty if there is no such file. A file that is not TOML is refused (:class:`ConfigError`): rewriting it would
    lose what it says without anyone knowing."""
    try:
        text = settings_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {settings_file} to keep its settings: {exc}") from None
    try:
        existing = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{settings_file} is not TOML ({exc}): init --force keeps its database, evidence and key settings, so "
            "correct it first (or move it away to write a new one)"
        ) from None
    kept: dict[str, Any] = {}
    for name, *key in KEPT_SETTINGS:
        if name not in existing:
            continue
        if not key:
            kept[name] = existing[name]
        elif isinstance(existing[name], dict) and key[0] in existing[name]:
            kept.setdefault(name, {})[key[0]] = existing[name][key[0]]
    return kept


def recorded_origin(log_key_file: Path) -> str | None:
    """The origin of the checkpoints the log key at ``log_key_file`` signed (its record), if it signed any: a court
    directory written again keeps its log's origin even without the ``server.toml`` that named it."""
    try:
        signed = SignedRecord(record_path(log_key_file)).read()
    except CheckpointRefused:
        return None  # unreadable: the server refuses to sign, and says why
    return signed.origin if signed is not None else None


def _described(kept: dict[str, Any]) -> list[str]:
    """``kept`` as ``key = value`` lines, a section's keys as ``section.key``."""
    lines = []
    for name, value in kept.items():
        if isinstance(value, dict):
            lines += [f"{name}.{key} = {toml_value(item)}" for key, item in value.items()]
        else:
            lines.append(f"{name} = {toml_value(value)}")
    return lines


def init_court_dir(directory: Path, options: InitOptions | None = None, *, force: bool = False) -> InitResult:
    """Write a court server's directory; refuse (:class:`AlreadyExists`, nothing written) if a file it would write
    exists, unless ``force``. Even with ``force`` an existing secret is kept (seals and the broker already use it),
    and so are the settings of an existing ``server.toml`` that say where the court's database, evidence and keys
    are and which log its key signs (:data:`KEPT_SETTINGS`)."""
    options = options or InitOptions()
    court = CourtDir(directory.resolve())
    settings_file = (options.settings_file or court.settings_file).absolute()
    tls = _tls_listener(court, options)
    conf = MosquittoConfig(court.broker, local_port=options.mqtt_port, tls=tls)
    config_files = [settings_file, court.broker.conf_file, court.broker_unit_file, court.server_unit_file]
    secret_files = [court.mqtt_password_file, court.court_key_file, court.log_key_file, court.notice_key_file]
    existing = [path for path in config_files + secret_files if path.exists()]
    if existing and not force:
        raise AlreadyExists(
            "not overwriting " + ", ".join(map(str, existing)) + " (--force rewrites the configuration files and "
            "keeps the secrets, and the settings that say where the court's database, evidence and keys are and its "
            "log's origin)"
        )
    kept = settings_to_keep(settings_file) if force else {}
    for path in (court.directory, court.snapshot_dir, court.broker.persistence_dir, court.tls_dir, court.systemd_dir):
        path.mkdir(mode=0o700, parents=True, exist_ok=True)

    database_url = str(kept.get("database_url", court.database_url))
    units = CourtUnits(
        court.directory, settings_file, seal_server_executable(), conf.user, primary_group(conf.user), database_url
    )
    result = InitResult(tls=tls, seal_server=units.seal_server)
    result.kept_settings = _described(kept)
    log_key_file = Path(kept.get("evidence", {}).get("log_key_file") or court.log_key_file)
    settings = settings_text(
        court,
        http_port=options.http_port,
        mqtt_port=options.mqtt_port,
        public_base_url=options.public_base_url,
        log_origin=recorded_origin(log_key_file),
        kept=kept,
    )
    write_private_file(settings_file, settings, CONFIG_MODE)
    write_private_file(court.broker.conf_file, conf.render(), CONFIG_MODE)
    write_private_file(court.broker_unit_file, units.broker_unit(), CONFIG_MODE)
    write_private_file(court.server_unit_file, units.server_unit(), CONFIG_MODE)
    result.written += config_files
    if court.mqtt_password_file.exists():
        result.kept.append(court.mqtt_password_file)
    else:
        write_private_file(court.mqtt_password_file, new_password() + "\n")
        result.written.append(court.mqtt_password_file)
    # The command key, the evidence log's own key, and the key that signs the notices' QR codes; where a kept setting
    # names a file of the court's own elsewhere, that file is left as it is.
    named = {
        court.court_key_file: kept.get("commands", {}).get("signing_key_file"),
        court.log_key_file: kept.get("evidence", {}).get("log_key_file"),
        court.notice_key_file: kept.get("notices", {}).get("key_file"),
    }
    for key_file, setting in named.items():
        if setting is not None and _absolute(Path(setting)) != key_file:
            continue
        _key, created = load_or_create_signing_key(key_file)  # mode 0600
        (result.written if created else result.kept).append(key_file)
    return result


def _tls_listener(court: CourtDir, options: InitOptions) -> TlsListener | None:
    if options.mqtt_tls_port is None:
        return None
    return TlsListener(
        cafile=_absolute(options.tls_ca or court.tls_dir / "ca.crt"),
        certfile=_absolute(options.tls_cert or court.tls_dir / "server.crt"),
        keyfile=_absolute(options.tls_key or court.tls_dir / "server.key"),
        port=options.mqtt_tls_port,
    )


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))
