"""Webhook sends under a hostile receiver: one that answers a byte at a time is cut off at ``timeout_s``, does not
delay other targets' notifications — not even one that becomes due while it is being sent to —, gets its own in
order until it fails (then its breaker opens), and is never sent the same notification twice by two workers; a
worker stopped during a send loses nothing; and webhooks go nowhere near the court's own loopback, link-local (cloud
metadata) or multicast addresses."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from seal_protocol import EventType
from server.alarms.models import Alarm
from server.config import NotifySettings
from server.core.db import SessionFactory, session_scope
from server.notify.addresses import AddressPolicy
from server.notify.models import Notification
from server.notify.outbox import enqueue_notifications
from server.notify.targets import add_notification_target
from server.notify.webhook import Delivery, Recipient, WebhookNotifier
from server.notify.worker import CLAIM_LIMIT, PER_TARGET, NotificationWorker
from tests.agent.helpers import wait_until
from tests.server.ingest_world import Court, make_court
from tests.server.test_notify import GLOBAL_SECRET, LOCAL, Receiver, receiver  # noqa: F401 (a fixture)

#: The deadline of a send here: long against a loaded machine's scheduling (CI's four workers on two cores once
#: delayed the well-behaved receiver's POST by a second), short for the suite.
TIMEOUT_S = 3.0


@dataclass
class Dripper:
    """A webhook receiver that reads the request, then answers one header byte every 0.2 s, for as long as the
    client stays (a minute at most) — or, once ``heal`` is set, answers 200 at once; counts the requests it got and
    keeps their ``webhook-id`` in order."""

    port: int = 0
    connections: int = 0
    ids: list[int] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    heal: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, listener: socket.socket) -> None:
        listener.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()
        listener.close()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            try:
                request = conn.recv(65536)
                self.connections += 1
                found = re.search(rb"(?im)^webhook-id: *(\d+)", request)
                self.ids.append(int(found.group(1)) if found else -1)
                if self.heal.is_set():
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    return
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                end = time.monotonic() + 60
                while time.monotonic() < end and not self.stop.is_set():
                    conn.sendall(b"a")
                    time.sleep(0.2)
            except OSError:
                pass


@pytest.fixture
def dripper() -> Iterator[Dripper]:
    state = Dripper()
    listener = socket.create_server(("127.0.0.1", 0))
    state.port = listener.getsockname()[1]
    thread = threading.Thread(target=state.serve, args=(listener,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stop.set()
        thread.join(5)


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    return make_court(session_factory, tmp_path)


def an_alarm() -> Alarm:
    now = datetime.now(UTC)
    return Alarm(
        id=1,
        case_no="c",
        device_id="d",
        kind="intrusion",
        severity="high",
        state="open",
        opened_at=now,
        last_seen_at=now,
        count=1,
        details={},
    )


def worker(world: Court, **settings: float) -> NotificationWorker:
    notify = NotifySettings.model_validate({"timeout_s": TIMEOUT_S, **settings})
    webhooks = WebhookNotifier(secret=GLOBAL_SECRET, timeout_s=TIMEOUT_S, policy=LOCAL)
    return NotificationWorker(world.session_factory, webhooks, settings=notify, metrics=world.metrics)


def creditor_drips_and_judge_b_listens(world: Court, dripper: Dripper, judge_b: Receiver) -> None:
    """Case A's creditor is the dripper, case B's judge the well-behaved receiver; an alarm for each (A's first)."""
    with session_scope(world.session_factory) as session:
        add_notification_target(session, case_no=world.a.case_no, role="creditor", url=dripper.url(), policy=LOCAL)
        add_notification_target(
            session, case_no=world.b.case_no, role="judge", url=judge_b.url("/judge-b"), policy=LOCAL
        )
    world.send(world.a, world.a.event(EventType.INTRUSION))
    world.send(world.b, world.b.event(EventType.TAMPER))


def test_a_dripping_receiver_is_cut_off_at_the_timeout(dripper: Dripper) -> None:
    webhooks = WebhookNotifier(secret=GLOBAL_SECRET, timeout_s=TIMEOUT_S, policy=LOCAL)
    started = time.monotonic()

    [delivery] = webhooks.notify(an_alarm(), [Recipient(1, "creditor", dripper.url())])

    assert time.monotonic() - started < TIMEOUT_S + 1.0
    assert not delivery.delivered and delivery.retry
    assert "did not answer" in (delivery.error or "") and dripper.connections == 1


def test_a_dripping_receiver_does_not_delay_another_target(
    court: Court,
    dripper: Dripper,
    receiver: Receiver,  # noqa: F811
) -> None:
    creditor_drips_and_judge_b_listens(court, dripper, receiver)
    started = time.monotonic()
    round_ = threading.Thread(target=worker(court).run_once)
    round_.start()

    receiver.wait_for(1, timeout=5)
    promptly = time.monotonic() - started
    round_.join(10)

    # behind the dripper it would have waited its whole timeout; the margin is for a loaded machine
    assert promptly < TIMEOUT_S - 0.5, f"case B's judge waited {promptly:.1f} s behind case A's creditor"
    assert not round_.is_alive()
    with court.session_factory() as session:
        rows = {n.url: n for n in session.scalars(select(Notification))}
        assert rows[receiver.url("/judge-b")].state == "sent"
        creditor = rows[dripper.url()]
        assert (creditor.state, creditor.attempts) == ("pending", 1)
        assert "did not answer" in (creditor.last_error or "")


def test_two_workers_never_send_the_same_notification_twice(
    court: Court,
    dripper: Dripper,
    receiver: Receiver,  # noqa: F811
) -> None:
    """Two ``seal-server run`` each run a worker, the second polling all along the first's round: each notification
    is claimed by one of them, once (the drip's retry waits out its back-off, 5 s)."""
    creditor_drips_and_judge_b_listens(court, dripper, receiver)
    first, second = worker(court), worker(court)
    claimed: list[int] = []
    round_ = threading.Thread(target=lambda: claimed.append(first.run_once()))
    round_.start()
    while round_.is_alive():
        claimed.append(second.run_once())
        time.sleep(0.05)
    claimed.append(second.run_once())
    time.sleep(0.3)

    assert sum(claimed) == 2
    assert [r.path for r in receiver.requests] == ["/judge-b"]
    assert dripper.connections == 1
    with court.session_factory() as session:
        assert sorted(n.attempts for n in session.scalars(select(Notification))) == [1, 1]


def dripping_backlog(world: Court, dripper: Dripper, count: int) -> list[int]:
    """Case A's creditor is the dripper, with ``count`` notifications due (of one alarm): their ids, in order."""
    with session_scope(world.session_factory) as session:
        add_notification_target(session, case_no=world.a.case_no, role="creditor", url=dripper.url(), policy=LOCAL)
    world.send(world.a, world.a.event(EventType.INTRUSION))
    with session_scope(world.session_factory) as session:
        alarm = session.scalars(select(Alarm)).one()
        for _ in range(count - 1):
            enqueue_notifications(session, alarm, now=datetime.now(UTC))
    with world.session_factory() as session:
        return list(session.scalars(select(Notification.id).order_by(Notification.id)))


def notifications(world: Court) -> dict[int, Notification]:
    with world.session_factory() as session:
        return {n.id: n for n in session.scalars(select(Notification))}


def test_an_alarm_due_while_a_dripper_is_sent_to_does_not_wait_for_it(
    court: Court,
    dripper: Dripper,
    receiver: Receiver,  # noqa: F811
) -> None:
    """Case A's creditor drips and has six notifications due: the worker sends the first, cut off at its deadline.
    Case B's judge's tamper alarm, due while it is under way, is delivered within seconds, not when the dripper's
    send ends. Then the dripper's breaker opens: the rest of its chain, and its sixth, are recorded failed without a
    request (one attempt each, as if sent), not sent one after another each for its whole timeout."""
    backlog = dripping_backlog(court, dripper, PER_TARGET + 1)
    with session_scope(court.session_factory) as session:
        judge_b = receiver.url("/judge-b")
        add_notification_target(session, case_no=court.b.case_no, role="judge", url=judge_b, policy=LOCAL)
    notifier = worker(court, poll_interval_s=0.1, retry_base_s=3600)
    notifier.start()
    try:
        assert wait_until(lambda: dripper.connections >= 1, 10)
        court.send(court.b, court.b.event(EventType.TAMPER))
        due = time.monotonic()
        receiver.wait_for(1, timeout=PER_TARGET * TIMEOUT_S + 10)
        waited = time.monotonic() - due

        assert waited < 4.0, f"case B's judge waited {waited:.1f} s behind case A's creditor's sends"
        assert wait_until(
            lambda: all(
                n.attempts == 1 and n.last_error for n in notifications(court).values() if n.url == dripper.url()
            ),
            TIMEOUT_S + 10,
        )
        time.sleep(0.5)
    finally:
        notifier.stop()
    assert dripper.ids == backlog[:1]
    assert [r.path for r in receiver.requests] == ["/judge-b"]
    rows = notifications(court)
    assert [(rows[i].state, rows[i].attempts) for i in backlog] == [("pending", 1)] * len(backlog)
    assert "did not answer" in (rows[backlog[0]].last_error or "")
    assert all("not sent: 127.0.0.1:" in (rows[i].last_error or "") for i in backlog[1:])
    [judge] = [n for n in rows.values() if n.url == judge_b]
    assert (judge.state, judge.attempts) == ("sent", 1)


def test_a_worker_stopped_during_a_send_loses_nothing(court: Court, dripper: Dripper) -> None:
    """The worker is stopped (waiting 0.5 s at most) while its first of two sends to the dripper is under way: the
    row stays leased, the send's outcome is recorded when it is cut off, the second row is given back unsent (its
    attempt not counted); a later worker sends both, in order."""
    first, second = dripping_backlog(court, dripper, 2)
    notifier = worker(court, poll_interval_s=0.1, retry_base_s=3600)
    notifier.start()
    assert wait_until(lambda: dripper.connections >= 1, 10)

    notifier.stop(timeout=0.5)

    assert notifications(court)[first].next_attempt_at > datetime.now(UTC)  # leased, or recorded and backing off

    def settled() -> bool:
        rows = notifications(court)
        return rows[first].last_error is not None and rows[second].attempts == 0

    assert wait_until(settled, TIMEOUT_S + 10)
    rows = notifications(court)
    assert (rows[first].state, rows[first].attempts) == ("pending", 1)
    assert "did not answer" in (rows[first].last_error or "")
    assert (rows[second].state, rows[second].last_error) == ("pending", None)
    assert rows[second].next_attempt_at <= datetime.now(UTC)
    assert dripper.ids == [first]

    dripper.heal.set()
    later = NotificationWorker(
        court.session_factory,
        WebhookNotifier(secret=GLOBAL_SECRET, timeout_s=TIMEOUT_S, policy=LOCAL),
        settings=NotifySettings(timeout_s=TIMEOUT_S),
        metrics=court.metrics,
        clock=lambda: datetime.now(UTC) + timedelta(hours=2),  # past the first one's back-off
    )
    assert later.run_once() == 2
    assert dripper.ids == [first, first, second]
    rows = notifications(court)
    assert [(rows[i].state, rows[i].attempts) for i in (first, second)] == [("sent", 2), ("sent", 1)]


class Gated:
    """A notifier (no HTTP) whose sends to ``slow`` wait until ``release`` is set; every send is delivered and its
    notification id kept, in order."""

    def __init__(self, slow: str) -> None:
        self.slow = slow
        self.held = threading.Event()
        self.release = threading.Event()
        self.sent: list[int] = []

    def notify(self, alarm: Alarm, recipients: Sequence[Recipient]) -> list[Delivery]:
        [recipient] = recipients
        if recipient.url == self.slow:
            self.held.set()
            self.release.wait(60)
        self.sent.append(recipient.notification_id)
        return [Delivery(recipient, True)]


def test_a_busy_targets_backlog_does_not_hide_another_targets_alarm(court: Court) -> None:
    """Case A's creditor has more notifications due than a claim reads, and its send hangs: case B's judge's alarm,
    due after all of them, is still sent at once (the claim leaves out the rows of targets being sent to). Once
    the creditor answers, its backlog goes out in order, each notification once."""
    slow, judge_b = "http://127.0.0.1:9/creditor", "http://127.0.0.1:10/judge-b"  # two receivers: two ports
    with session_scope(court.session_factory) as session:
        add_notification_target(session, case_no=court.a.case_no, role="creditor", url=slow, policy=LOCAL)
        add_notification_target(session, case_no=court.b.case_no, role="judge", url=judge_b, policy=LOCAL)
    court.send(court.a, court.a.event(EventType.INTRUSION))
    with session_scope(court.session_factory) as session:
        alarm = session.scalars(select(Alarm)).one()
        for _ in range(CLAIM_LIMIT + PER_TARGET):
            enqueue_notifications(session, alarm, now=datetime.now(UTC))
    backlog = sorted(notifications(court))
    gated = Gated(slow)
    notifier = NotificationWorker(
        court.session_factory,
        gated,
        settings=NotifySettings(poll_interval_s=0.05),
        metrics=court.metrics,
    )
    notifier.start()
    try:
        assert gated.held.wait(10)
        court.send(court.b, court.b.event(EventType.TAMPER))
        [judge] = [n.id for n in notifications(court).values() if n.url == judge_b]
        assert wait_until(lambda: judge in gated.sent, 5), "case B's judge waited behind case A's creditor"
        assert gated.sent == [judge]

        gated.release.set()
        assert wait_until(lambda: len(gated.sent) == len(backlog) + 1, 30)
        assert notifier.wait_idle(10)
    finally:
        gated.release.set()
        notifier.stop()
    assert gated.sent == [judge, *backlog]
    assert {(n.state, n.attempts) for n in notifications(court).values()} == {("sent", 1)}


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/api/alarms",
        "http://127.1/",
        "http://2130706433/",
        "http://localhost/",
        "http://[::1]:5432/",
        "http://[::ffff:127.0.0.1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://100.100.100.200/latest/meta-data/",
        "http://0.0.0.0:8000/",
        "http://[::]/",
        "http://224.0.0.1/",
    ],
)
def test_internal_webhook_targets_are_refused(court: Court, url: str) -> None:
    with session_scope(court.session_factory) as session, pytest.raises(ValueError, match="通知目标.*A webhook must"):
        add_notification_target(session, case_no=court.a.case_no, role="creditor", url=url, secret="x" * 20)


def test_private_targets_are_allowed_unless_configured_otherwise(court: Court) -> None:
    strict = AddressPolicy.from_settings(NotifySettings(allow_private_targets=False))
    with session_scope(court.session_factory) as session:
        for url in ("http://10.0.0.5/relay", "https://192.168.1.2/", "http://[fd12::1]/"):
            add_notification_target(session, case_no=court.a.case_no, role="judge", url=url, secret="x" * 20)
            with pytest.raises(ValueError, match="private"):
                add_notification_target(session, case_no=court.b.case_no, role="judge", url=url, policy=strict)


def test_a_target_that_points_at_the_court_when_sending_is_not_sent(receiver: Receiver) -> None:  # noqa: F811
    """A target added while it was elsewhere (or a name that now resolves to loopback: DNS rebinding) is refused
    when the webhook is sent, and nothing reaches the address."""
    webhooks = WebhookNotifier(secret=GLOBAL_SECRET, timeout_s=TIMEOUT_S)
    urls = [receiver.url("/literal")]
    name = socket.gethostname()
    if all(info[4][0].startswith("127.") for info in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)):
        urls.append(f"http://{name}:{receiver.port}/by-name")

    deliveries = webhooks.notify(an_alarm(), [Recipient(i, "judge", url) for i, url in enumerate(urls)])

    assert [(d.delivered, d.retry) for d in deliveries] == [(False, True)] * len(urls)
    assert all("loopback" in (d.error or "") for d in deliveries)
    time.sleep(0.2)
    assert receiver.requests == []
