"""The command dispatcher closes an arm or disarm alarm of a case its seal has left, and the page of that case — where
the alarm lives — shows it closed without a reload (in real Chromium against ``seal-server run``). Before, the
dispatcher told the live bus only the seal, which the pages read as a change of the seal's case now: the old case's
page, where the alarm is, showed it open until reloaded.

A seal moved to another case normally has its condition alarms closed by the move itself
(:func:`server.alarms.service.close_left_conditions`); one the move skipped (another transaction held it: the alarm is
locked ``SKIP LOCKED``) stays live in the case the seal left, and the dispatcher's round closes an arm or disarm one
("the seal is no longer bound to the case"). The test makes that state as such a move leaves it: the seal's binding
moved, the alarm left live.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from seal_dev.broker import PrivateBroker
from seal_dev.court_process import CourtProcess
from server.alarms.models import Alarm
from server.alarms.state import AlarmKind, AlarmState
from server.core.base import utc_now
from server.core.db import session_scope
from server.seals.models import Seal, SealBinding
from server.seals.registry import register_seal
from tests.agent.helpers import wait_until
from tests.server.helpers import SimulatedSeal
from tests.web.conftest import CASE, OTHER_CASE, SEAL, SignIn, running_court

#: The liveness check (which closes such alarms too, and tells the alarm's case) only at its start, so that the
#: dispatcher (a round every [commands] retry_interval_s, 5 s) is the one that closes the alarm.
SETTINGS = "[web]\nheartbeat_s = 1.0\n[liveness]\ncheck_interval_s = 3600\n"
CASE_PATH = f"/cases/{quote(CASE, safe='')}"


@pytest.fixture
def court(tmp_path: Path, broker: PrivateBroker) -> Iterator[CourtProcess]:
    yield from running_court(tmp_path, broker, SETTINGS)


def alarm_state(court: CourtProcess, alarm_id: int) -> str:
    with court.session_factory() as session:
        return session.scalars(select(Alarm.state).where(Alarm.id == alarm_id)).one()


def test_the_dispatcher_closing_an_alarm_of_a_case_the_seal_left_updates_that_case_s_page(
    court: CourtProcess, signed_in: SignIn
) -> None:
    now = utc_now()
    with session_scope(court.session_factory) as session:
        register_seal(
            session, actor=None, device_id=SEAL, case_no=CASE, public_key=SimulatedSeal(SEAL, CASE).public_key
        )
        kind = AlarmKind.DISARM_FAILED
        alarm = Alarm(  # a disarm the seal did not answer (the command is not on record: it fulfils nothing)
            case_no=CASE,
            device_id=SEAL,
            kind=kind.value,
            severity=kind.severity.value,
            state=AlarmState.OPEN.value,
            opened_at=now,
            last_seen_at=now,
            count=1,
            details={"command_id": 1},
        )
        session.add(alarm)
        session.flush()
        alarm_id = alarm.id
    page, watch = signed_in("judge")  # the judge of CASE only
    page.goto(f"{court.url}{CASE_PATH}")
    row = page.locator(f"#case-alarm-{alarm_id}")
    expect(row).to_have_attribute("data-state", "open")
    expect(page.locator("body")).to_have_attribute("data-live", "up")
    assert alarm_state(court, alarm_id) == "open"  # bound to its case: the dispatcher's rounds leave it

    with session_scope(court.session_factory) as session:  # the seal moves to OTHER_CASE; the move skipped the alarm
        seal = session.scalars(select(Seal).where(Seal.device_id == SEAL).with_for_update()).one()
        binding = session.scalars(
            select(SealBinding).where(SealBinding.device_id == SEAL, SealBinding.unbound_at.is_(None))
        ).one()
        binding.unbound_at = utc_now()
        session.add(SealBinding(device_id=SEAL, case_no=OTHER_CASE, bound_at=utc_now()))
        seal.case_no, seal.location = OTHER_CASE, "另一处"
    assert wait_until(lambda: alarm_state(court, alarm_id) == "closed", 30), court.log_tail()
    assert "closed: system: the seal is no longer bound" in court.log_path.read_text()  # by the dispatcher
    expect(row).to_have_attribute("data-state", "closed")  # the old case's page, without a reload
    assert watch.page_errors == []
