"""``[mqtt]``: the court server's connection to the broker. Plain TCP only to a broker on this machine, unless
``allow_plaintext`` says otherwise by name (as the seal's own ``[mqtt]``, :mod:`seal_agent.config`)."""

from __future__ import annotations

import ipaddress
import socket

from pydantic import BaseModel, ConfigDict, Field, model_validator

from server.config_types import OptionalName, OptionalPath, RequiredPath


class MqttSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", min_length=1, description="MQTT broker host.")
    port: int = Field(
        1883, ge=1, le=65535, description="MQTT broker port: 1883 on 127.0.0.1, 8883 (TLS) for a broker elsewhere."
    )
    username: str = Field("court-server", min_length=1, max_length=64, description="The court server's account.")
    password_file: RequiredPath = Field(
        description="File holding the account's password (first line); keep it mode 0600."
    )
    tls_ca_file: OptionalPath = Field(
        None,
        description="CA certificate of the broker's TLS listener; when set, the connection uses TLS. Empty or absent: "
        "plain TCP, refused for a broker that is not on this machine (127.0.0.1, ::1, localhost) unless "
        "allow_plaintext.",
    )
    allow_plaintext: bool = Field(
        False,
        description="Let the server talk plain TCP to a broker elsewhere (its password, every seal's events and the "
        "court's commands readable and alterable on the way; a warning at every start). For a test bench only.",
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
        "its size). It adds at most this much to an event's time to its commit, besides the batch before; a batch "
        "holding an intrusion or a tamper report does not wait. 0: none.",
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
        description="With a shared group: how old a gap in a seal's chain is (counted from when a worker stored the "
        "event beyond it, on the database's clock, and from the ingest's caught-up mark) when it raises "
        "missing_events: another worker may be storing the missing events meanwhile. The event itself is stored at "
        "once (docs/deploy.md). 0: at once (right for one worker).",
    )
    gap_wait_max_held: int = Field(
        100,
        ge=0,
        le=10_000,
        description="No longer used (still accepted): events beyond a gap are no longer held back, so there is no "
        "bound to keep on them.",
    )

    @model_validator(mode="after")
    def _tls_unless_local(self) -> MqttSettings:
        if self.tls_ca_file is None and not self.allow_plaintext and not is_loopback(self.host):
            raise ValueError(
                f"tls_ca_file is empty, so the court server's MQTT password, every seal's events and the court's "
                f"commands would cross the network in plain text to {self.host}: set tls_ca_file to the CA "
                "certificate of the broker's TLS listener (or allow_plaintext = true, for a test bench only)"
            )
        return self


#: Other names of the loopback address that some /etc/hosts give (Debian's ``ip6-*``, Red Hat's ``localhost.
#: localdomain``): taken for this machine only if the system resolves them to loopback addresses alone.
LOOPBACK_NAMES = frozenset({"localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def is_loopback(host: str) -> bool:
    """True for a broker on this machine: ``localhost``, a loopback address (127.0.0.0/8, ::1, and 127.0.0.0/8 mapped
    into IPv6: ``::ffff:127.0.0.1``), or one of :data:`LOOPBACK_NAMES` that resolves to loopback addresses only."""
    name = host.lower().removesuffix(".")
    if name == "localhost":
        return True
    if name in LOOPBACK_NAMES:
        try:
            found = {str(info[4][0]) for info in socket.getaddrinfo(name, None)}
        except OSError:
            return False
        return bool(found) and all(_loopback_address(address) for address in found)
    return _loopback_address(host.strip("[]"))


def _loopback_address(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return False
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def plaintext_warning(settings: MqttSettings) -> str | None:
    """The warning logged at every start of a client (and by ``check-config``) of a server allowed plain TCP to a
    broker elsewhere; None when the connection uses TLS or stays on this machine."""
    if settings.tls_ca_file is not None or is_loopback(settings.host):
        return None
    return (
        f"mqtt.allow_plaintext: PLAIN TCP to {settings.host}:{settings.port} — the court server's MQTT password, "
        "every seal's events and the court's commands can be read and altered on the network; set mqtt.tls_ca_file"
    )
