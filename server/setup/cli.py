"""``seal-server init DIR``: write a court server's directory (:mod:`server.setup.court_dir`).

seal-server init DIR [--config FILE] [--force] [--http-port N] [--mqtt-port N] [--mqtt-tls-port N]
                     [--public-url URL] [--database-url URL] [--tls-ca FILE --tls-cert FILE --tls-key FILE]

An option not given leaves, with ``--force``, what the existing files say (:mod:`server.setup.rerun`).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from server.config import DATABASE_URL_ENV, NoticeSettings
from server.errors import UsageError
from server.seals.broker_config import LOCAL_PORT, TLS_PORT
from server.setup.court_dir import HTTP_PORT, InitOptions, init_court_dir

logger = logging.getLogger(__name__)

Out = Callable[[str], None]
#: The end of the help of each option a re-run keeps when it is not given.
KEPT = "; with --force, when not given, the existing file's value is kept"


def add_init_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], log_options: argparse.ArgumentParser
) -> None:
    init = commands.add_parser(
        "init",
        parents=[log_options],
        help="write a court server's directory: server.toml, mosquitto.conf, systemd units and the secrets (mode 0600)",
        description="Write DIR/server.toml (every setting, described), DIR/mosquitto.conf (the court's broker: "
        "authentication, the server's password and ACL files, persistence, queue limits, a plain listener on "
        "127.0.0.1 for the server and a TLS listener for the seals), their systemd units DIR/systemd/"
        "court-seal-broker.service and court-seal-server.service (run as this account), the server's MQTT password, "
        "the court's command-signing key, the evidence log's key and the notice key. Existing files are not "
        "overwritten without --force, and secrets never. --force keeps every setting of the existing server.toml and "
        "mosquitto.conf's ports and TLS files, but those an option given now changes; each file it changes is "
        "copied to FILE.bak first, and each change is printed.",
    )
    init.add_argument("directory", metavar="DIR", type=Path, help="the court server's directory (created if absent)")
    init.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="where to write the settings (default DIR/server.toml)",
    )
    init.add_argument(
        "--force",
        action="store_true",
        help="rewrite existing configuration files, keeping the secrets, every setting of server.toml and "
        "mosquitto.conf's ports and TLS files that no option given now changes; a changed file's old copy is FILE.bak",
    )
    init.add_argument(
        "--http-port", type=_port, metavar="N", default=None, help=f"the API's port (default {HTTP_PORT}){KEPT}"
    )
    init.add_argument(
        "--mqtt-port",
        type=_port,
        metavar="N",
        default=None,
        help=f"the broker's plain listener on 127.0.0.1, the server's: mosquitto.conf and [mqtt] port (default "
        f"{LOCAL_PORT}){KEPT}",
    )
    init.add_argument(
        "--mqtt-tls-port",
        type=_port,
        metavar="N",
        default=None,
        help=f"the broker's TLS listener, the seals' (default {TLS_PORT}){KEPT}",
    )
    init.add_argument(
        "--public-url",
        type=_public_url,
        default=None,
        metavar="URL",
        help="the address the public reaches the server at, for the QR codes of notices ([notices] public_base_url)"
        + KEPT,
    )
    init.add_argument(
        "--database-url",
        type=_database_url,
        default=None,
        metavar="URL",
        help="database_url written into server.toml, which the installed service reads (default: $DATABASE_URL if "
        "set, else court.db in DIR)" + KEPT,
    )
    init.add_argument(
        "--tls-ca",
        type=Path,
        default=None,
        metavar="FILE",
        help="CA that issued the broker's certificate (DIR/tls/ca.crt)" + KEPT,
    )
    init.add_argument(
        "--tls-cert",
        type=Path,
        default=None,
        metavar="FILE",
        help="the broker's certificate (DIR/tls/server.crt)" + KEPT,
    )
    init.add_argument(
        "--tls-key",
        type=Path,
        default=None,
        metavar="FILE",
        help="the broker's private key (DIR/tls/server.key)" + KEPT,
    )


def run_init(args: argparse.Namespace, out: Out) -> int:
    options = InitOptions(
        http_port=args.http_port,
        mqtt_port=args.mqtt_port,
        mqtt_tls_port=args.mqtt_tls_port,
        tls_ca=args.tls_ca,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        settings_file=args.config,
        public_base_url=args.public_url,
        database_url=args.database_url or os.environ.get(DATABASE_URL_ENV) or None,
    )
    if getpass.getuser() == "root":
        logger.warning(
            "seal-server init runs as root: the court's files will be root's and mosquitto.conf says `user root`, so "
            "the broker, which faces every seal's network, would keep root. Run init, the server and the broker as "
            'an unprivileged account (README, "Run a court server")'
        )
    try:
        result = init_court_dir(args.directory, options, force=args.force)
    except OSError as exc:  # a directory that cannot be made, a file that cannot be written: one line, not a traceback
        where = exc.filename or args.directory
        raise UsageError(f"无法写入 {where}：{exc.strerror} / cannot write {where}: {exc.strerror}") from None
    if options.database_url is not None and not args.database_url:
        out(f"database_url from ${DATABASE_URL_ENV}, written into the settings (the installed service reads them only)")
    for path in result.written:
        out(f"wrote {path}")
    for path in result.unchanged:
        out(f"unchanged {path}")
    for replaced in result.replaced:
        out(f"changed {replaced.path} (the old one is {replaced.backup})")
        if replaced.path.suffix == ".toml":
            lines = [f"  {line}" for line in result.changed_settings] or ["  (no setting: its comments only)"]
        else:
            lines = [f"  {line}" for line in replaced.diff]
        for line in lines:
            out(line)
    for path in result.kept:
        out(f"kept {path} (an existing secret)")
    for setting in result.kept_settings:
        out(f"kept {setting} (from the existing {options.settings_file or 'server.toml'})")
    if result.seal_server is not None and not os.access(result.seal_server, os.X_OK):
        out(
            f"no seal-server at {result.seal_server}, which court-seal-server.service starts: run init with the "
            "venv's own seal-server (.venv/bin/seal-server init), or edit ExecStart="
        )
    if result.tls is not None:
        missing = [p for p in (result.tls.cafile, result.tls.certfile, result.tls.keyfile) if not p.exists()]
        if missing:
            out(
                f"before starting Mosquitto, provide its TLS listener's (port {result.tls.port}) files: "
                + ", ".join(map(str, missing))
            )
    return 0


def _port(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port")
    return port


def _database_url(text: str) -> str:
    try:
        make_url(text)
    except ArgumentError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a database URL (sqlite:///PATH, postgresql+psycopg://…)"
        ) from None
    return text


def _public_url(text: str) -> str:
    try:
        NoticeSettings(public_base_url=text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(f"{text}: {exc.errors()[0]['msg']}") from None
    return text
