"""Webhook receivers that never answer — more of them than the worker has sender threads, each a target of its own
case — do not hold up another case's alarms: neither on first contact (all due at once) nor afterwards, when their
retries come due again and again; and each such target's backlog costs one request per back-off (its breaker), the
rest recorded as failed attempts without a request."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from seal_protocol import EventType
from server.config import AlarmSettings, NotifySettings
from server.core.db import SessionFactory, session_scope
from server.core.metrics import IngestMetrics
from server.ingest.ingestor import Ingestor
from server.ingest.results import Message
from server.notify.models import Notification
from server.notify.targets import add_notification_target
from server.notify.webhook import WebhookNotifier
from server.notify.worker import SEND_THREADS, NotificationWorker
from tests.agent.helpers import wait_until
from tests.server.helpers import SimulatedSeal, register
from tests.server.test_notify import GLOBAL_SECRET, LOCAL, Receiver, receiver  # noqa: F401 (a fixture)

#: A short deadline keeps the suite short; the bounds below are multiples of it, far below what the old worker took.
TIMEOUT_S = 2.0
KINDS = [EventType.INTRUSION, EventType.TAMPER, EventType.CAMERA_BLIND, EventType.CAMERA_LOST, EventType.OUTBOX_FULL]


@dataclass
class Silent:
    """A webhook receiver behind a black hole: accepts connections and never reads or answers; counts them."""

    listener: socket.socket
    conns: list[socket.socket] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"

    def serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stop.is_set():
            try:
                self.conns.append(self.listener.accept()[0])
            except TimeoutError:
                continue
        for conn in self.conns:
            conn.close()
        self.listener.close()


@pytest.fixture
def silent() -> Iterator[Callable[[], Silent]]:
    made: list[tuple[Silent, threading.Thread]] = []

    def make() -> Silent:
        state = Silent(socket.create_server(("127.0.0.1", 0)))
        thread = threading.Thread(target=state.serve, daemon=True)
        thread.start()
        made.append((state, thread))
        return state

    try:
        yield make
    finally:
        for state, thread in made:
            state.stop.set()
            thread.join(5)


@dataclass
class Cases:
    """``seals[i]`` guards case ``i``, each with its own webhook target; a real ingest raises their alarms."""

    session_factory: SessionFactory
    ingestor: Ingestor
    metrics: IngestMetrics
    seals: list[SimulatedSeal]

    def alarm(self, seal: SimulatedSeal, kind: EventType) -> None:
        self.ingestor.ingest([Message(seal.event_topic, seal.event(kind), datetime.now(UTC))])

    def rows(self, url: str) -> list[Notification]:
        with self.session_factory() as session:
            return list(session.scalars(select(Notification).where(Notification.url == url).order_by(Notification.id)))

    def worker(self, **settings: float) -> NotificationWorker:
        notify = NotifySettings.model_validate({"timeout_s": TIMEOUT_S, "poll_interval_s": 0.1, **settings})
        webhooks = WebhookNotifier(secret=GLOBAL_SECRET, timeout_s=TIMEOUT_S, policy=LOCAL)
        return NotificationWorker(self.session_factory, webhooks, settings=notify, metrics=self.metrics)


def cases(session_factory: SessionFactory, tmp_path: Path, urls: list[str]) -> Cases:
    """One case, seal and creditor (or, for the last URL, judge) target per URL."""
    seals = [SimulatedSeal(f"seal-{i}", f"(2021)苏0214执{1000 + i}号") for i in range(len(urls))]
    register(session_factory, *seals)
    with session_scope(session_factory) as session:
        for i, (seal, url) in enumerate(zip(seals, urls, strict=True)):
            role = "judge" if i == len(urls) - 1 else "creditor"
            add_notification_target(session, case_no=seal.case_no, role=role, url=url, policy=LOCAL)
    metrics = IngestMetrics()
    ingestor = Ingestor(
        session_factory, metrics=metrics, snapshot_dir=tmp_path / "snapshots", alarms=AlarmSettings(fold_window_s=300)
    )
    return Cases(session_factory, ingestor, metrics, seals)


def test_dead_receivers_do_not_hold_up_a_judges_alarms(
    session_factory: SessionFactory,
    tmp_path: Path,
    silent: Callable[[], Silent],
    receiver: Receiver,  # noqa: F811
) -> None:
    """Ten creditors' receivers never answer, each with five alarms due before the judge's five: the judge's all
    arrive within two timeouts (the old worker spent five timeouts on each of its eight threads' dead targets
    first). Each dead target then gets one request; its four other notifications are recorded failed without one
    (one attempt each), not each sent for its whole timeout."""
    dead = [silent() for _ in range(10)]
    world = cases(session_factory, tmp_path, [d.url for d in dead] + [receiver.url("/judge")])
    for kind in KINDS:
        for seal in world.seals:
            world.alarm(seal, kind)
    notifier = world.worker(retry_base_s=3600)
    notifier.start()
    try:
        receiver.wait_for(len(KINDS), timeout=2 * TIMEOUT_S)

        def recorded() -> bool:
            return all(n.attempts == 1 and n.last_error for d in dead for n in world.rows(d.url))

        assert wait_until(recorded, 3 * TIMEOUT_S + 10)
    finally:
        notifier.stop()
    assert [len(d.conns) for d in dead] == [1] * len(dead)
    for d in dead:
        first, *rest = world.rows(d.url)
        assert first.last_error and "not sent" not in first.last_error  # did not answer, or timed out
        assert [("not sent:" in (n.last_error or ""), n.state) for n in rest] == [(True, "pending")] * 4
    assert {(n.state, n.attempts) for n in world.rows(receiver.url("/judge"))} == {("sent", 1)}
    snap = world.metrics.snapshot()
    assert (snap.notifications_sent, snap.notification_attempts_failed) == (len(KINDS), len(KINDS) * len(dead))


def test_dead_receivers_retries_do_not_starve_a_fresh_alarm(
    session_factory: SessionFactory,
    tmp_path: Path,
    silent: Callable[[], Silent],
    receiver: Receiver,  # noqa: F811
) -> None:
    """More dead receivers than sender threads, their notifications due again every 0.2 s: a judge's alarm raised
    once all of them have failed arrives within two timeouts (with the old worker, the dead targets' retries won
    every claim, older rows first, and held all its threads)."""
    dead = [silent() for _ in range(SEND_THREADS + 4)]
    world = cases(session_factory, tmp_path, [d.url for d in dead] + [receiver.url("/judge")])
    for seal in world.seals[:-1]:
        world.alarm(seal, EventType.INTRUSION)
    notifier = world.worker(retry_base_s=0.2, retry_max_s=0.2, max_attempts=100)
    notifier.start()
    try:
        assert wait_until(lambda: all(n.last_error for d in dead for n in world.rows(d.url)), 6 * TIMEOUT_S + 10)
        world.alarm(world.seals[-1], EventType.TAMPER)

        receiver.wait_for(1, timeout=2 * TIMEOUT_S)
    finally:
        notifier.stop()
    [judge] = world.rows(receiver.url("/judge"))
    assert (judge.state, judge.attempts) == ("sent", 1)
