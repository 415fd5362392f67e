"""Settings of the court server, read from a TOML file. Each value must have the TOML type its key means: ``port =
true`` or ``cookie_secure = "no"`` is refused, naming the key, never converted (:mod:`server.config_types`).

Relative paths (and a relative SQLite path in ``database_url``) are relative to the working directory the server is
started in. The environment variable ``DATABASE_URL``, when set, replaces ``database_url``. There is no default
secret: the MQTT password is read from ``mqtt.password_file`` when the ingest starts.

``seal-server init DIR`` writes a complete file, every key described. The least a file needs::

    database_url = "sqlite:////srv/court/court.db"
    snapshot_dir = "/srv/court/snapshots"
    [mqtt]
    password_file = "/srv/court/court-server.mqtt-password"
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from server.config_mqtt import MqttSettings, is_loopback
from server.config_sections import (
    AlarmSettings,
    EvidenceSettings,
    HttpSettings,
    IngestSettings,
    LivenessSettings,
    LiveSettings,
    NoticeSettings,
    NotifySettings,
    WebSettings,
)
from server.config_storage import StorageSettings
from server.config_types import OptionalPath, RequiredPath, wrong_type
from server.errors import ConfigError

DATABASE_URL_ENV = "DATABASE_URL"


class AuthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    session_ttl_s: int = Field(
        8 * 3600, ge=300, le=30 * 24 * 3600, description="A login (cookie and bearer token) expires after this long."
    )
    cookie_secure: bool = Field(
        True, description="Send the session cookie over HTTPS only; turn off only for plain-HTTP development."
    )
    login_max_failures: int = Field(
        5,
        ge=1,
        le=100,
        description="Failed logins allowed per username from one client address within login_window_s; then that "
        "username is refused from that address (only) until the oldest failure leaves the window.",
    )
    login_window_s: int = Field(
        300,
        ge=10,
        le=24 * 3600,
        description="The window of login_max_failures, login_address_max_failures and login_network_max_failures.",
    )
    login_address_max_failures: int = Field(
        20,
        ge=1,
        le=10_000,
        description="Failed logins allowed from one client address, whatever the usernames, within login_window_s. "
        "An IPv6 address counts as its /64 (one host commonly holds the whole prefix).",
    )
    login_network_max_failures: int = Field(
        50,
        ge=1,
        le=10_000,
        description="Failed logins allowed from one IPv6 /48 network, whatever its /64s and the usernames, within "
        "login_window_s: one holder of many /64s (a home line's /56, a /48) cannot add up their limits. Keep it "
        "below login_user_max_failures, so that one network cannot lock a user out. IPv4 addresses are not "
        "grouped.",
    )
    login_user_max_failures: int = Field(
        100,
        ge=1,
        le=100_000,
        description="The brake on a username guessed from many addresses: failed logins allowed for one username, "
        "from all addresses together, within login_user_window_s. Keep it well above login_max_failures and "
        "login_network_max_failures, so that one address, or one IPv6 network, cannot lock a user out (a value "
        "not above what either can reach within login_user_window_s is refused).",
    )
    login_user_window_s: int = Field(
        60, ge=1, le=24 * 3600, description="The (short) window of login_user_max_failures."
    )

    @model_validator(mode="after")
    def _one_address_cannot_lock_a_user(self) -> AuthSettings:
        """Within login_user_window_s one address reaches at most login_max_failures failures of one username per
        login_window_s, and one IPv6 /48 at most login_network_max_failures: each must stay below the brake."""
        windows = math.ceil(self.login_user_window_s / self.login_window_s)
        for field, maximum, who in (
            ("login_max_failures", self.login_max_failures, "one address's"),
            ("login_network_max_failures", self.login_network_max_failures, "one IPv6 network's"),
        ):
            if self.login_user_max_failures <= maximum * windows:
                times = f" × {windows} (login_user_window_s spans {windows} login_window_s)" if windows > 1 else ""
                raise ValueError(
                    f"login_user_max_failures must exceed {field}{times}, or {who} failures lock the user out"
                )
        return self


class CommandSettings(BaseModel):
    """Court → seal commands: the court's signing key and how long a command stays valid."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    signing_key_file: OptionalPath = Field(
        None,
        description="The court's Ed25519 private key (base64, mode 0600), made by `seal-server init` or "
        "`seal-server court-key`; back it up. There is no default key: without it, commands cannot be issued and "
        "receipts not signed.",
    )
    ttl_s: int = Field(
        600,
        ge=1,
        le=24 * 3600,
        description="A command expires this long after it is issued (the seal refuses it "
        "afterwards; the court shows it expired if no answer came).",
    )
    retry_interval_s: float = Field(
        5.0,
        ge=0.05,
        le=3600,
        description="How often commands the broker has not accepted yet are published again, "
        "and commands past their expiry are marked expired.",
    )
    publish_timeout_s: float = Field(10.0, ge=0.1, le=120, description="Wait for the broker's PUBACK per publish.")
    seals_per_round: int = Field(
        100,
        ge=1,
        le=10_000,
        description="How many seals' commands one round publishes at most: those whose first unpublished command "
        "was never tried first, then those tried least recently, so seals nobody receives take turns and hold up no "
        "other seal.",
    )


class RemovalSettings(BaseModel):
    """Removal requests: where their proof files are kept, how many and how large, and the creditor's time for a
    written view."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    proof_dir: OptionalPath = Field(
        None,
        description="Directory of the proof files of removal requests (PDF, JPEG, PNG), each named by its "
        'SHA-256. Unset: `removal-proofs` beside snapshot_dir. Not used with [storage] backend = "s3".',
    )
    proof_max_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024, description="Largest proof file accepted, in bytes."
    )
    proof_max_files: int = Field(5, ge=1, le=20, description="At most this many proof files per request.")
    upload_deadline_s: float = Field(
        300,
        ge=10,
        le=3600,
        description="A removal request's upload (its proof files) must have arrived within this many seconds, or it "
        "is refused (408): a body sent a byte at a time must not hold one of the few upload slots for days.",
    )
    upload_progress_bytes: int = Field(
        16 * 1024,
        ge=1,
        le=1024 * 1024,
        description="An upload must bring at least this many bytes within every upload_progress_window_s spent "
        "waiting for it, or it is cut off (408) and its upload slot freed: a client trickling a byte a second holds "
        "none of the few slots. The default (16 KiB in 15 s, about 1 KiB/s) passes a phone on a 2G/EDGE line "
        "(10-30 KiB/s).",
    )
    upload_progress_window_s: float = Field(
        15.0,
        ge=1,
        le=300,
        description="See upload_progress_bytes; the time the server itself takes between two reads does not count.",
    )
    max_filings_per_day: int = Field(
        5,
        ge=1,
        le=1000,
        description="At most this many removal requests are filed for a case in 24 hours, withdrawn or rejected "
        "ones included: proof files are kept for good, and filing and withdrawing in a loop must not fill the store.",
    )
    creditor_view_window_s: int = Field(
        5 * 24 * 3600,
        ge=0,
        le=60 * 24 * 3600,
        description="After a request is filed, the creditor may give written views for this long (and until the "
        "judge decides).",
    )
    settle_interval_s: float = Field(
        5.0,
        ge=0.05,
        le=3600,
        description="How often requests waiting for their seals are checked for every seal's signed "
        "acknowledgement of the disarm (also at once when an answer is stored, and whenever a request is read).",
    )


class BrokerFilesSettings(BaseModel):
    """Where the server writes Mosquitto's password and ACL files, regenerated from its MQTT accounts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    password_file: OptionalPath = Field(
        None, description="Mosquitto's password_file. Unset: provisioning stores accounts but writes no files."
    )
    acl_file: OptionalPath = Field(None, description="Mosquitto's acl_file (written together with password_file).")
    pid_file: OptionalPath = Field(
        None,
        description="Mosquitto's pid_file (written when it is started with -d): the server sends that process "
        "SIGHUP to re-read the files, if it is a Mosquitto whose configuration names this pid_file (a stale file "
        "naming another process: none is signalled). Unset: reload the broker yourself after each change.",
    )


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str = Field(
        min_length=1,
        description="SQLAlchemy URL: sqlite:///path/court.db or postgresql+psycopg://user@host/db. "
        f"${DATABASE_URL_ENV} overrides it.",
    )
    snapshot_dir: RequiredPath = Field(
        description='Directory of snapshot files, each named by its SHA-256 (not used with [storage] backend = "s3").'
    )
    offline_after_s: int = Field(
        180,
        ge=10,
        le=7 * 24 * 3600,
        description="A seal not heard from for this long is shown offline even if its last status said online.",
    )
    http: HttpSettings = Field(default_factory=HttpSettings, description="REST API listener.")
    mqtt: MqttSettings = Field(description="MQTT broker connection of the ingest.")
    auth: AuthSettings = Field(default_factory=AuthSettings, description="Logins, sessions and their limits.")
    alarms: AlarmSettings = Field(
        default_factory=AlarmSettings, description="Folding of repeated alarms; the grace of a restarting seal."
    )
    liveness: LivenessSettings = Field(default_factory=LivenessSettings, description="The check for silent seals.")
    notify: NotifySettings = Field(default_factory=NotifySettings, description="Webhook notifications of alarms.")
    commands: CommandSettings = Field(
        default_factory=CommandSettings, description="Signed court → seal commands and their expiry."
    )
    broker: BrokerFilesSettings = Field(
        default_factory=BrokerFilesSettings, description="Mosquitto files managed by seal provisioning."
    )
    evidence: EvidenceSettings = Field(
        default_factory=EvidenceSettings, description="The signed Merkle log over the stored events."
    )
    notices: NoticeSettings = Field(
        default_factory=NoticeSettings, description="The printed seal notice, its signed QR code and public page."
    )
    removal: RemovalSettings = Field(
        default_factory=RemovalSettings, description="Removal requests: proof files and the creditor's views."
    )
    web: WebSettings = Field(default_factory=WebSettings, description="The court's pages and their live stream.")
    storage: StorageSettings = Field(
        default_factory=StorageSettings,
        description="Where snapshots and removal proofs are kept: a directory, or an S3-compatible bucket.",
    )
    live: LiveSettings = Field(
        default_factory=LiveSettings, description="The court's live feed: every process's changes on every page."
    )
    ingest: IngestSettings = Field(
        default_factory=IngestSettings,
        description="The `seal-server ingest` workers' own metrics endpoints, and the quarantine's byte budget.",
    )

    @property
    def proof_dir(self) -> Path:
        """Where removal proofs are stored: ``[removal] proof_dir``, or ``removal-proofs`` beside snapshot_dir."""
        return self.removal.proof_dir or self.snapshot_dir.parent / "removal-proofs"

    @model_validator(mode="after")
    def _proofs_apart_from_snapshots(self) -> Settings:
        # Both stores name a file by its SHA-256: one directory for both would let the removal of an unfiled proof
        # (server/removal/proof_files.py) remove a seal's snapshot of the same bytes.
        if self.removal.proof_dir is not None and self.removal.proof_dir.resolve() == self.snapshot_dir.resolve():
            raise ValueError("[removal] proof_dir must not be snapshot_dir: both stores name files by their SHA-256")
        return self

    @model_validator(mode="after")
    def _api_apart_from_the_broker(self) -> Settings:
        # A broker on this machine listening on the API's port: one of the two cannot start ("Address already in use").
        if self.http.port == self.mqtt.port and (is_loopback(self.mqtt.host) or self.mqtt.host == self.http.host):
            raise ValueError(
                f"[http] port 与本机代理的 [mqtt] port 都是 {self.http.port}：两个监听不能共用一个端口 / [http] port "
                f"and [mqtt] port are both {self.http.port} on this machine: the API and the broker cannot share a port"
            )
        return self


def parse_settings(
    data: Mapping[str, Any], *, env: Mapping[str, str] | None = None, source: str = "settings"
) -> Settings:
    """Validate ``data`` (as read from TOML) into :class:`Settings`, applying the environment override. Strict: a
    value of another TOML type than its key's is refused, never converted (:mod:`server.config_types`); the one
    value taken from the environment, ``DATABASE_URL``, is a string, as its key."""
    env = os.environ if env is None else env
    merged = dict(data)
    if env.get(DATABASE_URL_ENV):
        merged["database_url"] = env[DATABASE_URL_ENV]
    try:
        return Settings.model_validate(merged, strict=True)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            problems.append(f"  {where}: {wrong_type(err) or err['msg'].removeprefix('Value error, ')}")
        lead = f"{source}: 配置有误，请按下列各项更正 / invalid configuration:"
        raise ConfigError("\n".join([lead, *problems])) from None


def load_settings(path: Path, *, env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the TOML file at ``path``; raise :class:`ConfigError` with a readable reason."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_settings(data, env=env, source=str(path))


def read_secret_file(path: Path, *, what: str) -> str:
    """The first line of ``path``, stripped of surrounding white space: how every password, secret and key file of
    the server is read. Raise :class:`ConfigError` naming the file and ``what`` it should hold if it is missing,
    unreadable, not UTF-8, or its first line is empty."""
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the {what} file is not UTF-8 text") from None
    lines = text.splitlines()
    first = lines[0].strip() if lines else ""
    if not first:
        raise ConfigError(f"{path}: the {what} file is empty (the first line must hold it)")
    return first


def read_password(path: Path) -> str:
    """The MQTT password in ``path`` (:func:`read_secret_file`)."""
    return read_secret_file(path, what="MQTT password")
