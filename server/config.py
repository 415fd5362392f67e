"""Settings of the court server, read from a TOML file.

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
from server.config_types import OptionalName, OptionalPath
from server.errors import ConfigError

DATABASE_URL_ENV = "DATABASE_URL"


class MqttSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", min_length=1, description="MQTT broker host.")
    port: int = Field(
        1883, ge=1, le=65535, description="MQTT broker port: 1883 on 127.0.0.1, 8883 (TLS) for a broker elsewhere."
    )
    username: str = Field("court-server", min_length=1, max_length=64, description="The court server's account.")
    password_file: Path = Field(description="File holding the account's password (first line); keep it mode 0600.")
    tls_ca_file: OptionalPath = Field(
        None,
        description="CA certificate of the broker's TLS listener. Empty or absent: plain TCP, only for a broker on "
        "this machine (host 127.0.0.1) or for development.",
    )
    client_id: str = Field(
        "court-server-ingest",
        min_length=1,
        max_length=64,
        description="Stable MQTT client id: the broker keeps the persistent session (and unacked messages) under it.",
    )
    session_expiry_s: int = Field(
        7 * 24 * 3600,
        ge=60,
        le=2**32 - 2,
        description="How long the broker keeps the session and queued messages while the server is away.",
    )
    keepalive_s: int = Field(30, ge=5, le=600, description="MQTT keepalive interval.")
    mark_interval_s: float = Field(
        2.0,
        ge=0.1,
        le=60,
        description="How often each ingest worker sends itself a marker through the broker, to record how far it "
        "has caught up (the liveness check and the commands' expiry judge only up to there).",
    )
    batch_size: int = Field(
        500,
        ge=1,
        le=5000,
        description="At most this many messages are stored per database transaction (keep it below the broker's "
        "max_inflight_messages, 1000 in the generated configuration). Larger batches cost less CPU per message "
        "(bench/ingest.py: about 10 % less at 500 than at 100).",
    )
    batch_linger_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="When fewer than batch_size messages wait as a batch begins, the ingest waits this long once "
        "(under a backlog, with the verifier process: takes the next no sooner than this after the last), so that "
        "a steady stream is stored in fewer, larger transactions (each costs about a millisecond of CPU whatever "
        "its size). It adds at most this much to an event's time to its commit, besides the batch before. 0: none.",
    )
    verifier_process: bool = Field(
        True,
        description="Decode the events and check their Ed25519 signatures in a process of its own (started by a "
        "batch of 16): under a backlog the next batch while the ingest's thread stores the one before, a large one "
        "partly, on another core, outside the ingest's interpreter lock. If that process fails, the ingest does it "
        "all itself. false: all in the ingest's thread (a single-core machine).",
    )
    shared_group: OptionalName = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="MQTT v5 shared subscription group: the ingest subscribes to $share/<group>-<suffix>/seal/v1/+/"
        "... so that several ingest processes (`seal-server ingest --workers N`, or one per machine) split the "
        "stream, each message going to one of them. The suffix is derived from the password (the same in every "
        "worker): Mosquitto lets any account join any group, and a seal in the court's group would take, and lose, "
        "a share of every seal's messages. Absent: a plain subscription (one ingest takes every message). Retained "
        "statuses are not sent to shared subscriptions (MQTT 5): a status is taken when it changes. Empty: absent.",
    )
    gap_wait_s: float = Field(
        0.0,
        ge=0,
        le=10,
        description="With a shared group: how long an event beyond a gap is held back (unacknowledged) for its "
        "predecessor, counted from the seal's chain's last move, at most 10 × from arrival; then the gap raises "
        "missing_events. The marks wait for held events (docs/deploy.md). 0: at once (right for one worker).",
    )
    gap_wait_max_held: int = Field(
        100,
        ge=0,
        le=10_000,
        description="At most this many events are held back at a time (gap_wait_s) by one ingest process: held, "
        "they are unacknowledged, so they take places of the broker's in-flight window (Mosquitto's "
        "max_inflight_messages, 1000) that every other seal's messages need. Beyond it, an event beyond a gap is "
        "stored at once, as with gap_wait_s = 0 (the gap raises missing_events, which closes when the missing "
        "events arrive). Keep it well below the window.",
    )


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
        300, ge=10, le=24 * 3600, description="The window of login_max_failures and login_address_max_failures."
    )
    login_address_max_failures: int = Field(
        20,
        ge=1,
        le=10_000,
        description="Failed logins allowed from one client address, whatever the usernames, within login_window_s.",
    )
    login_user_max_failures: int = Field(
        100,
        ge=1,
        le=100_000,
        description="The brake on a username guessed from many addresses: failed logins allowed for one username, "
        "from all addresses together, within login_user_window_s. Keep it well above login_address_max_failures, "
        "so that one address cannot lock a user out.",
    )
    login_user_window_s: int = Field(
        60, ge=1, le=24 * 3600, description="The (short) window of login_user_max_failures."
    )

    @model_validator(mode="after")
    def _one_address_cannot_lock_a_user(self) -> AuthSettings:
        if self.login_user_max_failures <= self.login_max_failures:
            raise ValueError(
                "login_user_max_failures must exceed login_max_failures, or one address's failures lock the user out"
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
        "SIGHUP to re-read the files. Unset: reload the broker yourself after each change.",
    )


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str = Field(
        min_length=1,
        description="SQLAlchemy URL: sqlite:///path/court.db or postgresql+psycopg://user@host/db. "
        f"${DATABASE_URL_ENV} overrides it.",
    )
    snapshot_dir: Path = Field(
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


def parse_settings(
    data: Mapping[str, Any], *, env: Mapping[str, str] | None = None, source: str = "settings"
) -> Settings:
    """Validate ``data`` (as read from TOML) into :class:`Settings`, applying the environment override."""
    env = os.environ if env is None else env
    merged = dict(data)
    if env.get(DATABASE_URL_ENV):
        merged["database_url"] = env[DATABASE_URL_ENV]
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            problems.append(f"  {where}: {err['msg']}")
        raise ConfigError(f"{source}: invalid configuration:\n" + "\n".join(problems)) from None


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
