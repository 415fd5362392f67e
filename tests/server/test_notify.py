"""Alarm notifications: written with the alarm, POSTed signed to a real local HTTP server, retried, recorded."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from seal_dev.broker import PrivateBroker, free_port
from seal_protocol import EventType
from server.alarms.models import Alarm
from server.app import create_app
from server.config import LivenessSettings, NotifySettings, Settings
from server.core.db import SessionFactory, session_scope
from server.errors import ConfigError, NotFound
from server.notify.addresses import AddressPolicy
from server.notify.models import Notification
from server.notify.targets import add_notification_target
from server.notify.webhook import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Delivery,
    Recipient,
    WebhookNotifier,
    read_secret,
    signature,
)
from server.notify.worker import LEASE_MARGIN_S, SEND_SLACK_S, NotificationWorker
from tests.server.ingest_world import Court, make_court
from tests.server.mqtt_helpers import server_mqtt_settings

GLOBAL_SECRET = "global-secret-0123456789"
CREDITOR_SECRET = "whsec_" + base64.b64encode(b"creditor's 24-byte key..").decode()  # a Standard Webhooks secret
T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
#: The receivers here are on 127.0.0.1 (``[notify] allow_loopback_targets``).
LOCAL = AddressPolicy(allow_loopback=True)


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # names in lower case: HTTP header names are case-insensitive
    body: bytes


@dataclass
class Receiver:
    """A webhook endpoint: answers with ``statuses`` in turn (then 200) and records every request."""

    statuses: list[int] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.requests) >= count, timeout), self.requests
            return list(self.requests)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.cond:
                status = state.statuses.pop(0) if state.statuses else 200
                state.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                state.cond.notify_all()
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    return make_court(session_factory, tmp_path)


def make_worker(
    court: Court, clock: Clock, *, secret: str | None = GLOBAL_SECRET, **settings: float
) -> NotificationWorker:
    notify = NotifySettings.model_validate({"retry_base_s": 1.0, "retry_max_s": 8.0, "timeout_s": 5.0, **settings})
    return NotificationWorker(
        court.session_factory,
        WebhookNotifier(secret=secret, timeout_s=notify.timeout_s, policy=LOCAL),
        settings=notify,
        metrics=court.metrics,
        clock=clock,
    )


def targets(court: Court, *urls: tuple[str, str, str | None]) -> None:
    with session_scope(court.session_factory) as session:
        for role, url, secret in urls:
            add_notification_target(session, case_no=court.a.case_no, role=role, url=url, secret=secret, policy=LOCAL)


def notifications(court: Court) -> list[Notification]:
    with court.session_factory() as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


def verifies(secret: str, request: Received, *, tolerance_s: int = 300) -> bool:
    """The receiver's check, written from the Standard Webhooks specification (not with our signing code): the key
    is the base64 after ``whsec_`` (else the secret's UTF-8 bytes); the HMAC-SHA256 of ``id.timestamp.body`` must
    be one of the header's space-separated ``v1,<base64>`` signatures; the timestamp must be recent."""
    headers = {name.lower(): value for name, value in request.headers.items()}
    webhook_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    key = base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + request.body, hashlib.sha256).digest()
    expected = base64.b64encode(mac).decode()
    offered = [sig.split(",", 1)[1] for sig in headers["webhook-signature"].split() if sig.startswith("v1,")]
    recent = abs(time.time() - int(timestamp)) <= tolerance_s
    return recent and any(hmac.compare_digest(expected, sig) for sig in offered)


def test_signature_matches_the_standard_webhooks_test_vector() -> None:
    """The specification's published example (secret, id, timestamp, payload → signature)."""
    signed = signature(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        webhook_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp=1614265330,
        body=b'{"test": 2432232314}',
    )
    assert signed == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_alarm_is_posted_signed_to_judge_and_creditor(court: Court, receiver: Receiver) -> None:
    targets(court, ("judge", receiver.url("/judge"), None), ("creditor", receiver.url("/creditor"), CREDITOR_SECRET))
    court.send(court.a, court.a.event(EventType.INTRUSION, {"warning": "played"}), at=T0)
    assert [(n.role, n.state, n.attempts) for n in notifications(court)] == [
        ("judge", "pending", 0),
        ("creditor", "pending", 0),
    ]

    assert make_worker(court, Clock()).run_once() == 2

    by_path = {r.path: r for r in receiver.wait_for(2)}
    for path, secret in (("/judge", GLOBAL_SECRET), ("/creditor", CREDITOR_SECRET)):
        request = by_path[path]
        assert verifies(secret, request)
        assert request.headers[SIGNATURE_HEADER].startswith("v1,")
        body = json.loads(request.body)
        assert body["alarm"]["kind"] == "intrusion" and body["alarm"]["case_no"] == court.a.case_no
        assert body["alarm"]["details"]["warning"] == "played"
        assert body["role"] == path[1:] and request.headers[ID_HEADER] == str(body["notification_id"])
        assert abs(int(request.headers[TIMESTAMP_HEADER]) - time.time()) < 60
    assert not verifies(GLOBAL_SECRET, by_path["/creditor"])  # each target its own key
    tampered = Received("/creditor", by_path["/creditor"].headers, by_path["/creditor"].body + b" ")
    assert not verifies(CREDITOR_SECRET, tampered)
    replayed = dict(by_path["/creditor"].headers) | {TIMESTAMP_HEADER: str(int(time.time()) + 3600)}
    assert not verifies(CREDITOR_SECRET, Received("/creditor", replayed, by_path["/creditor"].body))
    assert [(n.state, n.attempts, n.sent_at) for n in notifications(court)] == [("sent", 1, T0), ("sent", 1, T0)]
    assert court.metrics.snapshot().notifications_sent == 2


def test_folded_repeats_and_redeliveries_notify_once(court: Court, receiver: Receiver) -> None:
    targets(court, ("judge", receiver.url("/judge"), None))
    first = court.a.event(EventType.INTRUSION)
    court.send(court.a, first, at=T0)
    court.send(court.a, first, court.a.event(EventType.INTRUSION), at=T0 + timedelta(seconds=5))
    assert len(notifications(court)) == 1


def test_failing_endpoint_is_retried_with_back_off(
    court: Court, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="server.notify.worker")
    receiver.statuses = [500, 503]
    targets(court, ("judge", receiver.url("/judge"), None))
    court.send(court.a, court.a.event(EventType.TAMPER), at=T0)
    clock = Clock()
    worker = make_worker(court, clock)

    assert worker.run_once() == 1  # HTTP 500: again in 1 s
    [row] = notifications(court)
    assert (row.state, row.attempts, row.last_error, row.next_attempt_at) == (
        "pending",
        1,
        "HTTP 500",
        T0 + timedelta(seconds=1),
    )
    assert worker.run_once() == 0  # not due yet
    clock.now += timedelta(seconds=1)
    assert worker.run_once() == 1  # HTTP 503: again in 2 s
    [row] = notifications(court)
    assert (row.attempts, row.next_attempt_at) == (2, clock.now + timedelta(seconds=2))
    clock.now += timedelta(seconds=2)
    assert worker.run_once() == 1

    assert len(receiver.wait_for(3)) == 3
    [row] = notifications(court)
    assert (row.state, row.attempts, row.last_error) == ("sent", 3, None)
    snap = court.metrics.snapshot()
    assert (snap.notifications_sent, snap.notification_attempts_failed, snap.notifications_failed) == (1, 2, 0)
    assert sum("HTTP 50" in r.getMessage() for r in caplog.records) == 2


def test_final_failure_is_recorded_after_max_attempts(
    court: Court, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="server.notify.worker")
    receiver.statuses = [500] * 10
    targets(court, ("judge", receiver.url("/judge"), None))
    court.send(court.a, court.a.event(EventType.TAMPER), at=T0)
    clock = Clock()
    worker = make_worker(court, clock, max_attempts=3)

    for _ in range(5):
        worker.run_once()
        clock.now += timedelta(seconds=10)

    assert len(receiver.requests) == 3
    [row] = notifications(court)
    assert (row.state, row.attempts, row.last_error) == ("failed", 3, "HTTP 500")
    assert court.metrics.snapshot().notifications_failed == 1
    assert any("giving up" in r.getMessage() for r in caplog.records)


def test_unreachable_endpoint_is_retried(court: Court) -> None:
    targets(court, ("judge", f"http://127.0.0.1:{free_port()}/nobody", None))
    court.send(court.a, court.a.event(EventType.TAMPER), at=T0)

    make_worker(court, Clock()).run_once()

    [row] = notifications(court)
    assert row.state == "pending" and row.attempts == 1
    assert row.last_error is not None and row.last_error.startswith("cannot reach")


def test_without_any_secret_nothing_is_sent(court: Court, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="server.notify.webhook")
    targets(court, ("judge", receiver.url("/judge"), None), ("creditor", receiver.url("/creditor"), CREDITOR_SECRET))
    court.send(court.a, court.a.event(EventType.TAMPER), at=T0)

    make_worker(court, Clock(), secret=None).run_once()

    assert [r.path for r in receiver.wait_for(1)] == ["/creditor"]
    judge, creditor = notifications(court)
    assert (judge.state, judge.attempts) == ("failed", 1) and "no signing key" in (judge.last_error or "")
    assert creditor.state == "sent"
    assert any("webhook_secret_file is not set" in r.getMessage() for r in caplog.records)


def test_worker_thread_delivers(court: Court, receiver: Receiver) -> None:
    targets(court, ("judge", receiver.url("/judge"), None))
    worker = make_worker(court, Clock(datetime.now(UTC) + timedelta(minutes=1)), poll_interval_s=0.02)
    worker.start()
    try:
        court.send(court.a, court.a.event(EventType.TAMPER))
        [request] = receiver.wait_for(1)
        assert court.metrics.wait_until(lambda m: m.notifications_sent == 1, 10.0)
    finally:
        worker.stop()
    assert json.loads(request.body)["alarm"]["severity"] == "critical"


def test_target_validation(court: Court) -> None:
    with session_scope(court.session_factory) as session:
        for url in ("ftp://example.org/x", "not a url", "http://"):
            with pytest.raises(ValueError):
                add_notification_target(session, case_no=court.a.case_no, role="judge", url=url)
        with pytest.raises(ValueError):
            add_notification_target(
                session, case_no=court.a.case_no, role="judge", url="https://a.example", secret="short"
            )
        with pytest.raises(ValueError):
            add_notification_target(session, case_no=court.a.case_no, role="debtor", url="https://a.example")
        with pytest.raises(NotFound):
            add_notification_target(session, case_no="(2099)无此案", role="judge", url="https://a.example")


def test_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(GLOBAL_SECRET + "\n")
    assert read_secret(path) == GLOBAL_SECRET
    path.write_text("short\n")
    with pytest.raises(ConfigError):
        read_secret(path)
    with pytest.raises(ConfigError):
        read_secret(tmp_path / "missing")


def test_app_checks_liveness_and_sends_notifications(
    court: Court, receiver: Receiver, broker: PrivateBroker, database_url: str, tmp_path: Path
) -> None:
    """The app's lifespan runs both: a seal silent for an hour gets an offline alarm, and the judge a webhook."""
    targets(court, ("judge", receiver.url("/judge"), None))
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    court.send(court.a, court.a.event(at=an_hour_ago), at=an_hour_ago)
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_text(GLOBAL_SECRET + "\n")
    settings = Settings(
        database_url=database_url,
        snapshot_dir=tmp_path / "snapshots",
        mqtt=server_mqtt_settings(broker, tmp_path),
        liveness=LivenessSettings(check_interval_s=0.05),
        notify=NotifySettings(webhook_secret_file=secret_file, poll_interval_s=0.05, allow_loopback_targets=True),
    )

    with TestClient(create_app(settings)):
        [request] = receiver.wait_for(1)

    body = json.loads(request.body)
    assert (body["alarm"]["kind"], body["alarm"]["device_id"], body["alarm"]["details"]["reason"]) == (
        "offline",
        "seal-a",
        "silent",
    )
    assert verifies(GLOBAL_SECRET, request)
    [row] = notifications(court)
    assert row.state == "sent"


def test_a_row_is_not_claimed_again_while_its_send_may_last(court: Court, receiver: Receiver) -> None:
    """Three alarms for one judge: sent one after another, each cut off after its timeout (5 s). Each row is leased
    until its turn's send must have ended; a second worker looking during the first send finds nothing to claim."""
    targets(court, ("judge", receiver.url("/judge"), None))
    for kind in (EventType.TAMPER, EventType.INTRUSION, EventType.CAMERA_BLIND):
        court.send(court.a, court.a.event(kind), at=T0)
    send_s = 5.0 + SEND_SLACK_S
    second = make_worker(court, Clock(T0 + timedelta(seconds=send_s + LEASE_MARGIN_S - 1)))
    during: list[tuple[int, list[datetime]]] = []
    webhooks = WebhookNotifier(secret=GLOBAL_SECRET, timeout_s=5.0, policy=LOCAL)

    class Watched:
        """The first worker's notifier: while its first send is under way, the second worker runs."""

        def notify(self, alarm: Alarm, recipients: Sequence[Recipient]) -> list[Delivery]:
            if not during:
                leases = [n.next_attempt_at.replace(tzinfo=UTC) for n in notifications(court)]
                during.append((second.run_once(), leases))
            return webhooks.notify(alarm, recipients)

    settings = NotifySettings(timeout_s=5.0)
    first = NotificationWorker(
        court.session_factory, Watched(), settings=settings, metrics=court.metrics, clock=Clock()
    )

    assert first.run_once() == 3

    leases = [T0 + timedelta(seconds=n * send_s + LEASE_MARGIN_S) for n in (1, 2, 3)]
    assert during == [(0, leases)]
    assert len(receiver.wait_for(3)) == 3
    assert [(n.state, n.attempts) for n in notifications(court)] == [("sent", 1)] * 3
