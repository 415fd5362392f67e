"""A court at scale in the page tests' database, written straight into its tables (no signatures are checked by the
pages): ``cases`` cases, ``seals`` seals bound round-robin to them, each with a heartbeat and an intrusion event,
and an open intrusion alarm on the first ``alarms`` seals. :func:`counting_queries` counts the statements a block
runs on an engine — how the tests see a query per seal or per alarm (N+1)."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, event, insert

from server.alarms.models import Alarm
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.evidence.models import Event
from server.seals.cases import add_case
from server.seals.models import Seal

CASE_FORMAT = "(2026)苏0214执{}号"


@dataclass(frozen=True)
class Scale:
    cases: int
    seals: int
    alarms: int


def case_no(index: int) -> str:
    return CASE_FORMAT.format(index + 101)


def seal_id(index: int) -> str:
    return f"seal-scale-{index:05d}"


def seed(session_factory: SessionFactory, scale: Scale, *, events_per_seal: int = 2, first: int = 0) -> None:
    """The court of ``scale`` (see the module docstring); every seal online (heard just now). ``first``: the index of
    the first case and seal (a second call adds a court of its own beside the first)."""
    now = utc_now()
    with session_scope(session_factory) as session:
        for index in range(first, first + scale.cases):
            add_case(session, actor=None, case_no=case_no(index), court="无锡市新吴区人民法院", judge="王法官")
    seals: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for index in range(first, first + scale.seals):
        device = seal_id(index)
        case = case_no(first + (index - first) % scale.cases)
        seals.append(
            {
                "device_id": device,
                "public_key": base64.b64encode(index.to_bytes(32, "big")).decode("ascii"),  # each its own
                "case_no": case,
                "location": f"新吴区长江路 {index} 号",
                "registered_at": now,
                "status": "online",
                "status_changed_at": now,
                "last_seen_at": now,
                "last_event_at": now,
                "armed": True,
            }
        )
        for seq in range(1, events_per_seal + 1):
            kind = "intrusion" if seq == events_per_seal else "heartbeat"
            events.append(event_row(device, case, seq, kind, now))
    with session_scope(session_factory) as session:
        session.execute(insert(Seal), seals)
        for start in range(0, len(events), 5000):
            session.execute(insert(Event), events[start : start + 5000])
    with session_scope(session_factory) as session:
        opened = now - timedelta(minutes=5)
        rows = [
            {
                "case_no": case_no(first + (index - first) % scale.cases),
                "device_id": seal_id(index),
                "kind": "intrusion",
                "severity": "high",
                "state": "open",
                "opened_at": opened,
                "last_seen_at": opened,
                "count": 1,
                "details": {},
            }
            for index in range(first, first + scale.alarms)
        ]
        if rows:
            session.execute(insert(Alarm), rows)


def event_row(device: str, case: str, seq: int, kind: str, now: Any) -> dict[str, Any]:
    event_id = hashlib.sha256(f"{device}/{seq}".encode()).hexdigest()[:32]
    return {
        "device_id": device,
        "case_no": case,
        "seq": seq,
        "event_id": event_id,
        "type": kind,
        "ts": now,
        "received_at": now,
        "prev_hash": None,
        "sig": "0" * 128,
        "payload": {"armed": True} if kind != "heartbeat" else {"outbox_depth": 0},
        "raw": b"{}",
    }


#: The threads of the app's rounds (server.core.rounds.RoundLoop names them): their statements are not a page's.
BACKGROUND_ROUNDS = frozenset(
    {
        "notification-worker",
        "liveness-checker",
        "ingest-marker",
        "removal-settler",
        "log-checkpointer",
        "log-timestamper",
        "court-receiving",
        "command-dispatcher",
    }
)


@contextmanager
def counting_queries(engine: type[Engine] | Engine = Engine) -> Iterator[list[str]]:
    """The statements run on ``engine`` (by default: every engine) while the block runs (any thread but the app's
    background rounds, which run on their own clock: the court's receiving check reads once a second)."""
    statements: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if threading.current_thread().name not in BACKGROUND_ROUNDS:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", note)


#: Every so many SQLite virtual-machine instructions, :func:`counting_steps` counts one.
STEP = 100


@contextmanager
def counting_steps(engine: type[Engine] | Engine = Engine) -> Iterator[list[int]]:
    """The work SQLite does for the statements run while the block runs (one in the list per :data:`STEP` of its
    virtual machine's instructions, the app's background rounds not counted): how the tests see a query walk an
    index through rows it does not show — a number, unlike a time, the same on a slow machine as on a fast one."""
    steps: list[int] = []
    touched: list[Any] = []

    def count() -> int:
        if threading.current_thread().name not in BACKGROUND_ROUNDS:
            steps.append(1)
        return 0

    def install(conn: Any, *_args: Any) -> None:
        raw = conn.connection.driver_connection
        if raw not in touched and hasattr(raw, "set_progress_handler"):
            raw.set_progress_handler(count, STEP)
            touched.append(raw)

    event.listen(engine, "before_cursor_execute", install)
    try:
        yield steps
    finally:
        event.remove(engine, "before_cursor_execute", install)
        for raw in touched:
            raw.set_progress_handler(None, STEP)
