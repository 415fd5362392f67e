"""A seal that cannot store its events says so in its retained status, and the court shows it: the real agent (mock
pins) on a real failing card or a real full outbox, a private Mosquitto, the court's real MQTT ingest, the pages.

Before, a seal whose card went read-only while it ran warned, held the intrusion in memory and fell silent: the court
raised ``offline`` (``silent``) after ``offline_after_s`` and never learnt why — nor that the seal holds an intrusion
it cannot store, lost at the next power cut.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from gpiozero.pins.mock import MockFactory
from sqlalchemy import select

from seal_agent.runtime import SealRuntime
from seal_dev.broker import PrivateBroker
from seal_protocol import encode_status
from seal_protocol.status import SealStatus, StorageFault, StorageReport
from server.alarms.models import Alarm
from server.alarms.state import AlarmKind
from server.core.base import utc_now
from server.core.db import session_scope
from server.ingest.liveness import LivenessChecker
from server.ingest.mqtt import MqttIngest
from server.seals.models import Seal
from server.seals.registry import register_seal
from tests.agent.full_disk import FullDisk
from tests.agent.helpers import RecordingSpeaker, RuntimeFactory, pulse, verify_key, wait_until, write_config
from tests.agent.test_read_only_card import _fail, card  # noqa: F401 - the card fixture
from tests.server.mqtt_helpers import server_mqtt_settings
from tests.server.test_mqtt_ingest import start_ingest
from tests.web.conftest import CASE, SEAL, PagesWorld

DEVICE = "seal-test-1"  # write_config's


@pytest.fixture
def ingest(broker: PrivateBroker, world: PagesWorld, tmp_path: Path) -> Iterator[MqttIngest]:
    """The court's real MQTT ingest on the pages' database."""
    running = start_ingest(server_mqtt_settings(broker, tmp_path), world.session_factory, tmp_path / "court")
    try:
        yield running.ingest
    finally:
        running.ingest.stop()


def _install(world: PagesWorld, runtimes: RuntimeFactory, config: Path) -> SealRuntime:
    runtime = runtimes(config, speaker=RecordingSpeaker())  # makes the seal's key
    key = base64.b64encode(bytes(verify_key(config))).decode("ascii")
    with session_scope(world.session_factory) as session:
        register_seal(session, actor=None, device_id=DEVICE, case_no=CASE, public_key=key, location="3 号仓库")
    runtime.start()
    assert runtime.publisher.wait_listening(30)
    return runtime


def _seal(world: PagesWorld) -> Seal:
    with world.session_factory() as session:
        return session.scalars(select(Seal).where(Seal.device_id == DEVICE)).one()


def _storage_alarms(world: PagesWorld) -> list[Alarm]:
    with world.session_factory() as session:
        query = select(Alarm).where(Alarm.device_id == DEVICE, Alarm.kind == AlarmKind.STORAGE_FAILED.value)
        return list(session.scalars(query))


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a loop device (needs root)")
def test_a_card_gone_read_only_while_running_is_told_to_the_court_and_shown_as_the_seal_s_report(
    card: Path,  # noqa: F811 - the fixture imported above
    broker: PrivateBroker,
    world: PagesWorld,
    ingest: MqttIngest,
    runtimes: RuntimeFactory,
    mock_pins: MockFactory,
) -> None:
    runtime = _install(world, runtimes, write_config(card / "seal", broker, cooldown_s=1))
    assert wait_until(lambda: _seal(world).status == "online", 30)
    assert _seal(world).storage_fault is None

    _fail(card)  # the kernel remounts the card read-only under the running seal
    pulse(mock_pins)  # someone walks in: the warning plays, the intrusion cannot be committed
    assert wait_until(lambda: runtime.recorder.held >= 1, 20), "the intrusion was not held"

    assert wait_until(lambda: (_seal(world).storage_held or 0) >= 1, 30), "the court was never told"
    seal = _seal(world)
    assert seal.storage_fault == "read_only" and seal.status == "online" and seal.storage_since is not None
    [alarm] = _storage_alarms(world)
    assert alarm.state == "open" and alarm.case_no == CASE and alarm.details["source"] == "status_report"

    with world.client("judge") as client:
        page = client.get(f"/seals/{DEVICE}").text
        assert 'data-storage="read_only"' in page and "存储故障" in page and "存储卡已变为只读" in page
        assert "内存中暂存" in page and "状态报告（未签名）" in page  # the seal's word, not signed evidence
        case_page = client.get(f"/cases/{quote(CASE, safe='')}").text
        assert 'data-kind="storage_failed"' in case_page and "封条存储故障" in case_page
        assert 'data-storage="read_only"' in case_page
        client.cookies.set("seal_lang", "en")
        page = client.get(f"/seals/{DEVICE}").text
        assert "Storage failure" in page and "not signed" in page and "its card went read-only" in page


def test_a_full_outbox_is_reported_and_the_report_clears_once_the_seal_stores_again(
    broker: PrivateBroker,
    world: PagesWorld,
    ingest: MqttIngest,
    runtimes: RuntimeFactory,
    mock_pins: MockFactory,
    tmp_path: Path,
) -> None:
    runtime = _install(world, runtimes, write_config(tmp_path / "seal", broker, cooldown_s=1, heartbeat_s=1))
    assert wait_until(lambda: _seal(world).status == "online", 30)
    disk = FullDisk(runtime.recorder)
    disk.fill()  # SQLite itself answers SQLITE_FULL from now on
    pulse(mock_pins)
    assert wait_until(lambda: runtime.recorder.held >= 1, 20)
    assert wait_until(lambda: _seal(world).storage_fault == "full", 30), "the court was never told"
    assert [a.state for a in _storage_alarms(world)] == ["open"]

    disk.make_plenty_of_room()  # the next heartbeat commits the held events, then itself
    assert wait_until(lambda: runtime.recorder.held == 0, 30)
    assert wait_until(lambda: _seal(world).storage_fault is None, 30), "the report was never cleared"
    seal = _seal(world)
    assert seal.status == "online" and seal.storage_held is None and seal.storage_since is None
    [alarm] = _storage_alarms(world)
    assert alarm.state == "closed" and "stores events again" in (alarm.closed_note or "")
    with world.client("judge") as client:
        assert "data-storage" not in client.get(f"/seals/{DEVICE}").text


def test_the_offline_alarm_s_card_says_the_seal_reported_a_storage_failure(world: PagesWorld) -> None:
    report = StorageReport(StorageFault.IO_ERROR, 3, "2026-11-26T08:00:30.000Z")
    stamp = "2026-11-26T08:00:00.000Z"
    world.ingest((world.seal.status_topic, encode_status(SealStatus.ONLINE, ts=stamp, storage=report)))
    world.ingest((world.seal.status_topic, encode_status(SealStatus.OFFLINE, ts=stamp)))  # its Last Will
    checker = LivenessChecker(world.session_factory, offline_after_s=3600, interval_s=1, offline_grace_s=60)
    assert checker.check(utc_now() + timedelta(seconds=120)) == [SEAL]  # not back within the grace
    with world.client("judge") as client:
        page = client.get(f"/cases/{quote(CASE, safe='')}").text
        offline = page[page.index('data-kind="offline"') :]
        offline = offline[: offline.index("</li>")]
        assert 'data-storage="io_error"' in offline and "状态报告（未签名）" in offline and "内存中暂存 3 条" in offline
        overview = client.get("/").text
        assert 'data-kind="storage_failed"' in overview and "存储读写错误" in overview


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a loop device (needs root)")
def test_a_connection_made_after_the_card_went_read_only_still_reports_it(
    card: Path,  # noqa: F811 - the fixture imported above
    broker: PrivateBroker,
    world: PagesWorld,
    ingest: MqttIngest,
    runtimes: RuntimeFactory,
    mock_pins: MockFactory,
) -> None:
    """The card fails while the broker is away: the next connection's stamp cannot be kept. That connection said no
    status at all, so the intrusion held in memory was never reported (the court kept the last, clean ``online``)."""
    runtime = _install(world, runtimes, write_config(card / "seal", broker, cooldown_s=1))
    assert wait_until(lambda: _seal(world).status == "online", 30)
    first = _seal(world).status_ts
    broker.stop()
    _fail(card)  # the kernel remounts the card read-only while the seal is disconnected
    broker.start()
    assert runtime.publisher.wait_listening(30)
    pulse(mock_pins)  # someone walks in: the intrusion cannot be committed
    assert wait_until(lambda: runtime.recorder.held >= 1, 20), "the intrusion was not held"
    assert wait_until(lambda: (_seal(world).storage_held or 0) >= 1, 30), "the court was never told"
    seal = _seal(world)
    assert seal.storage_fault == "read_only" and seal.status == "online"
    assert first is not None and seal.status_ts is not None and seal.status_ts > first  # a later connection's stamp
    runtime.close()  # its goodbye carries the same stamp held in memory: the court takes it
    assert wait_until(lambda: _seal(world).status == "offline", 30)
