"""The removal workflow's test world: case A with two seals and a user of every role, case B with its own judge; the
API (no broker) and a real ingest for the seals' signed answers. Proof files made the way real ones are."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from seal_protocol import EventType
from server.auth.access import Role
from server.commands.models import CourtCommand
from server.commands.service import expire_due
from server.core.base import utc_now
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.ingest.ingestor import Ingestor
from server.ingest.results import IngestResult
from tests.server.auth_helpers import add_user, bearer
from tests.server.helpers import CASE_A, CASE_B, SimulatedSeal, message, register

Files = list[tuple[str, tuple[str, bytes, str]]]


def pdf_bytes(text: str = "receipt") -> bytes:
    """A small, well-formed PDF (one empty page), its xref offsets computed."""
    content = b"% " + text.encode() + b"\nBT ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
    ]
    return build_pdf(*objects, header=b"%PDF-1.4")


def build_pdf(*objects: bytes, header: bytes = b"%PDF-1.5") -> bytes:
    """A PDF of ``objects`` (numbered from 1, the first the catalogue) with its xref table's offsets computed."""
    out = io.BytesIO()
    out.write(header + b"\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def picture_bytes(kind: str = "PNG", size: tuple[int, int] = (40, 30), shade: int = 90) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (shade, 120, 200)).save(out, format=kind)
    return out.getvalue()


def proof(name: str, data: bytes, content_type: str) -> tuple[str, tuple[str, bytes, str]]:
    return ("files", (name, data, content_type))


def c(case_no: str) -> str:
    return quote(case_no, safe="")


@dataclass
class RemovalWorld:
    client: TestClient
    session_factory: SessionFactory
    ingestor: Ingestor
    seals: dict[str, SimulatedSeal]

    def as_(self, who: str) -> dict[str, str]:
        return bearer(self.session_factory, who)

    def file(
        self, who: str = "debtor", case_no: str = CASE_A, *, files: Files | None = None, ground: str = "paid_in_full"
    ) -> httpx.Response:
        data = {"ground": ground, "statement": "已全部清偿，附银行回单。Paid in full; bank receipt attached."}
        if files is None:
            files = [proof("回单.pdf", pdf_bytes(), "application/pdf")]
        return self.client.post(
            f"/api/cases/{c(case_no)}/removal-requests", data=data, files=files, headers=self.as_(who)
        )

    def filed(self, **kwargs: Any) -> int:
        response = self.file(**kwargs)
        assert response.status_code == 201, response.text
        request_id: int = response.json()["request_id"]
        return request_id

    def act(self, who: str, request_id: int, action: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return self.client.post(f"/api/removal-requests/{request_id}/{action}", json=body or {}, headers=self.as_(who))

    def ok(self, who: str, request_id: int, action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.act(who, request_id, action, body)
        assert response.status_code in (200, 201), response.text
        shown: dict[str, Any] = response.json()
        return shown

    def read(self, request_id: int, who: str = "debtor") -> dict[str, Any]:
        response = self.client.get(f"/api/removal-requests/{request_id}", headers=self.as_(who))
        assert response.status_code == 200, response.text
        shown: dict[str, Any] = response.json()
        return shown

    def approved(self, request_id: int) -> dict[str, Any]:
        self.ok("judge", request_id, "review", {"note": "受理"})
        return self.ok("judge", request_id, "approve", {"reasons": "债务已清偿，准予解除查封。"})

    def commands(self, request: dict[str, Any]) -> dict[str, CourtCommand]:
        """The latest disarm of each seal of ``request`` (as shown), by device id."""
        ids = [seal["command_id"] for seal in request["seals"]]
        with self.session_factory() as session:
            rows = session.scalars(select(CourtCommand).where(CourtCommand.id.in_(ids)))
            return {row.device_id: row for row in rows}

    def answer(self, device_id: str, command_id: int, *, ack: bool = True) -> IngestResult:
        """The seal's signed answer to a command, through the real ingest."""
        seal = self.seals[device_id]
        if ack:
            payload = {"command_id": command_id, "action": "disarm", "result": "disarmed"}
            data = seal.event(EventType.COMMAND_ACK, payload)
        else:
            data = seal.event(
                EventType.COMMAND_REJECTED, {"command_id": command_id, "reason": "expired", "detail": "x"}
            )
        [result] = self.ingestor.ingest([message(seal.event_topic, data)])
        return result

    def expire(self, *command_ids: int) -> None:
        """The court marks ``command_ids`` expired, unanswered (as the dispatcher does once they are past expiry):
        their seals are then ``waiting_for_seal``."""
        with self.session_factory() as session:
            expire_due(session, now=utc_now() + timedelta(days=1), command_ids=list(command_ids))
            session.commit()

    def heard(self, device_id: str, *, armed: bool) -> IngestResult:
        """A signed heartbeat of the seal saying whether it is armed, through the real ingest."""
        seal = self.seals[device_id]
        data = seal.event(EventType.HEARTBEAT, {"armed": armed, "uptime_s": 5})
        [result] = self.ingestor.ingest([message(seal.event_topic, data)])
        return result


def make_world(session_factory: SessionFactory, tmp_path: Path, client: TestClient) -> RemovalWorld:
    """Case A with seals a1 and a2, case B with seal b; clerk, and a judge, officer, creditor and debtor of A; a judge
    and a debtor of B."""
    seals = {d: SimulatedSeal(d, case) for d, case in (("seal-a1", CASE_A), ("seal-a2", CASE_A), ("seal-b", CASE_B))}
    register(session_factory, *seals.values())
    for role in Role:
        add_user(session_factory, role.value, role, () if role is Role.CLERK else (CASE_A,))
    add_user(session_factory, "judge-b", Role.JUDGE, (CASE_B,))
    add_user(session_factory, "debtor-b", Role.DEBTOR, (CASE_B,))
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    return RemovalWorld(client, session_factory, ingestor, seals)
