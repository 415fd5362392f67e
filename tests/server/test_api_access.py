"""What each role sees in lists and histories: only its own cases' cases, seals, events and alarms."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from seal_protocol import EventType, snapshot_topic
from server.alarms.book import AlarmBook
from server.alarms.state import AlarmKind
from server.app import create_app
from server.auth.access import Role
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.core.metrics import IngestMetrics
from server.ingest.ingestor import Ingestor
from server.ingest.results import Outcome
from server.seals.cases import add_case
from tests.server.auth_helpers import add_user, bearer, make_settings
from tests.server.helpers import SimulatedSeal, jpeg_bytes, message, register

A, B = "(2021)苏0214执1号", "(2021)苏0214执2号"


@pytest.fixture
def client(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[TestClient]:
    """Cases A and B with a seal each (one event, one alarm); users on A only, and a clerk; an unbound seal."""
    seals = SimulatedSeal("seal-a", A), SimulatedSeal("seal-b", B)
    register(session_factory, *seals)
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    for seal in seals:
        ingestor.ingest([message(seal.event_topic, seal.event(EventType.INTRUSION))])
    with session_scope(session_factory) as session:
        book = AlarmBook(session, fold_window=timedelta(0))
        for seal in seals:
            book.raise_alarm(AlarmKind.TAMPER, device_id=seal.device_id, case_no=seal.case_no, at=utc_now(), details={})
        add_case(session, actor=None, case_no="(2021)苏0214执3号", court="无锡市滨湖区人民法院")
    for role in Role:
        add_user(session_factory, role.value, role, () if role is Role.CLERK else (A,))
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False)) as instance:
        yield instance


def get(client: TestClient, session_factory: SessionFactory, who: str, url: str) -> object:
    response = client.get(url, headers=bearer(session_factory, who))
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.CLERK])
def test_each_role_lists_only_its_case(client: TestClient, session_factory: SessionFactory, role: Role) -> None:
    cases = get(client, session_factory, role.value, "/api/cases")
    assert [case["case_no"] for case in cases] == [A]  # type: ignore[attr-defined]
    seals = get(client, session_factory, role.value, "/api/seals")
    assert [seal["device_id"] for seal in seals] == ["seal-a"]  # type: ignore[attr-defined]


def test_the_clerk_lists_everything(client: TestClient, session_factory: SessionFactory) -> None:
    cases = get(client, session_factory, "clerk", "/api/cases")
    assert [case["case_no"] for case in cases] == [A, B, "(2021)苏0214执3号"]  # type: ignore[attr-defined]
    alarms = get(client, session_factory, "clerk", "/api/alarms")
    assert {alarm["case_no"] for alarm in alarms} == {A, B}  # type: ignore[attr-defined]


def test_alarms_of_own_case_only(client: TestClient, session_factory: SessionFactory) -> None:
    for who in ("judge", "officer", "creditor"):
        alarms = get(client, session_factory, who, "/api/alarms?state=open")
        assert {alarm["case_no"] for alarm in alarms} == {A}  # type: ignore[attr-defined]


def test_ack_then_close_an_alarm_is_recorded(client: TestClient, session_factory: SessionFactory) -> None:
    alarm = get(client, session_factory, "judge", "/api/alarms")[0]  # type: ignore[index]
    judge = bearer(session_factory, "judge")
    acked = client.post(f"/api/alarms/{alarm['id']}/ack", json={"note": "on my way"}, headers=judge).json()
    assert (acked["state"], acked["acknowledged_by"], acked["acknowledged_note"]) == (
        "acknowledged",
        "judge",
        "on my way",
    )
    assert client.post(f"/api/alarms/{alarm['id']}/ack", json={}, headers=judge).status_code == 409
    closed = client.post(f"/api/alarms/{alarm['id']}/close", json={"note": "cleaner"}, headers=judge).json()
    assert (closed["state"], closed["closed_by"]) == ("closed", "judge")
    audit = get(client, session_factory, "clerk", "/api/audit?target=" + str(alarm["id"]))
    assert [e["action"] for e in audit["entries"]] == ["alarm.close", "alarm.ack"]  # type: ignore[index]


def test_officer_binds_a_stock_seal_on_site_and_history_is_kept(
    client: TestClient, session_factory: SessionFactory
) -> None:
    clerk, officer = bearer(session_factory, "clerk"), bearer(session_factory, "officer")
    key = SimulatedSeal("seal-new", A).public_key
    assert (
        client.post("/api/seals", json={"device_id": "seal-new", "public_key": key}, headers=clerk).status_code == 201
    )
    assert "seal-new" in [s["device_id"] for s in client.get("/api/seals", headers=officer).json()]  # the stock
    assert "seal-new" not in [
        s["device_id"] for s in client.get("/api/seals", headers=bearer(session_factory, "judge")).json()
    ]
    bound = client.put("/api/seals/seal-new/binding", json={"case_no": A, "location": "门口"}, headers=officer)
    assert bound.status_code == 200 and (bound.json()["case_no"], bound.json()["location"]) == (A, "门口")
    again = client.put("/api/seals/seal-new/binding", json={"case_no": A}, headers=officer)
    assert again.status_code == 409
    assert client.delete("/api/seals/seal-new/binding", headers=officer).status_code == 204
    assert client.put("/api/seals/seal-new/binding", json={"case_no": B}, headers=clerk).status_code == 200
    history = client.get("/api/seals/seal-new/bindings", headers=clerk).json()
    assert [(h["case_no"], h["bound_by"], h["unbound_by"]) for h in history] == [
        (B, "clerk", None),
        (A, "officer", "officer"),
    ]
    assert client.get("/api/seals/seal-new", headers=officer).status_code == 404  # now on a foreign case


def test_a_seal_moved_between_cases_shows_each_case_only_its_events(
    client: TestClient, session_factory: SessionFactory, tmp_path: Path
) -> None:
    clerk = bearer(session_factory, "clerk")
    assert client.delete("/api/seals/seal-b/binding", headers=clerk).status_code == 204
    assert client.put("/api/seals/seal-b/binding", json={"case_no": A}, headers=clerk).status_code == 200
    judge_events = get(client, session_factory, "judge", "/api/seals/seal-b/events")
    assert judge_events["events"] == []  # type: ignore[index]  # seal-b's earlier event belongs to case B
    clerk_events = get(client, session_factory, "clerk", "/api/seals/seal-b/events")
    assert [e["case_no"] for e in clerk_events["events"]] == [B]  # type: ignore[index]
    history = get(client, session_factory, "judge", "/api/seals/seal-b/bindings")
    assert [h["case_no"] for h in history] == [A]  # type: ignore[attr-defined]


def test_event_filters_by_type_and_time(client: TestClient, session_factory: SessionFactory, tmp_path: Path) -> None:
    url = f"/api/cases/{quote(A, safe='')}/events"
    assert len(get(client, session_factory, "judge", url + "?type=intrusion")["events"]) == 1  # type: ignore[index]
    assert get(client, session_factory, "judge", url + "?type=heartbeat&type=tamper")["events"] == []  # type: ignore[index]
    later = (utc_now() + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert get(client, session_factory, "judge", f"{url}?since={later}")["events"] == []  # type: ignore[index]
    assert len(get(client, session_factory, "judge", f"{url}?until={later}")["events"]) == 1  # type: ignore[index]
    naive = client.get(f"{url}?since=2024-01-01T00:00:00", headers=bearer(session_factory, "judge"))
    assert naive.status_code == 422


def test_assignments_give_and_take_visibility(client: TestClient, session_factory: SessionFactory) -> None:
    clerk = bearer(session_factory, "clerk")
    url = f"/api/cases/{quote(B, safe='')}/assignments"
    assert client.post(url, json={"username": "judge"}, headers=clerk).status_code == 201
    assert client.post(url, json={"username": "judge"}, headers=clerk).status_code == 409
    assert client.post(url, json={"username": "clerk"}, headers=clerk).status_code == 409
    members = client.get(url, headers=clerk).json()
    assert [(m["username"], m["role"]) for m in members] == [("judge", "judge")]
    assert get(client, session_factory, "judge", f"/api/cases/{quote(B, safe='')}")["case_no"] == B  # type: ignore[index]
    assert client.delete(f"{url}/judge", headers=clerk).status_code == 204
    assert client.get(f"/api/cases/{quote(B, safe='')}", headers=bearer(session_factory, "judge")).status_code == 404


def test_the_same_picture_from_two_cases_is_visible_in_both(
    client: TestClient, session_factory: SessionFactory, tmp_path: Path
) -> None:
    black = jpeg_bytes(shade=0)  # two covered lenses: identical frames
    sha = hashlib.sha256(black).hexdigest()
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    results = ingestor.ingest([message(snapshot_topic(device_id, sha), black) for device_id in ("seal-a", "seal-b")])
    assert [r.outcome for r in results] == [Outcome.SNAPSHOT, Outcome.SNAPSHOT]
    add_user(session_factory, "judge-b", Role.JUDGE, (B,))
    for who, case_no in (("judge", A), ("judge-b", B)):
        listed = get(client, session_factory, who, f"/api/cases/{quote(case_no, safe='')}/snapshots")
        assert [(s["sha256"], s["case_no"]) for s in listed] == [(sha, case_no)]  # type: ignore[attr-defined]
        picture = client.get(f"/api/snapshots/{sha}", headers=bearer(session_factory, who))
        assert (picture.status_code, picture.content) == (200, black)
    add_user(session_factory, "judge-c", Role.JUDGE, ("(2021)苏0214执3号",))
    assert client.get(f"/api/snapshots/{sha}", headers=bearer(session_factory, "judge-c")).status_code == 404


def test_a_refusal_names_the_role_in_good_english(client: TestClient, session_factory: SessionFactory) -> None:
    for who, article in (("officer", "an"), ("judge", "a")):
        response = client.get("/api/audit", headers=bearer(session_factory, who))
        assert response.status_code == 403
        chinese, english = response.json()["detail"].split(" / ")
        assert english.startswith(f"{article} {who} may not do this"), response.text
        assert chinese.startswith("您的角色不能执行此操作"), response.text


@pytest.mark.parametrize(
    ("url", "who", "status"),
    [
        (f"/api/cases/{quote(A, safe='')}", "judge", 200),
        (f"/api/cases/{quote(A, safe='')}/events", "judge", 200),
        (f"/api/cases/{quote(B, safe='')}", "judge", 404),
        ("/api/alarms", None, 401),
    ],
)
def test_no_answer_of_the_api_may_be_kept_by_a_cache(
    client: TestClient, session_factory: SessionFactory, url: str, who: str | None, status: int
) -> None:
    """A shared cache would store a response to a cookie-signed request (only Authorization stops it): every API
    answer but the health check says no-store, and that it varies by cookie and authorization."""
    response = client.get(url, headers=bearer(session_factory, who) if who else {})
    assert response.status_code == status, response.text
    assert response.headers["cache-control"] == "no-store"
    assert {"Cookie", "Authorization"} <= {v.strip() for v in response.headers["vary"].split(",")}
    assert "no-store" not in client.get("/api/health").headers.get("cache-control", "")
