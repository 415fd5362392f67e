"""``seal-server end-sessions``: end the broker's persistent sessions of ingest workers taken away.

    seal-server end-sessions --config FILE [--workers N] [--worker I ...] [--run]

A worker's session (client id ``<client_id>-ingest-<i>``, :func:`~server.core.mqtt.client_name`) outlives its
process by ``[mqtt] session_expiry_s``, a member of the shared group all that time: the broker keeps giving it its
share of every seal's events, which wait in the session until the seals send them again. Likewise a process that
leaves the group, or whose group is renamed, keeps the old ``$share/…`` subscription in its session.

For each client id this connects with clean start (MQTT v5: the broker discards the session it kept) and a session
expiry of 0 (the new, empty session ends at the disconnect), then disconnects. What the ended session held is
dropped by the broker; that loses no evidence, since a seal keeps every event until the court's receipt names it
and sends it again after its ``[delivery] receipt_timeout_s``.

It refuses, touching no session, when a ``seal-server run`` or ``ingest`` started with the same configuration file
holds one of them on this machine (:mod:`server.ingest.running_here`). Elsewhere, MQTT gives no way to ask whether a
client id is connected without taking its session over. So each connection is held for :data:`HOLD_S`, longer than
a court client waits before it reconnects (:data:`RECONNECT_MAX_S`): a worker that is still running reconnects and
takes its session back, the broker closes our connection (Mosquitto 2.0 just closes it; a broker may say "Session
taken over"), and that id is reported as taken back (exit status 1). That worker goes on (it subscribes again on
every connection); what its session held is dropped and sent again by the seals, as above. A connection that breaks
for another reason during the hold is reported the same way: run the command again once no worker with that id
runs. Stop the workers first: a worker that starts only after the hold is not seen.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy.exc import SQLAlchemyError

from server.config import MqttSettings, Settings
from server.core.db import make_engine, make_session_factory, session_scope
from server.core.mqtt import RECONNECT_MAX_S, client_name, make_client
from server.errors import BrokerUnavailable, ConfigError, Conflict
from server.ingest.running_here import roles_running_here
from server.ingest.workers import MAX_WORKERS
from server.marks.marks import forget_marks

logger = logging.getLogger(__name__)

#: How long each connection is held so that a running client with the same id, which reconnects within
#: RECONNECT_MAX_S of being taken over, takes it back and shows itself.
HOLD_S = RECONNECT_MAX_S + 2.0
#: How long the broker has to answer a CONNECT.
CONNACK_TIMEOUT_S = 10.0


class SessionEnd(Enum):
    ENDED = "ended"
    TAKEN_BACK = "taken back"  # the broker ended the connection while it was held: a client with this id runs
    REFUSED = "refused"  # the broker refused the connection or did not answer


@dataclass
class _Attempt:
    role: str
    client: mqtt.Client
    connack: ReasonCode | None = None
    dropped: ReasonCode | None = None  # why the broker ended the connection before we did
    leaving: bool = False  # our own DISCONNECT is sent

    @property
    def name(self) -> str:
        return self.role or "run"

    @property
    def reason(self) -> str:
        """The broker's CONNACK, or why it ended the connection before our disconnect."""
        said = self.dropped if self.outcome() is SessionEnd.TAKEN_BACK else self.connack
        return "no answer" if said is None else str(said)

    def outcome(self) -> SessionEnd:
        if self.connack is None or self.connack.is_failure:
            return SessionEnd.REFUSED
        return SessionEnd.ENDED if self.dropped is None else SessionEnd.TAKEN_BACK


def add_end_sessions_command(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "end-sessions",
        parents=[common],
        help="结束已撤下的接收进程在代理上的会话 / end the broker sessions of ingest workers taken away (stop them "
        "first); what the sessions held is dropped and the seals send it again",
    )
    parser.add_argument("--workers", type=int, metavar="N", help="workers 1 to N of this configuration")
    parser.add_argument(
        "--worker", type=int, action="append", default=[], metavar="I", help="worker I (may be repeated)"
    )
    parser.add_argument("--run", action="store_true", help="seal-server run's own ingest session as well")


def run_end_sessions(args: argparse.Namespace, settings: Settings, out: Callable[[str], None]) -> int:
    """End the sessions ``args`` names; 0 if every one was ended, 1 if one was running or could not be ended."""
    roles = session_roles(args.workers, args.worker, run=args.run)
    running = roles_running_here(args.config)
    busy = [f"{client_name(settings.mqtt, role)}-… (process {running[role]})" for role in roles if role in running]
    if busy:
        raise Conflict(
            f"end-sessions: refused, these clients run on this machine with {args.config}: {', '.join(busy)}; "
            "stop them first (ending their sessions would take them over)"
        )
    outcomes = end_sessions(settings.mqtt, roles)
    for role, outcome in outcomes.items():
        out(f"{client_name(settings.mqtt, role)}-…: {_SAY[outcome]}")
    _forget_marks(settings, [client_name(settings.mqtt, r) for r, o in outcomes.items() if o is SessionEnd.ENDED])
    return 0 if all(outcome is SessionEnd.ENDED for outcome in outcomes.values()) else 1


def _forget_marks(settings: Settings, workers: list[str]) -> None:
    """The caught-up marks of the workers whose sessions ended no longer hold the judging back
    (:mod:`server.marks.marks`)."""
    if not workers:
        return
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            forget_marks(session, workers)
    except SQLAlchemyError as exc:  # they stop counting after [liveness] mark_forget_s anyway
        logger.warning("the caught-up marks of %s were not deleted: %s", ", ".join(workers), exc)
    finally:
        engine.dispose()


_SAY = {
    SessionEnd.ENDED: "session ended",
    SessionEnd.TAKEN_BACK: "TAKEN BACK: a client with this id connected meanwhile (a worker that still runs), or "
    "the connection broke; stop any worker with this id and run this again",
    SessionEnd.REFUSED: "not ended: the broker refused the connection or did not answer",
}


def session_roles(workers: int | None, worker: Sequence[int], *, run: bool) -> list[str]:
    """The client roles of workers 1 to ``workers``, of each of ``worker``, and of ``run`` (the plain client id)."""
    indexes = sorted({*range(1, (workers or 0) + 1), *worker})
    if not indexes and not run:
        raise ConfigError("end-sessions: name the sessions to end (--workers N, --worker I, --run)")
    bad = [i for i in indexes if not 1 <= i <= MAX_WORKERS]
    if bad:
        raise ConfigError(f"end-sessions: workers are numbered 1 to {MAX_WORKERS}, not {bad}")
    return ([""] if run else []) + [f"ingest-{i}" for i in indexes]


def end_sessions(settings: MqttSettings, roles: Sequence[str], *, hold_s: float = HOLD_S) -> dict[str, SessionEnd]:
    """End the persistent session of each of ``roles``' client ids (all at once), holding each connection
    ``hold_s`` to see whether a running client takes it back. Raise :class:`BrokerUnavailable` if the broker
    cannot be reached."""
    attempts: list[_Attempt] = []
    unreachable: dict[str, BrokerUnavailable] = {}  # roles whose connection failed after others' were made
    try:
        for role in roles:
            try:
                attempts.append(_connect(settings, role))
            except BrokerUnavailable as exc:
                unreachable[role] = exc
        if not attempts:
            raise next(iter(unreachable.values()))
        _loop_until(attempts, lambda: all(a.connack is not None for a in attempts), CONNACK_TIMEOUT_S)
        _loop_until(attempts, lambda: False, hold_s)
    finally:
        for attempt in attempts:
            attempt.leaving = True
            attempt.client.disconnect()  # with session expiry 0: the broker ends the session now
        _loop_until(attempts, lambda: all(a.client.socket() is None for a in attempts), CONNACK_TIMEOUT_S)
    for role, failure in unreachable.items():  # the broker went away during the run: said, with what was done before
        logger.error("session of %s (client id %s-…): %s (%s)", role, client_name(settings, role), "not ended", failure)
    made = {attempt.role: attempt.outcome() for attempt in attempts}
    outcomes = {role: made.get(role, SessionEnd.REFUSED) for role in roles}  # in the order asked
    for attempt in attempts:
        log = logger.info if outcomes[attempt.role] is SessionEnd.ENDED else logger.error
        log(
            "session of %s (client id %s-…): %s (%s)",
            attempt.name,
            client_name(settings, attempt.role),
            outcomes[attempt.role].value,
            attempt.reason,
        )
    return outcomes


def _connect(settings: MqttSettings, role: str) -> _Attempt:
    client = make_client(settings, role=role)
    attempt = _Attempt(role, client)

    def on_connect(_c: mqtt.Client, _u: Any, _flags: Any, reason_code: ReasonCode, _p: Any) -> None:
        attempt.connack = reason_code

    def on_disconnect(_c: mqtt.Client, _u: Any, _flags: Any, reason_code: ReasonCode, _p: Any) -> None:
        if not attempt.leaving:  # taken back by a client with this id, or the connection broke
            attempt.dropped = reason_code

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 0  # the new session ends at the disconnect
    try:
        client.connect(
            settings.host, settings.port, keepalive=settings.keepalive_s, clean_start=True, properties=properties
        )
    except OSError as exc:
        raise BrokerUnavailable(f"cannot reach the broker at {settings.host}:{settings.port}: {exc}") from exc
    return attempt


def _loop_until(attempts: Sequence[_Attempt], done: Callable[[], bool], timeout_s: float) -> None:
    """Run the clients' network loops (this thread, no automatic reconnect) until ``done()`` or ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        open_ = [attempt for attempt in attempts if attempt.client.socket() is not None]
        if not open_:
            return
        for attempt in open_:
            attempt.client.loop(timeout=0.02)
