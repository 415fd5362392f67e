"""Whose ``snapshot_lost`` counts for a picture (``docs/evidence.md``, "Snapshots"), as ``seal-verify`` reads it
(:func:`seal_verify.snapshot_checks.lost_statements`) and as the export writes it
(:func:`server.export.pictures.lost_statements`): the two must agree, event by event, on real signed events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from seal_protocol import EventType, decode_envelope
from seal_verify.event_checks import EventLine
from seal_verify.snapshot_checks import lost_statements
from server.export import pictures
from tests.server.helpers import CASE_A, SimulatedSeal

X, Y, Z, W, V, U, T = (f"{n:064x}" for n in (1, 2, 3, 4, 5, 6, 7))


@dataclass(frozen=True)
class Line:
    """An exported event line as the export reads it."""

    raw: bytes
    device_id: str
    seq: int


def _lost(sha: object, reason: object = "corrupt") -> dict[str, Any]:
    return {"snapshot": sha, "reason": reason, "detail": "", "kept": None}


def _events() -> list[bytes]:
    a1, a2 = SimulatedSeal("seal-a1", CASE_A), SimulatedSeal("seal-a2", CASE_A)
    return [
        a1.event(EventType.INTRUSION, {"armed": True, "snapshots": [X, Y]}),  # a1 seq 1 names X and Y
        a1.event(EventType.SNAPSHOT_LOST, _lost(X)),  # a1 seq 2: counts
        a2.event(EventType.SNAPSHOT_LOST, _lost(Y)),  # a2 never named Y: another seal's word
        a1.event(EventType.SNAPSHOT_LOST, _lost(Z)),  # a1 seq 3, before it names Z (seq 4)
        a1.event(EventType.TAMPER, {"state": "open", "armed": True, "snapshots": [Z]}),
        a1.event(EventType.SNAPSHOT_LOST, _lost(W)),  # seq 5: W is named by this snapshot_lost alone
        a1.event(EventType.SNAPSHOT_LOST, _lost(W)),  # seq 6: nor by another snapshot_lost
        a1.event(EventType.SNAPSHOT_LOST, _lost(Y, {"why": "x"}) | {"kept": "corrupt/y.jpg"}),  # seq 7: counts
        a1.event(EventType.SNAPSHOT_LOST, _lost([X])),  # seq 8: names no picture
        a1.event(EventType.SNAPSHOT_LOST, _lost(None) | {"snapshots": [V]}),  # seq 9: a snapshot_lost names V
        a1.event(EventType.SNAPSHOT_LOST, _lost(V)),  # seq 10: named before only by a snapshot_lost
        a1.event(EventType.INTRUSION, {"armed": True, "snapshots": [U, T]}),  # seq 11
        a1.event(EventType.SNAPSHOT_LOST, _lost(U)),  # seq 12: U is named again after it (seq 14): queued again
        a1.event(EventType.SNAPSHOT_LOST, _lost(T)),  # seq 13: so is T
        a1.event(EventType.INTRUSION, {"armed": True, "snapshots": [U, T]}),  # seq 14 (one black frame again)
        a1.event(EventType.SNAPSHOT_LOST, _lost(T, "missing")),  # seq 15: after the last naming: counts
    ]


EXPECTED = {
    X: [{"device_id": "seal-a1", "kept": None, "reason": "corrupt", "seq": 2}],
    Y: [{"device_id": "seal-a1", "kept": "corrupt/y.jpg", "reason": None, "seq": 7}],
    T: [{"device_id": "seal-a1", "kept": None, "reason": "missing", "seq": 15}],
}


def test_seal_verify_counts_a_loss_only_from_the_seal_that_named_the_picture_earlier() -> None:
    events = [EventLine(n, raw, decode_envelope(raw), None) for n, raw in enumerate(_events(), 1)]
    assert lost_statements(events) == EXPECTED


def test_the_export_counts_the_same_losses() -> None:
    signed = []
    for raw in _events():
        envelope = decode_envelope(raw)
        signed.append(pictures.Signed.of(Line(raw, envelope.device_id, envelope.seq)))
    assert pictures.lost_statements(signed) == EXPECTED
