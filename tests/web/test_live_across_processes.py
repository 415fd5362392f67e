"""Live across processes, all real: a ``seal-server ingest`` worker process stores a seal's signed intrusion, and the
judge's overview stream on another process (the court's pages under uvicorn, with the same database and broker)
shows it without a reload; the worker's own /metrics counts it. When the pages' process loses the broker, its open
stream says "gap" (reload) instead of missing what the workers commit meanwhile. A seal's answer stored by a worker
wakes the removal settler of ``run`` through the feed, as an answer stored by ``run``'s own ingest does."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from seal_dev.broker import PrivateBroker, free_port
from seal_protocol import EventType
from seal_protocol.topics import MessageKind, topic_filter
from server.app import create_app
from server.auth.access import Role
from server.config import RemovalSettings, WebSettings
from server.core.db import SessionFactory
from server.core.live_wire import FEED_TOPIC
from server.core.metrics import IngestMetrics
from server.removal.models import RemovalRequest
from server.seals.broker_files import SERVER_USERNAME
from tests.agent.helpers import wait_until as polled
from tests.prometheus import samples
from tests.server.auth_helpers import PASSWORD, add_user, make_settings
from tests.server.helpers import CASE_A, SimulatedSeal, register
from tests.server.mqtt_helpers import SealConnection, seal_connection, server_mqtt_settings
from tests.server.removal_world import make_world

REPO = Path(__file__).resolve().parents[2]
SEAL = "seal-live-1"
WAIT_S = 30.0
#: The removal settler's interval in the ``run`` process: far longer than the test waits for the request to settle.
SETTLE_INTERVAL_S = 60.0
SETTLED_WITHIN_S = 30.0
#: The ``run`` process's broker account: the feed and the commands, but none of the seals' messages (test's ACL).
RUN_USERNAME = "court-run"


def wait_until(predicate: Callable[[], object], timeout: float = WAIT_S) -> bool:
    return polled(lambda: bool(predicate()), timeout)


@pytest.fixture
def seal(session_factory: SessionFactory) -> SimulatedSeal:
    """A seal registered for its case, and the case's judge."""
    seal = SimulatedSeal(SEAL, CASE_A)
    register(session_factory, seal)
    add_user(session_factory, "judge", Role.JUDGE, (CASE_A,))
    return seal


@pytest.fixture
def pages(broker: PrivateBroker, database_url: str, seal: SimulatedSeal, tmp_path: Path) -> Iterator[str]:
    """The court's pages (no ingest of their own, the live feed on) under uvicorn in a thread; their base URL."""
    (tmp_path / "pages").mkdir()
    settings = make_settings(database_url, tmp_path / "pages").model_copy(
        update={
            "mqtt": server_mqtt_settings(broker, tmp_path),
            "web": WebSettings(heartbeat_s=0.2, stream_max_s=60),
        }
    )
    app = create_app(settings, with_ingest=False, with_feed=True)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started), "the pages did not start"
        assert wait_until(lambda: _metrics(app).snapshot().live_gaps.get("subscribed")), "the feed did not subscribe"
        yield f"http://127.0.0.1:{port}"
    finally:
        app.state.live.close()
        server.should_exit = True
        thread.join(10)


def _metrics(app: FastAPI) -> IngestMetrics:
    metrics: IngestMetrics = app.state.context.metrics
    return metrics


@contextmanager
def judges_overview(base: str) -> Iterator[Iterator[tuple[str, str]]]:
    """The judge's overview stream, signed in as a browser is: (event, data) of each message, from the first
    heartbeat on."""
    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.post("/api/auth/login", json={"username": "judge", "password": PASSWORD}).status_code == 200
        client.headers.pop("Authorization", None)
        with client.stream("GET", "/live?view=overview") as response:
            assert response.status_code == 200
            messages = _messages(response.iter_lines())
            assert next(messages)[0] == "heartbeat"
            yield messages


def _messages(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    event, data = "", []
    for line in lines:
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data.append(line.removeprefix("data: "))
        elif line == "" and event:
            yield event, "\n".join(data)
            event, data = "", []


def _next_other_than_heartbeat(messages: Iterator[tuple[str, str]], timeout: float) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    for event, data in messages:  # a heartbeat every 0.2 s: the deadline is looked at that often
        if event != "heartbeat":
            return event, data
        assert time.monotonic() < deadline, "nothing but heartbeats"
    raise AssertionError("the stream ended")


def _worker_config(path: Path, database_url: str, broker: PrivateBroker, metrics_port: int) -> Path:
    password_file = path.parent / "worker-mqtt-password"
    password_file.write_text(broker.users[SERVER_USERNAME] + "\n")
    for store in ("snapshots", "removal-proofs"):  # the stores' directories, as `seal-server init` makes them
        (path.parent / store).mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'database_url = "{database_url}"\nsnapshot_dir = "{path.parent / "snapshots"}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nusername = "{SERVER_USERNAME}"\n'
        f'password_file = "{password_file}"\nclient_id = "court-worker"\n'
        f"[ingest]\nmetrics_port = {metrics_port}\n",
        encoding="utf-8",
    )
    return path


def _scrape(port: int) -> dict[str, float]:
    try:
        return samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text)
    except httpx.HTTPError:
        return {}


def _stored_once_resent(connection: SealConnection, topic: str, event: bytes, metrics_port: int, stored: float) -> bool:
    """Send ``event`` until the worker (its /metrics on ``metrics_port``) counts ``stored`` events: its subscription
    is there then. A message sent before it goes nowhere, so the seal sends the same event again, as its outbox
    would; only after a long while, as a copy a slow store took in after all would count in the worker's metrics."""

    def sent_and_stored() -> bool:
        connection.publish(topic, event)
        return wait_until(lambda: _scrape(metrics_port).get("seal_events_ingested_total") == stored, 10)

    return wait_until(sent_and_stored, 3 * WAIT_S)


@contextmanager
def ingest_worker(config: Path) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "server.cli", "ingest", "--config", str(config), "--workers", "1"]
    log = (config.parent / "worker.log").open("wb")
    process = subprocess.Popen(command, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=log, stderr=log)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def test_an_intrusion_stored_by_an_ingest_worker_is_shown_live_by_another_process_and_counted_by_the_worker(
    broker: PrivateBroker, database_url: str, seal: SimulatedSeal, pages: str, tmp_path: Path
) -> None:
    metrics_port = free_port()
    (tmp_path / "worker").mkdir()
    config = _worker_config(tmp_path / "worker" / "server.toml", database_url, broker, metrics_port)
    log = config.parent / "worker.log"
    with ingest_worker(config) as worker, seal_connection(broker, SEAL) as connection:
        up = wait_until(lambda: _scrape(metrics_port).get("seal_live_feed_connected") == 1.0)
        assert up, f"the worker's feed did not connect: {log.read_text(errors='replace')}"
        heartbeat = seal.event(EventType.HEARTBEAT)
        stored = _stored_once_resent(connection, seal.event_topic, heartbeat, metrics_port, 1)
        assert stored, log.read_text(errors="replace")

        with judges_overview(pages) as messages:
            connection.publish(seal.event_topic, seal.event(EventType.INTRUSION, {"armed": True, "warning": "played"}))
            event, data = _next_other_than_heartbeat(messages, 20)

        assert event == "update", (event, data)
        assert SEAL in data and "intrusion" in data, data
        metrics = _scrape(metrics_port)
        assert metrics["seal_events_ingested_total"] == 2.0
        assert metrics["seal_ingest_commit_seconds_count"] == 2.0  # a histogram: each of the worker's own
        assert metrics["seal_broker_connected"] == 1.0  # a gauge set at the scrape
        assert metrics['seal_live_feed_messages_total{result="sent"}'] == 2.0  # one message per committed batch
        assert "seal_seals_online" not in metrics, "a worker knows no seal counts: run's /metrics has them"
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log.read_text(errors="replace")


def test_a_pages_process_that_loses_the_broker_tells_its_open_streams_gap(broker: PrivateBroker, pages: str) -> None:
    with judges_overview(pages) as messages:
        broker.stop()
        event, data = _next_other_than_heartbeat(messages, 20)
    assert (event, data) == ("gap", "feed")


def _request_state(session_factory: SessionFactory, request_id: int) -> str:
    """The request's state in the database (reading it through the API would settle it)."""
    with session_factory() as session:
        request = session.get(RemovalRequest, request_id)
        assert request is not None
        return request.state


def test_a_disarm_ack_stored_by_a_worker_process_wakes_the_settler_of_run(
    broker: PrivateBroker, database_url: str, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """``run`` (its settler's interval 60 s) and a ``seal-server ingest`` worker: the worker stores both seals' signed
    acks of the disarm, and the ``command`` changes it sends on the live feed wake ``run``'s settler: the request is
    ``disarmed`` well before the interval. ``run``'s account may not read the seals' topics (ACL lines of the test's
    own), so its own ingest, which would wake the settler itself, never takes an answer."""
    password = secrets.token_urlsafe(12)
    broker.extra_acl = (
        f"user {RUN_USERNAME}\ntopic readwrite {FEED_TOPIC}\ntopic write {topic_filter(MessageKind.CMD)}\n"
    )
    broker.add_user(RUN_USERNAME, password)
    broker.reload()
    (tmp_path / "run").mkdir()
    mqtt = server_mqtt_settings(broker, tmp_path / "run", password=password).model_copy(
        update={"username": RUN_USERNAME}
    )
    settings = make_settings(database_url, tmp_path / "run").model_copy(
        update={"mqtt": mqtt, "removal": RemovalSettings(settle_interval_s=SETTLE_INTERVAL_S)}
    )
    app = create_app(settings)
    metrics_port = free_port()
    (tmp_path / "worker").mkdir()
    config = _worker_config(tmp_path / "worker" / "server.toml", database_url, broker, metrics_port)
    log = config.parent / "worker.log"
    with TestClient(app) as client:
        world = make_world(session_factory, tmp_path, client)
        request_id = world.filed()
        commands = world.commands(world.approved(request_id))
        assert app.state.context.feed.wait_subscribed(WAIT_S), "run's feed did not subscribe"
        a1, a2 = world.seals["seal-a1"], world.seals["seal-a2"]
        with (
            ingest_worker(config),
            seal_connection(broker, a1.device_id) as one,
            seal_connection(broker, a2.device_id) as two,
        ):
            heartbeat = a1.event(EventType.HEARTBEAT)
            stored = _stored_once_resent(one, a1.event_topic, heartbeat, metrics_port, 1)
            assert stored, log.read_text(errors="replace")
            for seal, connection in ((a1, one), (a2, two)):
                ack = {"command_id": commands[seal.device_id].id, "action": "disarm", "result": "disarmed"}
                connection.publish(seal.event_topic, seal.event(EventType.COMMAND_ACK, ack))

            settled = wait_until(lambda: _request_state(session_factory, request_id) == "disarmed", SETTLED_WITHIN_S)
            acks = 'seal_command_answers_total{outcome="acknowledged"}'
            both_acked = wait_until(lambda: _scrape(metrics_port).get(acks) == 2.0)
        run_stored = app.state.context.metrics.snapshot().stored
    assert both_acked, f"the worker did not store both acks: {log.read_text(errors='replace')}"
    assert run_stored == 0, "run's own ingest took a seal's message"
    assert settled, f"the request is {_request_state(session_factory, request_id)}: run's settler was not woken"
