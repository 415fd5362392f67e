"""A court with two registered seals and a real ingest on the test database, for the chain and alarm tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from seal_protocol import decode_envelope, encode_envelope
from seal_protocol.signing import SigningKey, sign_envelope
from server.alarms.models import Alarm
from server.config import AlarmSettings, IngestSettings
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.evidence.models import Event
from server.ingest.ingestor import Ingestor
from server.ingest.models import ChainState, QuarantinedMessage
from server.ingest.results import IngestResult, Message
from tests.server.helpers import CASE_A, CASE_B, SimulatedSeal, register


@dataclass
class Court:
    session_factory: SessionFactory
    ingestor: Ingestor
    metrics: IngestMetrics
    a: SimulatedSeal
    b: SimulatedSeal

    def send(self, seal: SimulatedSeal, *payloads: bytes, at: datetime | None = None) -> list[IngestResult]:
        """Ingest ``payloads`` of ``seal``'s event topic as one batch."""
        received = at or datetime.now(UTC)
        return self.ingestor.ingest([Message(seal.event_topic, data, received) for data in payloads])

    def seqs(self, device_id: str) -> list[int]:
        with self.session_factory() as session:
            return list(session.scalars(select(Event.seq).where(Event.device_id == device_id).order_by(Event.seq)))

    def quarantine(self) -> list[QuarantinedMessage]:
        with self.session_factory() as session:
            return list(session.scalars(select(QuarantinedMessage).order_by(QuarantinedMessage.id)))

    def alarms(self, kind: str | None = None) -> list[Alarm]:
        with self.session_factory() as session:
            query = select(Alarm).order_by(Alarm.id)
            if kind is not None:
                query = query.where(Alarm.kind == kind)
            return list(session.scalars(query))

    def chain(self, device_id: str) -> ChainState:
        with self.session_factory() as session:
            state = session.get(ChainState, device_id)
            assert state is not None
            return state


def make_court(
    session_factory: SessionFactory,
    tmp_path: Path,
    *,
    fold_window_s: int = 300,
    offline_grace_s: float = 0,
    ingest: IngestSettings | None = None,
) -> Court:
    """Two seals on two cases and an ingestor; ``offline_grace_s`` 0: an offline status raises its alarm at once.
    ``ingest``: the ingest's settings (its quarantine budget)."""
    a, b = SimulatedSeal("seal-a", CASE_A), SimulatedSeal("seal-b", CASE_B)
    register(session_factory, a, b)
    metrics = IngestMetrics()
    ingestor = Ingestor(
        session_factory,
        metrics=metrics,
        snapshot_dir=tmp_path / "snapshots",
        alarms=AlarmSettings(fold_window_s=fold_window_s, offline_grace_s=offline_grace_s),
        ingest=ingest,
    )
    return Court(session_factory, ingestor, metrics, a, b)


def resigned(data: bytes, key: SigningKey, **changes: Any) -> bytes:
    """``data`` with some fields changed and signed again by ``key`` (a seal's key in the wrong hands)."""
    envelope = decode_envelope(data).model_copy(update={**changes, "sig": None})
    return encode_envelope(sign_envelope(envelope, key))
