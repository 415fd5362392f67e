"""The systemd units ``seal-server init`` writes for a court: the broker and ``seal-server run``, started at boot as
the account that ran ``init``, with the absolute paths of that court's directory and of this installation's
``seal-server``. Copied to ``/etc/systemd/system/`` (README, "Run a court server").

Hardening that keeps them working: the whole file system read-only but the court's directory (``ProtectSystem=strict``
with ``ReadWritePaths=``); ``/home`` read-only rather than hidden, since the README's clone and its venv are in the
account's home, and a path in ``ReadWritePaths=`` stays writable inside a read-only tree but not inside a hidden one
(systemd.exec(5)); a private, writable ``/tmp`` (the server writes exports and large uploads there, and
``ProtectSystem=strict`` makes the real one read-only), unless the directory or the venv is in ``/tmp`` itself, which
a private one would hide: then the real ``/tmp`` stays writable.

The server starts after PostgreSQL when both start at boot (``After=postgresql.service``, always: an ordering only, it
neither starts PostgreSQL nor fails where there is none), and wants it started when ``database_url`` names PostgreSQL
on this machine (:func:`local_postgresql`; ``Wants=``, not ``Requires=``: see :meth:`CourtUnits.server_unit`).
"""

from __future__ import annotations

import grp
import ipaddress
import os
import pwd
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from server.seals.broker_config import BrokerFiles

BROKER_UNIT = "court-seal-broker.service"
SERVER_UNIT = "court-seal-server.service"
#: The PostgreSQL unit of Debian and Ubuntu (which its clusters' ``postgresql@VERSION-main`` units start before
#: themselves: after it, every cluster is up) and of Fedora and RHEL's own packages. PGDG's RHEL packages name it
#: ``postgresql-VERSION.service``: docs/deploy.md.
POSTGRESQL_UNIT = "postgresql.service"
MOSQUITTO = Path("/usr/sbin/mosquitto")
#: ``seal-server run`` ends the pages' live streams and the ingest finishes the batch in hand at SIGTERM (systemd's
#: default ``KillMode=control-group`` sends it to every process of the unit at once: docs/deploy.md); seconds. Past it
#: SIGKILL loses nothing: a message is acknowledged only once its batch is committed, and the seals send again.
SERVER_STOP_TIMEOUT_S = 30
#: How long ``seal-server run`` waits at a stop for the requests still open (a slow client's) before it cancels them
#: and stops the ingest, its last batch committed and acknowledged (uvicorn's ``timeout_graceful_shutdown``);
#: seconds. Well below :data:`SERVER_STOP_TIMEOUT_S`, which must also cover the ingest's stop (its worker and its
#: receipts, each waited for at most 10 s: :meth:`server.ingest.mqtt.MqttIngest.stop`).
SERVER_REQUESTS_STOP_S = 10
#: Both units' ``LimitNOFILE=``: one descriptor per connection, and systemd's default soft limit (1,024) is below a
#: court's fleet (the broker) and below what one client's idle or trickling connections may hold (the server: at
#: 1,024 every page and API call, ``/api/health`` too, failed with "Too many open files"). The broker's TLS listener
#: takes far fewer connections (:data:`server.seals.broker_config.TLS_MAX_CONNECTIONS`), so that idle sockets never
#: take the local listener's descriptors; the server answers 503 to a request beyond ``[http] limit_concurrency``.
OPEN_FILES = 65536
BROKER_OPEN_FILES = SERVER_OPEN_FILES = OPEN_FILES
#: The directories ``PrivateTmp=yes`` replaces with the unit's own.
PRIVATE_TMP_DIRS = (Path("/tmp"), Path("/var/tmp"))


def seal_server_executable() -> Path:
    """This installation's ``seal-server``: the entry point beside the running interpreter (``.venv/bin/python`` →
    ``.venv/bin/seal-server``; the interpreter's path is not resolved, the venv's ``python`` being a symlink out of
    it), else the one on ``PATH``. Absent both, the path beside the interpreter, which ``init`` reports missing."""
    beside = Path(os.path.abspath(sys.executable)).parent / "seal-server"
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("seal-server")
    return Path(os.path.abspath(found)) if found else beside


def primary_group(user: str) -> str:
    """``user``'s primary group's name (this process's group if the account is not in the password database)."""
    try:
        gid = pwd.getpwnam(user).pw_gid
    except KeyError:
        gid = os.getgid()
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def local_postgresql(database_url: str) -> bool:
    """Whether ``database_url`` names a PostgreSQL database on this machine: no host (libpq's default Unix socket), a
    socket directory (``?host=/var/run/postgresql``), ``localhost`` or a loopback address — any of them, when the URL
    lists several hosts. An URL that cannot be read is not (``check-config`` says what is wrong with it)."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        return False
    if url.get_backend_name() != "postgresql":
        return False
    named = url.query.get("host", ())
    hosts = [url.host] if url.host else [named] if isinstance(named, str) else list(named)
    return any(_local_host(host) for host in hosts) if hosts else True


def _local_host(host: str) -> bool:
    if host in ("", "localhost") or host.startswith(("/", "@")):  # @: an abstract socket (libpq 14+)
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class CourtUnits:
    """The two units of a court kept in ``directory`` (absolute), run as ``user``:``group``, whose database is
    ``database_url`` (the one in ``server.toml``)."""

    directory: Path
    settings_file: Path
    seal_server: Path
    user: str
    group: str
    database_url: str

    @property
    def broker(self) -> BrokerFiles:
        return BrokerFiles(self.directory)

    def broker_unit(self) -> str:
        broker = self.broker
        return _unit(
            self.directory,
            header="The court's MQTT broker: Mosquitto with this court's mosquitto.conf.",
            unit=[
                "Description=Court electronic seal broker (法院电子封条, Mosquitto)",
                "Documentation=man:mosquitto(8) man:mosquitto.conf(5)",
                "After=network-online.target",
                "Wants=network-online.target",
            ],
            service=[
                "# -d: Mosquitto forks and writes pid_file, through which seal-server makes it re-read the",
                f"# password and ACL files. It logs to {broker.log_file}, not to the journal.",
                "Type=forking",
                f"PIDFile={_path(broker.pid_file)}",
                *self._account(),
                f"ExecStart={_exec(MOSQUITTO)} -c {_exec(broker.conf_file)} -d",
                "ExecReload=/bin/kill -HUP $MAINPID",
                "Restart=on-failure",
                "RestartSec=2",
                "# A descriptor per connection; mosquitto.conf's max_connections bounds the seals' listener below it.",
                f"LimitNOFILE={BROKER_OPEN_FILES}",
                *self._hardening("# Its persistence, log and pid file are in the court's directory."),
            ],
        )

    def server_unit(self) -> str:
        # After PostgreSQL, always: at boot a server started first fails its first connection. An ordering only, it
        # is harmless where PostgreSQL is elsewhere or absent. Wanted too when the database is on this machine, so
        # that starting the server starts it; Wants, not Requires, as for the broker: a restart of PostgreSQL does
        # not stop or restart the server, whose pooled connections are pinged and opened again. A PostgreSQL on
        # another machine is not this machine's to start (nor is this one's, if any, the court's).
        wanted = [BROKER_UNIT, "network-online.target", *([POSTGRESQL_UNIT] if self.local_postgresql else [])]
        return _unit(
            self.directory,
            header="The court server: seal-server run (the API, the pages and the ingest).",
            unit=[
                "Description=Court electronic seal server (法院电子封条)",
                f"# After {POSTGRESQL_UNIT} always (an ordering only: harmless without it); wanted only when",
                "# server.toml's database_url is PostgreSQL on this machine (seal-server init --force rewrites this).",
                # Wants, not Requires: a restart of the broker does not restart the server, whose ingest reconnects
                # by itself (its health says degraded meanwhile)
                f"After={BROKER_UNIT} network-online.target {POSTGRESQL_UNIT}",
                "Wants=" + " ".join(wanted),
            ],
            service=[
                "Type=exec",
                *self._account(),
                f"ExecStart={_exec(self.seal_server)} run --config {_exec(self.settings_file)}",
                f"WorkingDirectory={_path(self.directory)}",
                "Restart=on-failure",
                "RestartSec=5",
                "# SIGTERM to every process of the unit (the default, docs/deploy.md): the server ends the live",
                "# streams and the ingest stores the batch in hand. Past the timeout SIGKILL loses nothing, since a",
                "# message is acknowledged only once stored and the seals send it again.",
                "KillMode=control-group",
                f"TimeoutStopSec={SERVER_STOP_TIMEOUT_S}",
                "# A descriptor per connection: systemd's default (1,024) is what one client's slow connections took.",
                f"LimitNOFILE={SERVER_OPEN_FILES}",
                *self._hardening(
                    "# The database, the snapshots and the broker's password and ACL files are in the court's",
                    "# directory; add any other place server.toml writes to (database_url, snapshot_dir).",
                ),
            ],
        )

    @property
    def local_postgresql(self) -> bool:
        return local_postgresql(self.database_url)

    def _account(self) -> list[str]:
        return [f"User={_path(self.user)}", f"Group={_path(self.group)}"]

    def _hardening(self, *comment: str) -> list[str]:
        in_tmp = any(_under(path, tmp) for path in (self.directory, self.seal_server) for tmp in PRIVATE_TMP_DIRS)
        return [
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "# read-only, not yes: the court's directory and the venv may be in a home directory.",
            "ProtectHome=read-only",
            *(
                ["# No PrivateTmp=: it would hide this directory or the venv (in /tmp or /var/tmp), left writable."]
                if in_tmp
                else [
                    "# A /tmp of its own, writable (the real one is read-only with ProtectSystem=strict).",
                    "PrivateTmp=yes",
                ]
            ),
            *comment,
            "ReadWritePaths="
            + " ".join(_word(path) for path in (self.directory, *(PRIVATE_TMP_DIRS if in_tmp else ()))),
        ]


def _unit(directory: Path, *, header: str, unit: list[str], service: list[str]) -> str:
    names = " ".join(name.removesuffix(".service") for name in (BROKER_UNIT, SERVER_UNIT))
    lines = [
        f"# {header}",
        '# Written by seal-server init for this court\'s directory; installed with (README, "Run a court server"):',
        f"#   sudo cp {directory}/systemd/*.service /etc/systemd/system/ && sudo systemctl daemon-reload",
        f"#   sudo systemctl enable --now {names}",
        "",
        "[Unit]",
        *unit,
        "",
        "[Service]",
        *service,
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def _under(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def _path(value: object) -> str:
    """A single value (``PIDFile=``, ``User=``): taken as it is but for ``%`` specifiers."""
    return str(value).replace("%", "%%")


def _word(value: object) -> str:
    """One word of a list (``ReadWritePaths=``), quoted if it holds a blank, a quote or a backslash."""
    text = _path(value)
    if any(c.isspace() or c in "\"'\\" for c in text):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _exec(value: object) -> str:
    """One word of a command line (``ExecStart=``), where ``$`` also names an environment variable."""
    return _word(value).replace("$", "$$")
