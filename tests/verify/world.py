"""A court with real evidence for the export and verifier tests: seals that sign hash-chained events (as
``seal_agent`` does), ingested through the real :class:`Ingestor` into a real database, with snapshots, an alarm, and
the log's checkpoints; helpers to export a case and to rewrite a bundle as an attacker would."""

from __future__ import annotations

import hashlib
import io
import shutil
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy import delete, select, text

from seal_protocol import EventType, canonical_json, snapshot_topic
from server.audit.models import AuditEntry
from server.config import Settings
from server.core.append_only import drop_statements
from server.core.db import SessionFactory, make_engine, make_session_factory
from server.core.metrics import IngestMetrics
from server.evidence import log
from server.evidence.checkpoints import LogKey
from server.evidence.models import Event, LogCheckpoint, LogLeaf, LogNode, LogTimestamp
from server.evidence.signed_record import record_path
from server.evidence.tsa import TsaClient
from server.export.bundle import manifest_note_body, sign_note
from server.export.gather import ALL_TIME, TimeRange
from server.export.service import ExportConfig, ExportResult, export_case
from server.ingest.ingestor import Ingestor
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A, CASE_B, SimulatedSeal, jpeg_bytes, message, register


@dataclass
class CourtWorld:
    session_factory: SessionFactory
    settings: Settings
    ingestor: Ingestor
    seals: dict[str, SimulatedSeal]
    pictures: dict[str, bytes] = field(default_factory=dict)  # sha256 -> bytes, of the pictures sent
    shade: int = 0

    @property
    def log_key(self) -> LogKey:
        return LogKey(self.settings.evidence.log_key_file, self.settings.evidence.log_origin)

    def send(self, seal: str, type: EventType = EventType.HEARTBEAT, payload: dict | None = None) -> bytes:
        data = self.seals[seal].event(type, payload or {"armed": True})
        self.ingestor.ingest([message(self.seals[seal].event_topic, data)])
        return data

    def picture(self, seal: str, *, deliver: bool = True) -> str:
        """A new picture of ``seal``: its SHA-256; sent to the court unless ``deliver`` is false."""
        self.shade += 7
        data = jpeg_bytes(shade=self.shade)
        sha = hashlib.sha256(data).hexdigest()
        self.pictures[sha] = data
        if deliver:
            self.ingestor.ingest([message(snapshot_topic(self.seals[seal].device_id, sha), data)])
        return sha

    def deliver(self, seal: str, sha: str) -> None:
        """The picture ``sha`` (made by :meth:`picture`) sent to the court by ``seal`` now."""
        self.ingestor.ingest([message(snapshot_topic(self.seals[seal].device_id, sha), self.pictures[sha])])

    def export(
        self, case_no: str, target: Path, time_range: TimeRange = ALL_TIME, *, tsa: TsaClient | None = None
    ) -> ExportResult:
        with self.session_factory() as session:
            return export_case(
                session,
                case_no=case_no,
                target=target,
                log_key=self.log_key,
                config=replace(ExportConfig.from_settings(self.settings), tsa=tsa),
                actor=None,
                exported_by="cli:test",
                time_range=time_range,
            )


def build_world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    """Two seals in case A, one in case B; events of every kind that names pictures, an alarm."""
    seals = {
        "a1": SimulatedSeal("seal-a1", CASE_A),
        "a2": SimulatedSeal("seal-a2", CASE_A),
        "b1": SimulatedSeal("seal-b1", CASE_B),
    }
    register(session_factory, *seals.values())
    settings = make_settings(database_url, tmp_path)
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=settings.snapshot_dir)
    world = CourtWorld(session_factory, settings, ingestor, seals)
    world.send("a1", EventType.AGENT_STARTED, {"agent_version": "1.0", "armed": True, "outbox_depth": 0})
    world.send("b1")
    world.send("a2")
    held, lost = world.picture("a1"), world.picture("a1", deliver=False)
    world.send("a1", EventType.INTRUSION, {"armed": True, "warning": "failed", "snapshots": [held, lost]})
    later = world.picture("a1")
    world.send("a1", EventType.SNAPSHOT_TAKEN, {"snapshots": [later], "trigger": "intrusion", "trigger_seq": 2})
    world.send("a2", EventType.TAMPER, {"state": "open", "armed": True, "snapshots": [world.picture("a2")]})
    for seal in ("a1", "a2", "b1", "a1", "a1"):
        world.send(seal)
    return world


# -- an attacker who holds the database and the log key -----------------------------------------------------------

#: The tables the database keeps append-only (:mod:`server.core.append_only`): the attacker drops their triggers.
APPEND_ONLY = ("events", "log_leaves", "log_nodes", "log_checkpoints", "log_timestamps", "audit_log")


def drop_append_only_triggers(world: CourtWorld) -> None:
    """What the database's owner can do: the triggers that keep the evidence tables append-only, dropped."""
    with world.session_factory() as session:
        dialect = session.get_bind().dialect.name
        for table in APPEND_ONLY:
            for statement in drop_statements(table, dialect):
                session.execute(text(statement))
        session.commit()


def rebuild_log(world: CourtWorld, *, sizes_to_sign: Sequence[int] = (), remove_record: bool = True) -> None:
    """The log made anew, in its old order, from the events and audit entries as they are now (rows deleted are
    left out), with checkpoints signed by the log's key at ``sizes_to_sign`` (the sizes earlier checkpoints had)
    and at the end. ``remove_record``: the forger, who holds the key file, first deletes the record of the signed
    checkpoints beside it (:mod:`server.evidence.signed_record`), without which the server refuses to sign."""
    if remove_record:
        assert world.log_key.path is not None
        record_path(world.log_key.path).unlink(missing_ok=True)
    with world.session_factory() as session:
        order = session.execute(select(LogLeaf.event_id, LogLeaf.audit_id).order_by(LogLeaf.leaf_index)).all()
        events = {e.id: e.raw for e in session.scalars(select(Event))}
        entries = {a.id: a.record for a in session.scalars(select(AuditEntry))}
        leaves: list[log.Leaf] = []
        for event_id, audit_id in order:
            if event_id is not None and event_id in events:
                leaves.append(("event", event_id, events[event_id]))
            elif audit_id is not None and audit_id in entries:
                leaves.append(("audit", audit_id, entries[audit_id]))
        for table in (LogTimestamp, LogNode, LogLeaf, LogCheckpoint):
            session.execute(delete(table))
        done = 0
        for size in [*sizes_to_sign, len(leaves)]:
            log.append_leaves(session, leaves[done:size])
            done = size
            log.make_checkpoint(session, world.log_key)
            session.flush()
        session.commit()


# -- a bundle rewritten by someone who holds the log key ----------------------------------------------------------


def read_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def zip_members(members: dict[str, bytes], *, compresslevel: int = 1) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    buffer.seek(0)
    return buffer


def write_members(path: Path, members: dict[str, bytes]) -> Path:
    path.write_bytes(zip_members(members).getvalue())
    return path


def resign(members: dict[str, bytes], key: LogKey) -> dict[str, bytes]:
    """The bundle with its manifest made anew for the files as they are now and signed with the log's key."""
    import json

    head = json.loads(members["manifest.json"])
    files = [
        {"path": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for name, data in sorted(members.items())
        if name not in ("manifest.json", "manifest.sig")
    ]
    manifest = canonical_json({**head, "files": files})
    note = sign_note(manifest_note_body(manifest, head["format"]), key.origin, key.get())
    return {**members, "manifest.json": manifest, "manifest.sig": note.encode("utf-8")}


def lines(data: bytes) -> list[bytes]:
    return data[:-1].split(b"\n") if data else []


def join(parts: list[bytes]) -> bytes:
    return b"".join(part + b"\n" for part in parts)


# -- one real bundle for tests that only rewrite its zip --------------------------------------------------------


@dataclass(frozen=True)
class Exported:
    """A real bundle's bytes, its members, and the log key it verifies with."""

    data: bytes
    members: dict[str, bytes]
    log_key: str


def export_once(tmp_path: Path, migrated_sqlite: Path) -> Exported:
    """Case A of :func:`build_world` exported, on a copy of the migrated SQLite template (for module fixtures)."""
    shutil.copyfile(migrated_sqlite, tmp_path / "court.db")
    url = f"sqlite:///{tmp_path / 'court.db'}"
    engine = make_engine(url)
    try:
        world = build_world(make_session_factory(engine), url, tmp_path)
        path = world.export(CASE_A, tmp_path / "case.zip").path
        return Exported(path.read_bytes(), read_members(path), world.log_key.verifier())
    finally:
        engine.dispose()
