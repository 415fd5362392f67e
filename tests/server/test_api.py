"""The REST API through FastAPI's TestClient, on data put in by the real ingest core."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from seal_dev.broker import PrivateBroker
from seal_protocol import EventType, encode_status
from seal_protocol.signing import generate_signing_key, load_or_create_signing_key
from seal_protocol.status import SealStatus
from server.app import create_app
from server.auth.access import Role
from server.config import CommandSettings, HttpSettings, MqttSettings, Settings
from server.context import ServerContext
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.ingest.ingestor import Ingestor
from server.stores import make_store_roots
from tests.agent.helpers import wait_until
from tests.prometheus import samples
from tests.server.auth_helpers import add_user, bearer
from tests.server.helpers import CASE_A, CASE_B, SimulatedSeal, message, register
from tests.server.mqtt_helpers import seal_connection, server_mqtt_settings

WAIT_S = 20.0


def make_settings(
    database_url: str, tmp_path: Path, broker: PrivateBroker | None = None, *, court_key: bool = True
) -> Settings:
    if broker is not None:
        mqtt = server_mqtt_settings(broker, tmp_path)
    else:
        (tmp_path / "unused-password").write_text("unused\n")
        mqtt = MqttSettings(port=1, password_file=tmp_path / "unused-password")
    commands = CommandSettings()
    if court_key:
        commands = CommandSettings(signing_key_file=tmp_path / "court-command.key")
        load_or_create_signing_key(tmp_path / "court-command.key")
    settings = Settings(database_url=database_url, snapshot_dir=tmp_path / "snapshots", mqtt=mqtt, commands=commands)
    make_store_roots(settings)  # as `seal-server init` does
    return settings


def path_of(case_no: str) -> str:
    return f"/api/cases/{quote(case_no, safe='')}/events"


@pytest.fixture
def seals(session_factory: SessionFactory, tmp_path: Path) -> tuple[SimulatedSeal, SimulatedSeal]:
    """seal-a (case A) with 5 events and status online; seal-b (case B) with 2 events and no status."""
    a, b = SimulatedSeal("seal-a", CASE_A), SimulatedSeal("seal-b", CASE_B)
    register(session_factory, a, b)
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    ingestor.ingest([message(a.status_topic, encode_status(SealStatus.ONLINE))])
    for i in range(5):
        ingestor.ingest([message(a.event_topic, a.event(EventType.INTRUSION, {"n": i}))])
        if i < 2:
            ingestor.ingest([message(b.event_topic, b.event(EventType.HEARTBEAT, {"n": i}))])
    return a, b


@pytest.fixture
def client(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[TestClient]:
    """A client logged in as a clerk, who sees every case."""
    add_user(session_factory, "clerk", Role.CLERK)
    app = create_app(make_settings(database_url, tmp_path), with_ingest=False)
    with TestClient(app, headers=bearer(session_factory, "clerk")) as instance:
        yield instance


def test_events_of_a_case_newest_first_and_isolated(
    client: TestClient, seals: tuple[SimulatedSeal, SimulatedSeal]
) -> None:
    response = client.get(path_of(CASE_A))
    assert response.status_code == 200
    body = response.json()
    assert body["case_no"] == CASE_A
    assert [e["seq"] for e in body["events"]] == [5, 4, 3, 2, 1]
    assert {e["device_id"] for e in body["events"]} == {"seal-a"}
    assert body["next_before"] is None

    other = client.get(path_of(CASE_B)).json()
    assert [(e["device_id"], e["seq"]) for e in other["events"]] == [("seal-b", 2), ("seal-b", 1)]


def test_event_carries_the_signed_envelope_verbatim(
    client: TestClient, seals: tuple[SimulatedSeal, SimulatedSeal]
) -> None:
    [event] = client.get(path_of(CASE_B), params={"limit": 1}).json()["events"]
    envelope = json.loads(event["envelope"])
    assert envelope["sig"] == event["sig"] and envelope["seq"] == event["seq"] == 2
    assert envelope["case_no"] == CASE_B and event["payload"] == {"n": 1}
    assert event["ts"].endswith("Z") or event["ts"].endswith("+00:00")


def test_paging_with_before(client: TestClient, seals: tuple[SimulatedSeal, SimulatedSeal]) -> None:
    seen: list[int] = []
    before: int | None = None
    pages = 0
    while True:
        params = {"limit": 2} | ({"before": before} if before is not None else {})
        body = client.get(path_of(CASE_A), params=params).json()
        seen += [e["seq"] for e in body["events"]]
        pages += 1
        before = body["next_before"]
        if before is None:
            break
    assert seen == [5, 4, 3, 2, 1]
    assert pages == 3


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 501}, {"before": 0}, {"limit": "many"}])
def test_paging_bounds(
    client: TestClient, seals: tuple[SimulatedSeal, SimulatedSeal], params: dict[str, int | str]
) -> None:
    assert client.get(path_of(CASE_A), params=params).status_code == 422


def test_unknown_case_is_404(client: TestClient) -> None:
    response = client.get(path_of("(2099)京01执9号"))
    assert response.status_code == 404
    assert "(2099)京01执9号" in response.json()["detail"]


def test_legacy_case_number_with_a_slash(client: TestClient, session_factory: SessionFactory, tmp_path: Path) -> None:
    seal = SimulatedSeal("seal-s", "(2023)沪01/执7号")
    register(session_factory, seal)
    Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path).ingest(
        [message(seal.event_topic, seal.event())]
    )
    body = client.get(path_of("(2023)沪01/执7号")).json()
    assert [e["device_id"] for e in body["events"]] == ["seal-s"]


def test_health_without_broker(client: TestClient) -> None:
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "degraded",
        "broker": "disconnected",
        "db": "ok",
        "ingest": "off",
        "receipts": "off",
        "ingest_unstored": 0,
        "ingest_oldest_unstored_s": 0.0,
        "ingest_caught_up_lag_s": None,
        "feed": "off",
        "log": "off",
        "feed_gaps": 0,
    }


def test_health_without_database(tmp_path: Path) -> None:
    settings = make_settings("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2", tmp_path)
    with TestClient(create_app(settings, with_ingest=False)) as instance:
        response = instance.get("/api/health")
    assert response.status_code == 503
    assert response.json()["db"] == "error"


def test_seals_with_case_status_and_last_event(client: TestClient, seals: tuple[SimulatedSeal, SimulatedSeal]) -> None:
    body = client.get("/api/seals").json()
    assert [s["device_id"] for s in body] == ["seal-a", "seal-b"]
    a, b = body
    assert (a["case_no"], a["status"], a["online"], a["location"]) == (CASE_A, "online", True, "仓库")
    assert a["last_event_at"] is not None and a["last_seen_at"] is not None
    assert (b["case_no"], b["status"], b["online"]) == (CASE_B, None, False)


#: A request from this machine (TestClient's own peer, "testclient", is no address: it is refused /metrics).
HERE = ("127.0.0.1", 50000)


def test_metrics_without_ingest(database_url: str, tmp_path: Path, seals: tuple[SimulatedSeal, SimulatedSeal]) -> None:
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False), client=HERE) as client:
        response = client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        values = samples(response.text)
        assert values["seal_seals_online"] == 1
        assert values["seal_seals_registered"] == 2
        assert values["seal_broker_connected"] == 0
        assert values['seal_messages_rejected_total{reason="bad_signature"}'] == 0


@pytest.mark.parametrize(
    ("peer", "forwarded", "http", "status"),
    [
        (HERE, None, {}, 200),
        (("::1", 50000), None, {}, 200),
        (("203.0.113.7", 50000), None, {}, 404),  # the public (a debtor watching the seals online fall)
        (HERE, "203.0.113.7", {"trusted_proxies": ["127.0.0.1"]}, 404),  # the public, through the court's proxy
        (HERE, "203.0.113.7", {}, 404),  # a header no trusted proxy wrote: a proxy left unlisted, origin unknown
        (("203.0.113.7", 50000), "127.0.0.1", {}, 404),  # the public naming this machine
        (HERE, None, {"trusted_proxies": ["127.0.0.1"]}, 404),  # a trusted proxy that names no client
        (HERE, "127.0.0.1", {"trusted_proxies": ["127.0.0.1"]}, 404),  # nor only itself
        (("127.0.0.2", 50000), "127.0.0.1", {"trusted_proxies": ["127.0.0.2"]}, 200),  # a local client, proxied
        (("10.1.2.3", 50000), None, {"metrics_from": ["10.1.0.0/16"]}, 200),  # the court's Prometheus
        (("testclient", 50000), None, {}, 404),  # no address at all
    ],
    ids=[
        "loopback",
        "loopback-v6",
        "public",
        "public-via-proxy",
        "unlisted-proxy",
        "spoofed-public",
        "proxy-not-appending",
        "proxy-only-hops",
        "local-via-proxy",
        "configured",
        "none",
    ],
)
def test_metrics_answer_only_the_networks_configured(
    database_url: str,
    session_factory: SessionFactory,  # the schema
    tmp_path: Path,
    peer: tuple[str, int],
    forwarded: str | None,
    http: dict[str, list[str]],
    status: int,
) -> None:
    """The court's counts — seals online, messages refused by reason, the broker's state — are not the public's:
    ``[http] metrics_from`` (this machine by default) names who may scrape them."""
    settings = make_settings(database_url, tmp_path)
    settings = settings.model_copy(update={"http": HttpSettings.model_validate({**settings.http.model_dump(), **http})})
    headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
    with TestClient(create_app(settings, with_ingest=False), client=peer) as client:
        response = client.get("/metrics", headers=headers)
    assert response.status_code == status, response.text
    assert ("seal_seals_online" in response.text) == (status == 200)


def test_app_runs_the_ingest(
    broker: PrivateBroker,
    database_url: str,
    session_factory: SessionFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    a = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, a)
    add_user(session_factory, "clerk", Role.CLERK)
    app = create_app(make_settings(database_url, tmp_path, broker))
    with TestClient(app, headers=bearer(session_factory, "clerk"), client=HERE) as instance:
        context: ServerContext = app.state.context
        assert context.ingest is not None and context.ingest.wait_subscribed(30)

        def health() -> tuple[str, ...]:  # "ok" also needs the live feed, which subscribes by itself
            answer = instance.get("/api/health").json()
            return tuple(answer[k] for k in ("status", "broker", "db", "ingest", "receipts"))

        assert wait_until(lambda: health() == ("ok", "connected", "ok", "ok", "on"), 30), health()
        with seal_connection(broker, a.device_id) as conn:
            conn.publish(a.event_topic, a.event(key=generate_signing_key()))
            conn.publish(a.event_topic, a.event(EventType.INTRUSION))
            assert context.metrics.wait_until(lambda m: m.stored >= 1 and m.rejected_total >= 1, 30)
        values = samples(instance.get("/metrics").text)
        events = instance.get(path_of(CASE_A)).json()["events"]
    assert values["seal_events_ingested_total"] == 1
    assert values['seal_messages_rejected_total{reason="bad_signature"}'] == 1
    assert values["seal_broker_connected"] == 1
    assert values["seal_ingest_commit_seconds_count"] == 2  # both messages: stored, quarantined
    assert [(e["seq"], e["type"]) for e in events] == [(2, "intrusion")]


def test_health_is_degraded_when_the_ingest_cannot_sign_receipts(
    broker: PrivateBroker, database_url: str, tmp_path: Path
) -> None:
    """Without the court's command key no seal can ever empty its outbox: that is not a healthy court."""
    app = create_app(make_settings(database_url, tmp_path, broker, court_key=False))
    with TestClient(app) as instance:
        context: ServerContext = app.state.context
        assert context.ingest is not None and context.ingest.wait_connected(30)
        health = instance.get("/api/health").json()
    assert (health["status"], health["broker"], health["receipts"]) == ("degraded", "connected", "off")


def test_health_reports_the_live_feed_and_its_gaps_while_the_broker_is_away_and_back(
    broker: PrivateBroker, database_url: str, tmp_path: Path
) -> None:
    """A feed that is not subscribed makes the status "degraded" (the pages miss the other processes' changes) but
    the answer stays 200; every reload it asked of the pages is counted, the first subscription included."""
    app = create_app(make_settings(database_url, tmp_path, broker))
    with TestClient(app) as instance:

        def health() -> tuple[str, str, int]:
            response = instance.get("/api/health")
            assert response.status_code == 200, response.text
            answer = response.json()
            return answer["status"], answer["feed"], answer["feed_gaps"]

        assert wait_until(lambda: health() == ("ok", "subscribed", 1), WAIT_S), health()
        broker.stop()
        # The dropped connection: the pages reload.
        assert wait_until(lambda: health() == ("degraded", "unsubscribed", 2), WAIT_S), health()
        broker.start()
        # Subscribed anew: they reload again (what was committed meanwhile is unknown).
        assert wait_until(lambda: health() == ("ok", "subscribed", 3), WAIT_S), health()
