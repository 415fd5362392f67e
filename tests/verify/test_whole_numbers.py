"""An evidence bundle's JSON holds whole numbers only, and so do the court's records that go into it. A seal gone
offline past ``[alarms] offline_grace_s`` (a float setting: ``60.0``) got an ``offline`` alarm whose details said
``"grace_s": 60.0``; the export wrote it as it was and every later bundle of the case failed ``seal-verify``'s
``records`` check ("the number 60.0 has a fraction or an exponent"). Now the alarm says 60, every alarm's details and
audit entry are written in whole numbers, and an export writes a row stored before the fix in whole numbers too."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from seal_protocol import encode_status
from seal_protocol.status import SealStatus
from seal_verify import verify_bundle
from server.alarms.models import Alarm
from server.audit.service import record_audit
from server.core.base import utc_now
from server.core.db import SessionFactory
from server.ingest.liveness import LivenessChecker
from tests.server.helpers import CASE_A, message
from tests.verify.world import CourtWorld, build_world, lines, read_members


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    return build_world(session_factory, database_url, tmp_path)


def _gone_offline(world: CourtWorld) -> Alarm:
    """seal-a1 says it is offline; the liveness check, with the setting as the configuration reads it, pages it."""
    grace_s = world.settings.alarms.offline_grace_s
    assert isinstance(grace_s, float)  # what a court runs with
    said = utc_now()
    world.ingestor.ingest([message(world.seals["a1"].status_topic, encode_status(SealStatus.OFFLINE))])
    checker = LivenessChecker(world.session_factory, offline_after_s=3600, interval_s=1, offline_grace_s=grace_s)
    assert checker.check(said + timedelta(seconds=grace_s + 5)) == ["seal-a1"]
    with world.session_factory() as session:
        [alarm] = session.query(Alarm).filter_by(kind="offline").all()
        return alarm


def test_a_seal_gone_offline_past_its_grace_leaves_the_bundle_verifiable(world: CourtWorld, tmp_path: Path) -> None:
    alarm = _gone_offline(world)
    assert alarm.details["grace_s"] == int(world.settings.alarms.offline_grace_s)
    assert type(alarm.details["grace_s"]) is int
    path = world.export(CASE_A, tmp_path / "case.zip").path
    verdict = verify_bundle(path, log_key=world.log_key.verifier())
    assert verdict.trusted, verdict.text()


def test_a_row_stored_before_is_exported_in_whole_numbers(world: CourtWorld, tmp_path: Path) -> None:
    """An alarm stored by an older court with ``60.0`` in its details (written here past the model, as it was)."""
    alarm = _gone_offline(world)
    with world.session_factory() as session:
        old = {**alarm.details, "grace_s": 60.0, "window": [1.0, 2.0]}
        session.execute(update(Alarm.__table__).where(Alarm.__table__.c.id == alarm.id).values(details=old))
        session.commit()
    path = world.export(CASE_A, tmp_path / "case.zip").path
    exported = [line for line in lines(read_members(path)["alarms.jsonl"]) if b'"offline"' in line]
    assert len(exported) == 1 and b'"grace_s":60' in exported[0] and b'"window":[1,2]' in exported[0]
    verdict = verify_bundle(path, log_key=world.log_key.verifier())
    assert verdict.trusted, verdict.text()


def test_records_are_written_in_whole_numbers(world: CourtWorld, caplog: pytest.LogCaptureFixture) -> None:
    with world.session_factory() as session:
        entry = record_audit(session, actor=None, action="test.numbers", details={"a": 2.0, "b": [0.5, 3.0], "c": "x"})
        alarm = Alarm(kind="offline", details={"grace_s": 30.0, "odd": float("nan")})
        session.commit()
        assert entry.details == {"a": 2, "b": [0, 3], "c": "x"}
        assert b'"a":2' in entry.record and b"2.0" not in entry.record
    assert alarm.details == {"grace_s": 30, "odd": None}
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("test.numbers" in m and "0.5" in m for m in logged), logged
