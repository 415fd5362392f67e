"""The court's ``mosquitto.conf``, generated: the one configuration the court runs (``seal-server init``), and the
tests, the benchmarks and the demo run too (``seal_dev.broker.PrivateBroker``), apart from ports and directories.

Each line is chosen, none left to Mosquitto's defaults where those would hurt: no anonymous access, the password and
ACL files the server regenerates (:mod:`server.seals.provisioning`), persistence, a queue that does not silently
drop QoS 1 messages for a slow subscriber (Mosquitto's 1,000-message default does), sessions kept no longer than two
weeks, a bound on the seals' listener's connections (Mosquitto's default has none), room in flight for a full ingest
batch but a bound on its bytes, messages no larger than a snapshot (packets no larger than one with its topic), and a
pid file through which the server makes the broker re-read its files; no ``memory_limit`` (docs/deploy.md,
"Retained messages": Mosquitto 2.0.11 refuses to start with a persistence file larger than it). Seals reach the
broker over TLS; the court server, on the same machine, over a plain listener bound to 127.0.0.1.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field
from pathlib import Path

from seal_protocol.topics import MAX_SNAPSHOT_BYTES

#: The plain listener for programs on the broker's own machine (the court server), and the TLS one for the seals.
LOCAL_PORT = 1883
TLS_PORT = 8883
#: In flight to one client at a time: well above the ingest's batch (``[mqtt] batch_size``, 500 by default), since the
#: server acknowledges a message only after the batch holding it is committed: with no more than one batch in flight
#: the broker waits for the commit and the ingest waits for the broker in turn (measured: the ingest idle half the
#: time, bench/ingest.py). A seal publishes at most 25 messages unacknowledged, so only the court's clients use this.
MAX_INFLIGHT_MESSAGES = 1000
#: And at most these bytes of payload unacknowledged: 1,000 snapshots of 8 MiB that a seal's account may publish
#: while the ingest is behind (its database away) would be 8 GiB in the court's memory, and again after a restart (the
#: session delivers them again): out of memory, in a loop. From 2.0.13 Mosquitto puts a QoS 1 message in flight to a
#: client only while those in flight hold fewer bytes, so one larger message still goes alone: the largest snapshot
#: passes; the rest wait in its queue (``max_queued_bytes``, counted above this bound for a connected client). 2.0.11
#: checks it only as a message comes, not as it moves queued messages into flight: there the court bounds what it
#: holds itself (:data:`server.ingest.backlog.QOS1_BACKLOG_BYTES`). 64 MiB is 64,000 events, or 8 snapshots: a batch's
#: worth (:data:`server.ingest.backlog.BATCH_BYTES`).
MAX_INFLIGHT_BYTES = 64 * 1024 * 1024
#: The memory a client's queue may take while it is away. Beyond it the broker drops new QoS 1 messages for that
#: client; a seal keeps every event and snapshot in its outbox until the court's receipt, and sends it again.
MAX_QUEUED_BYTES = 256 * 1024 * 1024
#: The largest MQTT packet the broker takes or sends: a snapshot (``message_size_limit``, which counts the payload
#: only), its topic (at most 64 KiB) and room for a few properties. MQTT v5 user properties travel with a message to
#: its subscribers: without this bound a seal's account could make the broker keep, and hand the court, a message of
#: up to 256 MiB of them.
MAX_PACKET_BYTES = MAX_SNAPSHOT_BYTES + 128 * 1024
#: How often the broker saves its sessions and queues (it also saves when it stops).
AUTOSAVE_INTERVAL_S = 60
#: Connections the seals' (TLS) listener holds at once: five times the fleet ``bench/fleet.py`` connects (2,000), well
#: below the broker unit's ``LimitNOFILE`` (:data:`server.setup.systemd_units.BROKER_OPEN_FILES`). Mosquitto 2.0 counts
#: a connection from its ``accept``, and never closes one that sends nothing (no CONNECT, no TLS ClientHello): without
#: this bound idle sockets from anyone would take every descriptor, the local listener's too, which the court's own
#: processes use. A firewall's per-address limit keeps one source from taking them all (docs/deploy.md).
TLS_MAX_CONNECTIONS = 10_000
#: How long the broker keeps a session whose client is away, at most, whatever expiry the client asked for: a seal's
#: account may otherwise make sessions (any client id, expiry 0xFFFFFFFF) that are never removed. Longer than the
#: court's own (``[mqtt] session_expiry_s``, 7 days) and the seals' (7 days), which it therefore never shortens.
PERSISTENT_CLIENT_EXPIRATION = "14d"


@dataclass(frozen=True)
class BrokerFiles:
    """Where a broker keeps its files in ``directory``: the same names for the court and for the test broker."""

    directory: Path

    @property
    def conf_file(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def password_file(self) -> Path:
        """Written by the server (``[broker] password_file``)."""
        return self.directory / "mosquitto.passwd"

    @property
    def acl_file(self) -> Path:
        """Written by the server (``[broker] acl_file``)."""
        return self.directory / "mosquitto.acl"

    @property
    def pid_file(self) -> Path:
        """Written by Mosquitto when started with ``-d`` (``[broker] pid_file``: the server signals it)."""
        return self.directory / "mosquitto.pid"

    @property
    def log_file(self) -> Path:
        return self.directory / "mosquitto.log"

    @property
    def persistence_dir(self) -> Path:
        return self.directory / "mosquitto"


@dataclass(frozen=True)
class TlsListener:
    """The listener the seals use: the broker's certificate and key, and the CA that issued the certificate (what
    each seal pins as ``[mqtt] tls_ca_file``)."""

    cafile: Path
    certfile: Path
    keyfile: Path
    port: int = TLS_PORT
    #: Mosquitto's ``max_connections`` of this listener (kept by ``seal-server init --force`` if edited).
    max_connections: int = TLS_MAX_CONNECTIONS


#: Above ``user root`` (written when ``seal-server init`` ran as root): what it means, and how to avoid it.
ROOT_USER_COMMENT = (
    "# WARNING: written by seal-server init run as root, so Mosquitto started as root stays root. Run init, the\n"
    "# server and the broker as the unprivileged account that owns this directory (README), which this line names."
)


@dataclass(frozen=True)
class MosquittoConfig:
    files: BrokerFiles
    local_port: int = LOCAL_PORT
    tls: TlsListener | None = None
    #: Mosquitto started as root switches to this account: the one that runs the server, so that the broker can
    #: read the files the server writes and the server may signal the broker.
    user: str = field(default_factory=getpass.getuser)
    persistence: bool = True
    autosave_interval_s: int = AUTOSAVE_INTERVAL_S
    max_inflight_messages: int = MAX_INFLIGHT_MESSAGES
    max_inflight_bytes: int = MAX_INFLIGHT_BYTES

    def render(self) -> str:
        """The text of ``mosquitto.conf``."""
        files = self.files
        lines = [
            "# Mosquitto for the court's electronic seals, generated by court-seal (seal-server init).",
            "# Start it as the account that runs seal-server:  mosquitto -c <this file> -d",
            "# (-d writes pid_file, through which seal-server makes the broker re-read its password and ACL files).",
            "",
            "# Every client logs in; the server regenerates both files from its database at every change of accounts.",
            "allow_anonymous false",
            f"password_file {files.password_file}",
            f"acl_file {files.acl_file}",
            "",
            f"pid_file {files.pid_file}",
            *([ROOT_USER_COMMENT] if self.user == "root" else []),
            f"user {self.user}",
            "",
            "# Sessions and queued messages survive a restart.",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {files.persistence_dir}/",
            f"autosave_interval {self.autosave_interval_s}",
            "# But no longer than this while the client is away, whatever expiry it asked for (a seal's account",
            "# could keep sessions for ever): longer than the court's and the seals' own session expiry (7 days).",
            f"persistent_client_expiration {PERSISTENT_CLIENT_EXPIRATION}",
            "",
            "# Mosquitto's default (1000 queued messages) silently drops QoS 1 messages for a slow subscriber:",
            "# no limit on the count, a limit on the memory instead. Past it new messages for that client are",
            "# dropped, and the seals send them again: they keep every event and snapshot until the court's receipt.",
            "max_queued_messages 0",
            f"max_queued_bytes {MAX_QUEUED_BYTES}",
            "# Well above [mqtt] batch_size of the server: it acknowledges a message when its batch is committed,",
            "# and the next batch should be arriving meanwhile.",
            f"max_inflight_messages {self.max_inflight_messages}",
            "# But no more bytes than these unacknowledged (a larger message goes alone): 1000 snapshots of 8 MiB",
            "# would not fit in the server's memory. Mosquitto 2.0.13 and later; max_queued_bytes counts above it.",
            f"max_inflight_bytes {self.max_inflight_bytes}",
            "# Send each packet at once: with Nagle's algorithm a small packet (a receipt, a command, an",
            "# acknowledgement) waits for the peer's delayed TCP acknowledgement of the one before, about 40 ms.",
            "set_tcp_nodelay true",
            "# Nothing a seal sends is larger than a snapshot; a larger message is refused by the broker itself.",
            f"message_size_limit {MAX_SNAPSHOT_BYTES}",
            "# Nor larger with its topic and properties (message_size_limit counts the payload only): MQTT v5 user",
            "# properties go with a message to its subscribers. A larger packet closes the sender's connection.",
            f"max_packet_size {MAX_PACKET_BYTES}",
            "# No memory_limit, on purpose: past it Mosquitto 2.0 refuses honest messages too, and it will not start",
            "# with a persistence file larger than it. What a seal's account retains outside its status the court's",
            "# ingest clears (retain_available is global: off, it would refuse the seals' statuses and Last Wills).",
            "",
            f"log_dest file {files.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "",
            "# For programs on this machine only (the court server: [mqtt] host 127.0.0.1).",
            f"listener {self.local_port} 127.0.0.1",
        ]
        if self.tls is not None:
            lines += [
                "",
                "# For the seals, over TLS: the broker's certificate and key, and the CA that issued the certificate",
                "# (each seal pins a copy of it as [mqtt] tls_ca_file and connects to the name in the certificate).",
                f"listener {self.tls.port}",
                "# At most this many connections at once: Mosquitto 2.0 never closes one that sends nothing, and",
                "# without a bound idle sockets would take every file descriptor, the local listener's too.",
                f"max_connections {self.tls.max_connections}",
                f"cafile {self.tls.cafile}",
                f"certfile {self.tls.certfile}",
                f"keyfile {self.tls.keyfile}",
            ]
        return "\n".join(lines) + "\n"
