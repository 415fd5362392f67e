"""``seal-server``: run the court server and manage it; each area's commands live in its own ``cli`` module.

    seal-server init DIR [--config FILE] [--force] [--http-port N] [--mqtt-port N] [--mqtt-tls-port N] [--tls-… FILE]
    seal-server run --config FILE
    seal-server ingest --config FILE [--workers N]
    seal-server end-sessions --config FILE [--workers N] [--worker I ...] [--run]
    seal-server init-db --config FILE
    seal-server check-config --config FILE
    seal-server court add CODE NAME --config FILE [--phone ..] [--address ..]
    seal-server case add CASE_NO --config FILE [--court ..] [--judge ..] [--address ..]
    seal-server seal add DEVICE_ID --case CASE_NO --public-key B64 --config FILE [--location ..] [--replace-key]
    seal-server seal rotate-password DEVICE_ID --config FILE [--mqtt-password-file F]
    seal-server user add NAME --role ROLE --config FILE [--case CASE_NO ...] [--password-stdin]
    seal-server user list --config FILE
    seal-server user assign NAME --case CASE_NO --config FILE
    seal-server court-key --config FILE
    seal-server log-key --config FILE
    seal-server export CASE_NO -o FILE --config FILE [--from TIME] [--to TIME]
    seal-server notice DEVICE_ID -o FILE --config FILE
    seal-server notice-key --config FILE
    seal-server notice-revoke NOTICE_ID --note TEXT --config FILE
    seal-server broker server-account --config FILE
    seal-server broker write-files --config FILE
    seal-server broker check --config FILE [--wait S]
    seal-server notify add-target --case CASE_NO --role judge|creditor --url URL --config FILE [--secret-file F]
    seal-server notify list --config FILE [--case CASE_NO]
    seal-server notify remove ID --config FILE
    seal-server quarantine list --config FILE [--reason R] [--device DEVICE_ID] [--since TIME] [--before ID] [--limit N]
    seal-server quarantine show ID --config FILE
    seal-server removal access-code CASE_NO [--rotate] --config FILE
    seal-server removal list --config FILE [--case CASE_NO] [--open]
    seal-server removal show ID --config FILE

Every command also takes --log-level LEVEL (debug, info, warning, error; any case) and --log-format text|json,
before or after its name.

What a command commits that an open page shows (a seal registered, bound or moved, a user assigned, a case added, …)
is told to the open pages over the court's live feed when it ends (server/cli_feed.py); with no broker reachable the
command's work stands and it says on stderr that the pages were not told.

Exit status: 0 done, 1 refused (unknown case, duplicate, …), 2 bad configuration or usage — or a database whose
schema is not this code's: ``run`` and ``init-db`` migrate it, ``ingest`` refuses one behind (run ``init-db``
first), and all three refuse one newer than this code.
"""

from __future__ import annotations

import argparse
import gc
import getpass
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from server.audit.service import acting_as, cli_actor_name
from server.auth.cli import add_user_commands, run_user_command
from server.cli_feed import telling_pages
from server.commands.cli import add_court_key_command, run_court_key
from server.config import Settings, load_settings
from server.config_mqtt import plaintext_warning
from server.config_secrets import check_secrets, check_start_secrets
from server.core.db import START_WAIT_S, in_session, make_engine, schema_fault, when_database_answers
from server.errors import ConfigError, SchemaMismatch, ServerError, UsageError
from server.evidence.cli import add_log_key_command, run_log_key
from server.export.cli import add_export_command, run_export
from server.ingest.quarantine_cli import add_quarantine_commands, run_quarantine_command
from server.ingest.sessions import add_end_sessions_command, run_end_sessions
from server.ingest.workers import add_ingest_command, run_ingest
from server.logs import add_log_options, configure_logging
from server.migrations.run import check_schema, init_db
from server.notices.cli import add_notice_commands, run_notice, run_notice_key, run_notice_revoke
from server.notify.cli import add_notify_commands, run_notify_command
from server.removal.cli import add_removal_commands, run_removal_command
from server.removal.release import take_off_moved
from server.seals.cli import add_seal_commands, run_seal_command
from server.setup.cli import add_init_command, run_init
from server.setup.systemd_units import SERVER_REQUESTS_STOP_S

logger = logging.getLogger("server.cli")
T = TypeVar("T")


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def _parser() -> argparse.ArgumentParser:
    log_options = argparse.ArgumentParser(add_help=False)
    add_log_options(log_options, defaults=False)
    configured = argparse.ArgumentParser(add_help=False, parents=[log_options])
    configured.add_argument(
        "--config", required=True, type=Path, metavar="FILE", help="the server's TOML configuration file"
    )
    # run has no --actor: the server's audit entries name the users who act through it, not who started it
    common = argparse.ArgumentParser(add_help=False, parents=[configured])
    common.add_argument(
        "--actor",
        metavar="NAME",
        help="who runs the command, for the audit log (recorded as cli:NAME; default: the OS user)",
    )

    parser = argparse.ArgumentParser(prog="seal-server", description="Court side of the electronic seal system.")
    add_log_options(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", required=True)
    add_init_command(commands, log_options)
    commands.add_parser("run", parents=[configured], help="serve the API and ingest seal messages from the broker")
    commands.add_parser("init-db", parents=[common], help="create the database tables")
    commands.add_parser("check-config", parents=[common], help="validate the configuration file and exit")

    add_seal_commands(commands, common)
    add_user_commands(commands, common)
    add_court_key_command(commands, common)
    add_log_key_command(commands, common)
    add_export_command(commands, common)
    add_notice_commands(commands, common)
    add_notify_commands(commands, common)
    add_quarantine_commands(commands, common)
    add_removal_commands(commands, common)
    add_ingest_command(commands, common)
    add_end_sessions_command(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level, log_format=args.log_format)
    settings: Settings | None = None
    try:
        if args.command == "init":
            return run_init(args, _out)
        settings = load_settings(args.config)
        if args.command == "run":  # the server's entries name their users ('-': an anonymous caller), not its OS user
            return _dispatch(args, settings)
        with acting_as(cli_actor_name(args.actor or _os_user())):
            if args.command in _SERVING:  # its own live feed publishes what it commits
                return _dispatch(args, settings)
            with telling_pages(settings):  # what it committed, told to the open pages (also after an error)
                return _dispatch(args, settings)
    except (ConfigError, UsageError) as exc:
        logger.error("%s", exc)
        return 2
    except (ServerError, ValueError) as exc:
        logger.error("%s", exc)
        return 1
    except SQLAlchemyError as exc:
        if settings is not None and schema_fault(exc) is not None and (said := _schema_said(settings)) is not None:
            logger.error("%s", said)  # a command of this version against a schema behind (or ahead): what to do
            return 2
        logger.error("database error: %s", exc)
        return 1


def _os_user() -> str:
    """The OS user running the command (its uid if the system has no name for it)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"


#: The commands that run until stopped, each with a live feed of its own.
_SERVING = frozenset({"run", "ingest"})
#: The commands that connect to the broker (and check-config): each warns of plain TCP to a broker elsewhere.
_MQTT_COMMANDS = frozenset({"check-config", "run", "ingest", "end-sessions"})


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command in _MQTT_COMMANDS and (warning := plaintext_warning(settings.mqtt)) is not None:
        logger.warning("%s", warning)
    match args.command:
        case "check-config":
            check_secrets(settings)
            _out(
                f"{args.config}: ok (database {_safe_url(settings.database_url)}, broker "
                f"{settings.mqtt.host}:{settings.mqtt.port}, API {settings.http.host}:{settings.http.port}, "
                f"storage {_storage(settings)})"
            )
            return 0
        case "init-db":
            _migrate(settings, "init-db")
            from server.stores import make_store_roots

            make_store_roots(settings)  # (set up, or upgraded from before the stores' directories were made here)
            _out(f"database ready: {_safe_url(settings.database_url)}")
            return 0
        case "run":
            return _run(settings)
        case "ingest":  # it does not migrate: it refuses a schema that is not its code's
            return run_ingest(args, settings, check_schema=lambda: _check_schema(settings, "seal-server ingest"))
        case "end-sessions":
            return run_end_sessions(args, settings, _out)
        case "court" | "case" | "seal" | "broker":
            return run_seal_command(args, settings, _out, on_moved=take_off_moved)
        case "user":
            return _in_session(settings, lambda session: run_user_command(args, session, _out))
        case "court-key":
            return run_court_key(settings, _out)
        case "log-key":
            return run_log_key(settings, _out)
        case "export":
            return run_export(args, settings, _out)
        case "notice":
            return _in_session(settings, lambda session: run_notice(args, settings, session, _out))
        case "notice-key":
            return run_notice_key(settings, _out)
        case "notice-revoke":
            return _in_session(settings, lambda session: run_notice_revoke(args, session, _out))
        case "notify":
            return _in_session(
                settings, lambda session: run_notify_command(args, session, _out, settings=settings.notify)
            )
        case "quarantine":
            return _in_session(settings, lambda session: run_quarantine_command(args, session, _out))
        case "removal":
            return _in_session(settings, lambda session: run_removal_command(args, session, _out))
    raise AssertionError(f"unhandled command {args.command!r}")


def _run(settings: Settings) -> int:
    import uvicorn

    from server.app import create_app
    from server.stores import Stores

    check_start_secrets(settings)  # one line naming the key, not a traceback from the app's start
    Stores.from_settings(settings).check()  # the bucket must answer before the server takes any event
    _migrate(settings, "seal-server run")
    app = create_app(settings)
    logger.info("court server on http://%s:%d (health: /api/health)", settings.http.host, settings.http.port)
    # uvicorn handles SIGINT/SIGTERM itself (graceful shutdown, ingest stopped), then re-raises the signal it
    # caught to the handler that was installed before it: ours records a clean stop so the exit status is 0.
    stopped: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: stopped.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        # proxy_headers=False: uvicorn would otherwise take the client's address from X-Forwarded-For for any
        # connection from 127.0.0.1; the server decides that itself ([http] trusted_proxies, server.auth).
        # limit_concurrency: past it a request is answered 503 at once. timeout_graceful_shutdown: at a stop, the
        # requests still open (a slow client's) are cancelled after it; the ingest is stopped after them, by the
        # app's lifespan (its batch in hand committed, then acknowledged), all within the unit's TimeoutStopSec.
        config = uvicorn.Config(
            app,
            host=settings.http.host,
            port=settings.http.port,
            log_config=None,
            proxy_headers=False,
            limit_concurrency=settings.http.limit_concurrency,
            timeout_graceful_shutdown=SERVER_REQUESTS_STOP_S,
        )
        # What is allocated by now (modules, classes, the app) lives as long as the process: moved out of the
        # garbage collector's sight, so that a full collection no longer walks it (it held the interpreter for
        # 130-190 ms about once a second under 1,000 events/s: bench/ingest.py, docs/benchmarks.md).
        gc.collect()
        gc.freeze()
        _stream_closing_server(config, close_streams=app.state.live.close).run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stopped:
        logger.info("court server stopped by signal %d", stopped[0])
    return 0


def _migrate(settings: Settings, what: str) -> None:
    """Bring the schema to the newest revision, waiting (:data:`~server.core.db.START_WAIT_S` at most) while the
    database is locked or not answering yet — a service started with its database, or while another process holds
    SQLite's write lock; any other error (a migration that fails) at once, and a schema newer than this code as a
    :class:`~server.errors.SchemaMismatch` (one line, exit status 2)."""
    engine = make_engine(settings.database_url)
    try:
        when_database_answers(lambda: init_db(engine), what=what)
    finally:
        engine.dispose()


def _check_schema(settings: Settings, what: str, *, wait_s: float = START_WAIT_S) -> None:
    """Raise :class:`~server.errors.SchemaMismatch` (one line, exit status 2) unless the database's schema is this
    code's newest, waiting as :func:`_migrate` does (``wait_s`` at most) for a database that is locked or not
    answering yet."""
    engine = make_engine(settings.database_url)
    try:
        when_database_answers(lambda: check_schema(engine), what=what, wait_s=wait_s)
    finally:
        engine.dispose()


def _schema_said(settings: Settings) -> SchemaMismatch | None:
    """Why the database's schema is not this code's (the refusal :func:`check_schema` words), or ``None`` if it is
    (or cannot be read now): for a command whose statement named a table or column the schema lacks."""
    try:
        _check_schema(settings, "the schema's check", wait_s=0)
    except SchemaMismatch as mismatch:
        return mismatch
    except SQLAlchemyError:
        return None
    return None


def _stream_closing_server(config: Any, *, close_streams: Callable[[], None]) -> Any:
    """A uvicorn server that ends the pages' live streams as soon as it is told to stop: uvicorn waits for every
    open response before it shuts down, and a live stream would otherwise last until its own end."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            close_streams()
            super().handle_exit(sig, frame)

    return Server(config)


def _in_session(settings: Settings, work: Callable[[Session], T]) -> T:
    return in_session(settings.database_url, work)


def _storage(settings: Settings) -> str:
    storage = settings.storage
    if storage.backend == "s3":
        return f"s3://{storage.bucket}/{storage.key_prefix} at {storage.endpoint_url or 'AWS ' + storage.region}"
    return f"directory {settings.snapshot_dir}"


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    sys.exit(main())
