"""The court judges by what the seals sent, not by when it read it (a hostile review's three reproductions).

- The court down a little longer than ``offline_after_s`` while its seals keep talking: nobody is paged offline at
  the restart (their events wait at the broker; the liveness check waits for the ingest's caught-up mark).
- A disarm acknowledged in time while the court was down is not expired (nor ``disarm_failed``) at the restart.
- Three ingest members of one shared group, one process of them paused (or killed and restarted) holding a seal's old
  ``offline``: the ``online`` the seal sent later, stored by another member, stays.

Real broker, real ``seal-server`` processes; each fails on the code that judged by receive time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from seal_dev.broker import PrivateBroker
from seal_protocol.commands import CommandAction
from seal_protocol.envelope import utc_now_ms
from seal_protocol.signing import load_signing_key
from seal_protocol.status import SealStatus, encode_status
from seal_protocol.topics import status_topic
from server.auth.access import Role
from server.auth.users import create_user
from server.commands.service import issue_command
from server.core.base import utc_now
from server.core.db import make_session_factory, session_scope
from server.seals.models import Seal as SealRow
from tests.reliability.conftest import SealFactory
from tests.reliability.harness import SEAL_SERVER, Court, check_delivery, child_env, log, settle, wait_flowing, wait_for


def _alarms(court: Court, kind: str) -> list[Any]:
    with court.engine.connect() as c:
        return list(c.execute(text("select device_id, details from alarms where kind = :k"), {"k": kind}).all())


def test_court_down_longer_than_offline_after_pages_nobody(court: Court, make_seal: SealFactory) -> None:
    offline_after_s = 10
    court.config.write_text(court.config.read_text().replace("[http]", f"offline_after_s = {offline_after_s}\n[http]"))
    court.config.write_text(court.config.read_text() + "[liveness]\ncheck_interval_s = 0.5\n")
    seals = [make_seal(f"seal-o-{n}") for n in (1, 2)]
    court.prepare({s.device_id: s.public_key for s in seals})
    court.start()
    for seal in seals:
        seal.start(trigger_every=0.5)  # every seal talks twice a second, all along
    wait_flowing(court, seals)
    court.kill()
    log("court killed; the seals keep publishing (the broker queues for the court's persistent session)")
    time.sleep(offline_after_s + 3)
    court.start()
    time.sleep(4)  # several liveness rounds, the first at once
    paged = _alarms(court, "offline")
    created = settle(court, seals, 45)
    check_delivery(court, created, {s.device_id: s.public_key for s in seals})
    assert not paged, f"seals that never stopped talking were paged offline: {paged}"


def test_a_disarm_acknowledged_in_time_is_not_expired(
    court: Court, make_seal: SealFactory, court_key_file: Path
) -> None:
    ttl_s = 8
    court.config.write_text(court.config.read_text() + f"ttl_s = {ttl_s}\nretry_interval_s = 0.3\n")
    seal = make_seal("seal-cmd")
    court.prepare({seal.device_id: seal.public_key})
    court.start()
    seal.start()
    assert wait_for(lambda: court.event_count(seal.device_id) >= 1, 30), seal.log_tail()
    seal.stop()
    with session_scope(make_session_factory(court.engine)) as session:
        judge = create_user(session, username="judge1", role=Role.JUDGE, password_hash="x")
        row = issue_command(
            session,
            seal=session.scalars(select(SealRow).where(SealRow.device_id == seal.device_id)).one(),
            action=CommandAction.DISARM,
            args={},
            key=load_signing_key(court_key_file),
            ttl=timedelta(seconds=ttl_s),
            user=judge,
            now=utc_now(),
        )
        command_id = row.id
    issued = time.monotonic()

    def command() -> Any:
        with court.engine.connect() as c:
            sql = "select state, broker_accepted_at, answered_at, expires_at from commands where id = :i"
            return c.execute(text(sql), {"i": command_id}).one()

    assert wait_for(lambda: command()[1] is not None, 5), command()
    court.kill()
    seal.start()  # the seal takes the disarm from its session and acknowledges it; the ack waits at the broker
    assert wait_for(lambda: seal.count_events_of_type("command_ack") >= 1, 10), seal.log_tail()
    acked_after = time.monotonic() - issued
    log("the seal acknowledged the disarm %.1f s after it was issued (ttl %d s)", acked_after, ttl_s)
    assert acked_after < ttl_s - 1, "the scenario needs an ack well within the ttl"
    time.sleep(max(0.0, ttl_s + 1 - (time.monotonic() - issued)))
    court.start()
    assert wait_for(lambda: command()[0] != "published", 15), command()
    time.sleep(1.5)  # a few dispatcher rounds more
    log("command now: %s", command())
    assert command()[0] == "acknowledged"
    failed = _alarms(court, "disarm_failed")
    assert not failed, f"a disarm the seal acknowledged in time raised disarm_failed: {failed}"


class _SharedCourt(Court):
    """``seal-server run`` and ``seal-server ingest --workers 2`` in one shared group: three members."""

    def __post_init__(self) -> None:
        super().__post_init__()
        config = self.config.read_text().replace("batch_size = ", 'shared_group = "court"\nbatch_size = ')
        self.config.write_text(config + "[alarms]\noffline_grace_s = 2\n[liveness]\ncheck_interval_s = 0.5\n")
        self.ingest: subprocess.Popen[bytes] | None = None

    def start_ingest(self) -> None:
        with (self.directory / "ingest.log").open("ab") as out:
            self.ingest = subprocess.Popen(
                [str(SEAL_SERVER), "ingest", "--config", str(self.config), "--workers", "2"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=child_env(DATABASE_URL=self.database_url),
                start_new_session=True,
            )

    def ingest_marked(self) -> bool:
        """Both workers of the ingest process are subscribed and storing (each has recorded a caught-up mark)."""
        try:
            with self.engine.connect() as c:
                workers = set(c.scalars(text("select worker from ingest_marks")))
        except OperationalError:  # a court from before the marks (to show that the test fails there)
            started = (self.directory / "ingest.log").read_text().count(" running") >= 2
            if started:
                time.sleep(5)  # their subscriptions, given time
            return started
        return {"court-server-ingest-ingest-1", "court-server-ingest-ingest-2"} <= workers

    def signal_ingest(self, sig: signal.Signals) -> None:
        if self.ingest is not None and self.ingest.poll() is None:
            os.killpg(self.ingest.pid, sig)

    def close(self) -> None:
        self.signal_ingest(signal.SIGCONT)
        self.signal_ingest(signal.SIGTERM)
        if self.ingest is not None:
            try:
                self.ingest.wait(20)
            except subprocess.TimeoutExpired:
                self.signal_ingest(signal.SIGKILL)
        super().close()


class _Speaker:
    """Speaks for a seal on the broker (its account), stamping each status itself."""

    def __init__(self, broker: PrivateBroker, device_id: str, password: str) -> None:
        self.device_id = device_id
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(device_id, password)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def send(self, state: SealStatus, stamp: str) -> None:
        payload = encode_status(state, ts=stamp)
        self.client.publish(status_topic(self.device_id), payload, qos=1, retain=True).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.parametrize("fault", ["pause", "kill"])
def test_an_old_offline_held_by_a_paused_worker_does_not_override_online(
    tmp_path: Path, broker: PrivateBroker, make_seal: SealFactory, court_key_file: Path, fault: str
) -> None:
    """Mosquitto hands a shared group's messages to its members in turn (three here: ``run``, ``ingest-1``,
    ``ingest-2``). A probe seal finds the turn of ``run``; then the seal's old ``offline`` goes to a paused member, a
    filler to the other, and the seal's next ``online`` to ``run``, which stores it."""
    court = _SharedCourt(tmp_path / "court", broker, f"sqlite:///{tmp_path / 'court.db'}", court_key_file)
    seal, probe = make_seal("seal-st-1"), make_seal("seal-st-2")  # their accounts only: the test speaks for them
    court.prepare({seal.device_id: seal.public_key, probe.device_id: probe.public_key})
    speakers: list[_Speaker] = []

    def stored(device_id: str) -> str | None:
        with court.engine.connect() as c:
            return c.execute(text("select status from seals where device_id = :d"), {"d": device_id}).scalar()

    try:
        court.start()
        court.start_ingest()
        assert wait_for(court.ingest_marked, 45), "the ingest workers did not start"
        speakers += [_Speaker(broker, s.device_id, s.password) for s in (seal, probe)]
        subject, prober = speakers
        old = utc_now_ms()
        subject.send(SealStatus.ONLINE, old)
        prober.send(SealStatus.ONLINE, utc_now_ms())
        assert wait_for(lambda: stored(seal.device_id) == stored(probe.device_id) == "online", 10)
        court.signal_ingest(signal.SIGSTOP)  # the `seal-server ingest` members pause (a GC pause, swap, a stuck disk)
        for _ in range(4):  # until `run` stores one: the next two go to the paused members
            prober.send(SealStatus.OFFLINE, utc_now_ms())
            if wait_for(lambda: stored(probe.device_id) == "offline", 1.5):
                break
        assert stored(probe.device_id) == "offline", "`run` stored none of the probes"
        subject.send(SealStatus.OFFLINE, old)  # the end of the old connection: a paused member holds it
        prober.send(SealStatus.ONLINE, old)  # a filler for the other paused member
        new = utc_now_ms()
        subject.send(SealStatus.ONLINE, new)  # the seal is back: `run` stores its online
        time.sleep(1.5)
        assert stored(seal.device_id) == "online"
        with court.engine.connect() as c:  # (the court from before the stamps has no status_ts: nothing to check)
            columns = {row[1] for row in c.execute(text("pragma table_info(seals)"))}
            if "status_ts" in columns:
                sql = "select status_ts from seals where device_id = :d"
                assert str(c.execute(text(sql), {"d": seal.device_id}).scalar())[11:23] == new[11:23], "not stored"
        log("a paused member holds the seal's old offline; the court says %s", stored(seal.device_id))
        if fault == "kill":
            court.signal_ingest(signal.SIGKILL)
            assert court.ingest is not None
            court.ingest.wait()
            court.start_ingest()  # the broker sends the unacknowledged offline again, read now
        else:
            court.signal_ingest(signal.SIGCONT)
        assert not wait_for(lambda: stored(seal.device_id) == "offline", 8), "an old offline overrode the online"
        assert not [a for a in _alarms(court, "offline") if a[0] == seal.device_id]
    finally:
        for speaker in speakers:
            speaker.close()
        court.close()
