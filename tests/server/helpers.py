"""Test helpers: a seal that makes signed events the way a real one does, and registration shortcuts."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from seal_protocol import EventType, encode_envelope, envelope_hash, event_topic, new_envelope, status_topic
from seal_protocol.signing import SigningKey, generate_signing_key, public_key_b64, sign_envelope
from server.core.db import SessionFactory, make_engine, make_session_factory, session_scope
from server.ingest.late_chain import HOLD_BACK_LIMIT
from server.ingest.results import Message
from server.migrations.run import init_db
from server.seals.case_numbers import InvalidCaseNumber, parse_case_no
from server.seals.cases import add_case
from server.seals.models import Case, SealBinding
from server.seals.registry import register_seal

CASE_A = "(2021)苏0214执1234号"
CASE_B = "(2022)苏0214执55号"


@dataclass
class SimulatedSeal:
    """Signs hash-chained events with its own key, like ``seal_agent`` does."""

    device_id: str
    case_no: str
    key: SigningKey = field(default_factory=generate_signing_key)
    seq: int = 0
    prev_hash: str | None = None

    @property
    def public_key(self) -> str:
        return public_key_b64(self.key)

    @property
    def event_topic(self) -> str:
        return event_topic(self.device_id)

    @property
    def status_topic(self) -> str:
        return status_topic(self.device_id)

    def event(
        self,
        type: EventType = EventType.HEARTBEAT,
        payload: dict[str, Any] | None = None,
        *,
        case_no: str | None = None,
        key: SigningKey | None = None,
        seq: int | None = None,
        at: datetime | None = None,
    ) -> bytes:
        """The wire bytes of the next event (or of ``seq``), signed by ``key`` (default: the seal's own), stamped
        ``at`` (default: now)."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        envelope = new_envelope(
            device_id=self.device_id,
            case_no=case_no or self.case_no,
            seq=seq,
            type=type,
            payload=payload,
            prev_hash=self.prev_hash,
            now=at,
        )
        data = encode_envelope(sign_envelope(envelope, key or self.key))
        self.prev_hash = envelope_hash(data)
        return data


def jpeg_bytes(width: int = 32, height: int = 24, shade: int = 0) -> bytes:
    """A small real JPEG picture (OpenCV's encoder), different for each ``shade``."""
    import cv2  # the agent's extra; imported here so that only tests that need a picture need it
    import numpy as np

    picture = np.full((height, width, 3), shade % 256, dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", picture)
    assert ok
    return bytes(encoded.tobytes())


def message(topic: str, payload: bytes) -> Message:
    return Message(topic, payload, datetime.now(UTC))


COURT_CODE = "苏0214"
COURT_NAME = "无锡市滨湖区人民法院"
#: The court telephone a notice prints (every notice needs one: server.notices.facts.REQUIRED_FACTS).
COURT_PHONE = "0510-85000000"


def notice_facts(case_no: str) -> dict[str, Any]:
    """The facts of a case (``add_case`` keywords) every notice prints besides the court's telephone: what is sealed,
    where, the ruling the seizure rests on and its last day."""
    return {
        "address": "无锡市滨湖区某路1号101室",
        "sealed_property": "房屋一套及室内设备",
        "ruling_no": f"{case_no}之一",
        "seizure_expires_on": date(2029, 12, 3),
    }


def add_test_case(session: Session, case_no: str) -> Case:
    """Add a case, its court named after its code (苏0214 by its real name); a number that is not an enforcement case
    number is added as a legacy case (one stored before numbers were checked), as the migration keeps them."""
    try:
        code = parse_case_no(case_no).court_code
    except InvalidCaseNumber:
        case = Case(case_no=case_no)
        session.add(case)
        session.flush()
        return case
    court = COURT_NAME if code == COURT_CODE else f"{code}人民法院"
    return add_case(session, actor=None, case_no=case_no, court=court, judge="王法官", judge_phone="0510-85000000")


def register(session_factory: SessionFactory, *seals: SimulatedSeal) -> None:
    """Add each seal's case (once) and register the seal bound to it."""
    with session_scope(session_factory) as session:
        for case_no in dict.fromkeys(seal.case_no for seal in seals):
            add_test_case(session, case_no)
        for seal in seals:
            register_seal(
                session,
                actor=None,
                device_id=seal.device_id,
                case_no=seal.case_no,
                public_key=seal.public_key,
                location="仓库",
            )


def refuse_seq_in_the_database(session_factory: SessionFactory, database_url: str, seq: int) -> None:
    """Make the database itself refuse to store events with ``seq`` (a trigger), as a full or broken table would."""
    with session_factory() as session:
        if database_url.startswith("postgresql"):
            session.execute(
                text(
                    "CREATE FUNCTION refuse_event() RETURNS trigger AS $$ BEGIN "
                    f"IF NEW.seq = {seq} THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END "
                    "$$ LANGUAGE plpgsql"
                )
            )
            session.execute(
                text("CREATE TRIGGER refuse BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse_event()")
            )
        else:
            session.execute(
                text(
                    f"CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.seq = {seq} "
                    "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                )
            )
        session.commit()


def moved_long_ago(session_factory: SessionFactory, device_id: str) -> None:
    """The seal's newest binding began more than ``HOLD_BACK_LIMIT`` ago (each earlier one a minute before the next;
    their ends are kept, so the events stamped within them keep their cases): a moved seal's pictures that no event
    names are no longer held back for the move (:func:`server.ingest.late_chain.recently_moved`)."""
    with session_scope(session_factory) as session:
        query = select(SealBinding).where(SealBinding.device_id == device_id)
        start = datetime.now(UTC) - HOLD_BACK_LIMIT - timedelta(hours=1)
        for binding in session.scalars(query.order_by(SealBinding.bound_at.desc(), SealBinding.id.desc())):
            binding.bound_at = min(binding.bound_at, start)
            start = binding.bound_at - timedelta(minutes=1)


def bring_back(path: Path, *seals: SimulatedSeal) -> None:
    """Tables and the ``seals``' registrations appear in ``path`` at once: built aside, then copied in by SQLite's
    backup in one step (tables first and the seals a moment later let a retry in between refuse the event as
    unknown_seal)."""
    ready = path.with_name("ready.db")
    engine = make_engine(f"sqlite:///{ready}")
    try:
        init_db(engine)
        register(make_session_factory(engine), *seals)
    finally:
        engine.dispose()
    with sqlite3.connect(ready) as source, sqlite3.connect(path) as target:
        source.backup(target)
