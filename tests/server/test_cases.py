"""Courts, case numbers and a case's status: through the API, the service functions and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from seal_protocol import EventType
from server.alarms.models import Alarm
from server.app import create_app
from server.audit.models import AuditEntry
from server.auth.access import Role
from server.core.db import SessionFactory, session_scope
from server.core.metrics import IngestMetrics
from server.errors import Conflict
from server.evidence.models import Event
from server.ingest.ingestor import Ingestor
from server.migrations.run import downgrade, upgrade
from server.seals.case_numbers import InvalidCaseNumber, parse_case_no
from server.seals.cases import get_case, set_case_status
from server.seals.models import Case, CaseStatus, Seal
from server.seals.registry import bind_seal, unbind_seal
from tests.server.auth_helpers import add_user, bearer, make_settings
from tests.server.helpers import COURT_NAME, SimulatedSeal, message, register

CASE = "(2021)苏0214执1234号"


@pytest.mark.parametrize(
    ("text", "year", "court", "kind", "number"),
    [
        ("(2021)苏0214执1234号", 2021, "苏0214", "执", 1234),
        ("（2021）苏0214执恢12号", 2021, "苏0214", "执恢", 12),
        ("(2019)苏02执保3号", 2019, "苏02", "执保", 3),
        ("(2024)京执异7号", 2024, "京", "执异", 7),
        ("(2022)最高法执监100号", 2022, "最高法", "执监", 100),
        (" (2020)沪0115执9999999号 ", 2020, "沪0115", "执", 9999999),
        ("〔2023〕新01执督4号", 2023, "新01", "执督", 4),
        ("(2023)兵08执请2号", 2023, "兵08", "执请", 2),
    ],
)
def test_enforcement_case_numbers_are_read_and_written_canonically(
    text: str, year: int, court: str, kind: str, number: int
) -> None:
    parsed = parse_case_no(text)
    assert (parsed.year, parsed.court_code, parsed.kind, parsed.number) == (year, court, kind, number)
    assert parsed.text == f"({year}){court}{kind}{number}号"
    assert parse_case_no(parsed.text) == parsed


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2021苏0214执1234号",  # no parentheses
        "(2021)苏0214执1234",  # no 号
        "(2021)苏0214民初1234号",  # a civil case, not enforcement
        "(2021)苏021执1234号",  # three digits in the court code
        "(2021)苏0214执01234号",  # a leading zero
        "(2021)苏0214执0号",
        "(21)苏0214执1234号",
        "(2021)苏0214执12345678号",  # too long a number
        "(2021)苏0214执1234号 and more",
        "(2021)su0214执1234号",
        "(2021)苏0214执2/3号",
        "(2021)苏０２１４执1234号",  # full-width digits
        "(2021)苏٠٢١٤执1234号",
        "(2021)的执1号",  # not a province
    ],
)
def test_anything_else_is_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(InvalidCaseNumber, match=r"\(2021\)苏0214执1234号"):
        parse_case_no(text)


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False)) as instance:
        yield instance


def clerk_headers(session_factory: SessionFactory, client: TestClient) -> dict[str, str]:
    add_user(session_factory, "clerk", Role.CLERK)
    return bearer(session_factory, "clerk")


@pytest.mark.postgres
def test_the_court_comes_from_the_number_and_is_named_once(session_factory: SessionFactory, client: TestClient) -> None:
    headers = clerk_headers(session_factory, client)
    unnamed = client.post("/api/cases", json={"case_no": CASE}, headers=headers)
    assert unnamed.status_code == 422
    assert "苏0214" in unnamed.json()["detail"] and "not registered" in unnamed.json()["detail"]

    first = client.post("/api/cases", json={"case_no": CASE, "court": COURT_NAME}, headers=headers)
    assert first.status_code == 201, first.text
    assert (first.json()["court_code"], first.json()["court"], first.json()["status"]) == ("苏0214", COURT_NAME, "open")
    second = client.post("/api/cases", json={"case_no": "（2022）苏0214执恢5号"}, headers=headers)
    assert second.status_code == 201, second.text
    assert (second.json()["case_no"], second.json()["court"]) == ("(2022)苏0214执恢5号", COURT_NAME)
    wrong = client.post("/api/cases", json={"case_no": "(2022)苏0214执6号", "court": "别的法院"}, headers=headers)
    assert wrong.status_code == 409 and COURT_NAME in wrong.json()["detail"]
    courts = client.get("/api/courts", headers=headers).json()
    assert courts == [{"code": "苏0214", "name": COURT_NAME, "phone": "", "address": ""}]
    # the full-width form of a number finds the same case
    assert client.get(f"/api/cases/{quote('（2022）苏0214执恢5号')}", headers=headers).status_code == 200


@pytest.mark.postgres
def test_a_malformed_case_number_is_a_422_showing_the_form(session_factory: SessionFactory, client: TestClient) -> None:
    headers = clerk_headers(session_factory, client)
    response = client.post("/api/cases", json={"case_no": "案件一", "court": COURT_NAME}, headers=headers)
    assert response.status_code == 422
    assert "(2021)苏0214执1234号" in str(response.json()["detail"])
    bad_code = client.post("/api/courts", json={"code": "苏021", "name": "x"}, headers=headers)
    assert bad_code.status_code == 422


@pytest.mark.postgres
def test_the_notice_fields_are_kept_and_changed(session_factory: SessionFactory, client: TestClient) -> None:
    headers = clerk_headers(session_factory, client)
    body = {
        "case_no": CASE,
        "court": COURT_NAME,
        "judge": "王法官",
        "judge_phone": "0510-85000000",
        "sealed_property": "滨湖区某路1号101室",
        "seizure_expires_on": "2027-12-31",
    }
    created = client.post("/api/cases", json=body, headers=headers).json()
    assert (created["judge_phone"], created["sealed_property"], created["seizure_expires_on"]) == (
        "0510-85000000",
        "滨湖区某路1号101室",
        "2027-12-31",
    )
    path = f"/api/cases/{quote(CASE)}"
    changed = client.patch(path, json={"seizure_expires_on": None, "judge_phone": "110"}, headers=headers).json()
    assert (changed["seizure_expires_on"], changed["judge_phone"]) == (None, "110")
    assert client.patch(path, json={"court": "x"}, headers=headers).status_code == 422  # the court follows the number


@pytest.mark.postgres
def test_a_case_is_sealed_by_its_first_seal_and_moves_along_one_table(
    session_factory: SessionFactory, client: TestClient
) -> None:
    seal = SimulatedSeal("seal-1", CASE)
    register(session_factory, seal)
    with session_scope(session_factory) as session:
        assert get_case(session, case_no=CASE).status == CaseStatus.SEALED
        with pytest.raises(Conflict, match="sealed: it cannot become lifted"):
            set_case_status(session, actor=None, case_no=CASE, status=CaseStatus.LIFTED)
        set_case_status(session, actor=None, case_no=CASE, status=CaseStatus.LIFTING, note="removal approved")
        set_case_status(session, actor=None, case_no=CASE, status=CaseStatus.LIFTED)
        unbind_seal(session, actor=None, device_id="seal-1")
        with pytest.raises(Conflict, match="lifted: no seal can be bound"):
            bind_seal(session, actor=None, device_id="seal-1", case_no=CASE)
        moves = session.scalars(select(AuditEntry.details).where(AuditEntry.action == "case.status")).all()
        assert [(m["from"], m["to"]) for m in moves] == [
            ("open", "sealed"),
            ("sealed", "lifting"),
            ("lifting", "lifted"),
        ]
    headers = clerk_headers(session_factory, client)
    path = f"/api/cases/{quote(CASE)}/status"
    closed = client.put(path, json={"status": "closed", "note": "结案"}, headers=headers)
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    again = client.put(path, json={"status": "closed"}, headers=headers)
    assert again.status_code == 409 and "closed" in again.json()["detail"]
    assert client.put(path, json={"status": "lifted"}, headers=headers).status_code == 422  # not the clerk's to set


@pytest.mark.postgres
def test_a_seals_armed_state_and_installer_come_from_its_signed_events_and_binding(
    session_factory: SessionFactory, client: TestClient, tmp_path: Path
) -> None:
    seal = SimulatedSeal("seal-a", CASE)
    register(session_factory, seal)
    headers = clerk_headers(session_factory, client)
    assert client.get("/api/seals/seal-a", headers=headers).json()["armed"] is None
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path)
    armed = seal.event(EventType.ARMED, {"reason": "installed"})
    disarmed = seal.event(EventType.DISARMED, {"reason": "court command 1", "by": 1})
    ingestor.ingest([message(seal.event_topic, disarmed)])  # the later event arrives first
    ingestor.ingest([message(seal.event_topic, armed)])
    body = client.get("/api/seals/seal-a", headers=headers).json()
    assert body["armed"] is False  # the earlier 'armed' (a lower seq) does not undo it
    assert body["installed_at"] is not None and body["installed_by"] is None  # bound on the command line
    heartbeat = seal.event(EventType.HEARTBEAT, {"armed": True})
    ingestor.ingest([message(seal.event_topic, heartbeat)])
    listed = client.get("/api/seals", headers=headers).json()
    assert [(s["device_id"], s["armed"]) for s in listed] == [("seal-a", True)]


@pytest.mark.postgres
def test_migration_0007_keeps_courts_statuses_and_armed_states(
    engine: Engine, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """Down to 0006 (the court back as text on the case) and up again: the court is registered from the case's text,
    a case with a seal is sealed, a seal's armed state is read from its events; a legacy number keeps no court."""
    seal = SimulatedSeal("seal-m", CASE)
    register(session_factory, seal)
    with session_scope(session_factory) as session:
        session.add(Case(case_no="旧案-1"))
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path)
    ingestor.ingest([message(seal.event_topic, seal.event(EventType.DISARMED, {"reason": "local", "by": None}))])
    downgrade(engine, "6c3e2a9f1d08")
    upgrade(engine)
    with session_scope(session_factory) as session:
        case = get_case(session, case_no=CASE)
        assert (case.court_code, case.court_name, case.status) == ("苏0214", COURT_NAME, "sealed")
        legacy = get_case(session, case_no="旧案-1")
        assert (legacy.court_code, legacy.status) == (None, "open")
        stored = session.scalars(select(Seal).where(Seal.device_id == "seal-m")).one()
        assert (stored.armed, stored.armed_seq) == (False, 1)


@pytest.mark.postgres
def test_a_case_cannot_close_with_seals_and_a_lifting_case_takes_none(session_factory: SessionFactory) -> None:
    register(session_factory, SimulatedSeal("seal-1", CASE), SimulatedSeal("seal-2", "(2021)苏0214执1235号"))
    with session_scope(session_factory) as session:
        with pytest.raises(Conflict, match="still has seals bound \\(seal-1\\)"):
            set_case_status(session, actor=None, case_no=CASE, status=CaseStatus.CLOSED)
        set_case_status(session, actor=None, case_no=CASE, status=CaseStatus.LIFTING)
        unbind_seal(session, actor=None, device_id="seal-2")
        assert get_case(session, case_no="(2021)苏0214执1235号").status == CaseStatus.OPEN  # its last seal left
        with pytest.raises(Conflict, match="lifting: no seal can be bound"):
            bind_seal(session, actor=None, device_id="seal-2", case_no=CASE)
        unbind_seal(session, actor=None, device_id="seal-1")
        assert get_case(session, case_no=CASE).status == CaseStatus.LIFTING  # the removal settles it


@pytest.mark.postgres
@pytest.mark.parametrize("spelling", ["（2021）苏0214执1234号", "〔2021〕苏0214执1234号", "(2021）苏0214执1234号"])
def test_a_seal_that_spells_its_case_full_width_lands_in_it(
    session_factory: SessionFactory, tmp_path: Path, spelling: str
) -> None:
    """The agent signs the number as configured; the court stores the event (verbatim) in the case it names, stored
    under the canonical spelling, whichever of these the seal was configured with."""
    register(session_factory, SimulatedSeal("seal-w", CASE))
    full_width = SimulatedSeal("seal-w", spelling)
    with session_scope(session_factory) as session:  # the same device, its key as registered
        session.scalars(select(Seal).where(Seal.device_id == "seal-w")).one().public_key = full_width.public_key
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path)
    [result] = ingestor.ingest([message(full_width.event_topic, full_width.event(EventType.TAMPER, {}))])
    assert result.outcome.value == "stored", result
    with session_scope(session_factory) as session:
        assert session.scalars(select(Event.case_no)).all() == [CASE]
        assert session.scalars(select(Alarm.case_no)).all() == [CASE]
