"""Events the ingest stores because they are signed — whatever the seal's clock says and whatever its payload holds
(the protocol fixes the envelope, not the payload: ``docs/protocol.md``) — leave the case's pages and its evidence
export working: one such event can never be taken back (the events table is append-only), so a page or an export it
broke would stay broken for the whole case."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from seal_protocol import EventType
from seal_verify import verify_bundle
from server.core.db import SessionFactory
from server.ingest.results import Outcome
from tests.server.helpers import CASE_A, message
from tests.verify.world import CourtWorld, build_world
from tests.web.conftest import CASE, SEAL, PagesWorld

#: The first and the last moment an envelope's ``ts`` can name (years 0001–9999): the last is no moment of the
#: court's clock (UTC+8), whose year 10000 no datetime holds.
FIRST = datetime(1, 1, 1, tzinfo=UTC)
LAST = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
#: Payloads a seal's key in the wrong hands may sign: every value of another JSON type than the agent sends.
ODD_PAYLOADS: list[tuple[EventType, dict[str, Any]]] = [
    (EventType.WARNING_RESULT, {"trigger": {"a": 1}, "trigger_seq": [2], "warning": "played"}),
    (EventType.WARNING_RESULT, {"trigger": "intrusion", "trigger_seq": {"seq": 2}, "warning": {"x": []}}),
    (EventType.SNAPSHOT_TAKEN, {"trigger": "intrusion", "trigger_seq": [1, 2], "warning": "played", "snapshots": 1}),
    (EventType.SNAPSHOT_TAKEN, {"snapshots": ["../../etc/passwd", "A" * 64, "\u202e", ""], "trigger_seq": True}),
    (EventType.INTRUSION, {"warning": ["started"], "warning_languages": {"zh": 1}, "snapshots": {"a": "b"}}),
    (EventType.INTRUSION, {"warning": "pending_confirmation", "armed": "yes", "camera": [None]}),
    (EventType.COMMAND_ACK, {"command_id": [1], "action": {"x": 1}, "result": [True]}),
    (EventType.COMMAND_REJECTED, {"command_id": {"id": 1}, "reason": [1], "detail": {"x": "y"}}),
    (EventType.OUTBOX_FULL, {"thinned": {"n": 1}, "snapshots": "abc", "part": [1]}),
    (EventType.HEARTBEAT, {"speaker": ["failed"], "speaker_failure": 7, "armed": [True], "pir_state": {}}),
]


def send(world: CourtWorld | PagesWorld, data: bytes, topic: str) -> None:
    [result] = world.ingestor.ingest([message(topic, data)])
    assert result.outcome is Outcome.STORED, result


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_case_exports_whatever_its_seals_signed(
    session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    world = build_world(session_factory, database_url, tmp_path)
    seal = world.seals["a1"]
    send(world, seal.event(EventType.INTRUSION, {"armed": True, "warning": "played"}, at=LAST), seal.event_topic)
    send(world, seal.event(EventType.HEARTBEAT, {"armed": True}, at=LAST), seal.event_topic)
    send(world, seal.event(EventType.TAMPER, {"armed": True, "warning": "failed"}, at=FIRST), seal.event_topic)
    for kind, payload in ODD_PAYLOADS:
        send(world, seal.event(kind, payload), seal.event_topic)

    result = world.export(CASE_A, tmp_path / "case.zip")

    verdict = verify_bundle(result.path, log_key=world.log_key.verifier())
    assert verdict.ok, verdict.text()

    assert result.events == 9 + 3 + len(ODD_PAYLOADS)


def test_the_pages_show_any_moment_a_seal_signed(world: PagesWorld) -> None:
    """The moment past the court's clock is shown as the seal signed it, in UTC, said so."""
    seal = world.seal
    send(world, seal.event(EventType.INTRUSION, {"armed": True, "warning": "played"}, at=LAST), seal.event_topic)
    send(world, seal.event(EventType.ARMED, {"reason": "x", "by": None}, at=LAST), seal.event_topic)
    send(world, seal.event(EventType.TAMPER, {"armed": True, "warning": "played"}, at=FIRST), seal.event_topic)
    for kind, payload in ODD_PAYLOADS:
        send(world, seal.event(kind, payload), seal.event_topic)
    case_url = f"/cases/{quote(CASE, safe='')}"

    with world.client("judge") as client:
        pages = {url: client.get(url) for url in (case_url, f"{case_url}/timeline", "/", f"/seals/{SEAL}")}

    assert {url: page.status_code for url, page in pages.items()} == dict.fromkeys(pages, 200)
    assert "9999-12-31 23:59:59 UTC" in pages[case_url].text
    assert "0001-01-01 08:00:00" in pages[case_url].text
