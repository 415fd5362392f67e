"""A seal's armed state, as its case's pages, the debtor's portal, the API and the seal notice's check show it, is
what the seal signed in that case: moved to another case, it is unknown there until the seal speaks there, and an
event of the case it left, delivered late (filed under that case), does not set it. Before, the new case read the
state the seal had told the old one (docs/removal.md: what a seal says in one case is not another's business)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from seal_protocol import EventType
from server.app import create_app
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.ingest.results import Outcome
from server.removal.release import take_off_moved
from server.seals.enrolment import enrol_seal
from server.seals.models import Seal
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A, CASE_B, message
from tests.server.removal_world import RemovalWorld, make_world


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    settings = make_settings(database_url, tmp_path)
    with TestClient(create_app(settings, with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def armed_seen_by(world: RemovalWorld, who: str) -> object:
    answer = world.client.get("/api/seals/seal-a1", headers=world.as_(who))
    assert answer.status_code == 200, answer.text
    return answer.json()["armed"]


def test_a_moved_seal_is_armed_in_its_new_case_only_as_it_says_there(world: RemovalWorld) -> None:
    seal = world.seals["seal-a1"]
    assert world.heard("seal-a1", armed=True).outcome is Outcome.STORED
    assert armed_seen_by(world, "judge") is True
    moved_at = utc_now()
    with session_scope(world.session_factory) as session:
        enrol_seal(
            session,
            actor=None,
            device_id="seal-a1",
            public_key=seal.public_key,
            case_no=CASE_B,
            on_moved=take_off_moved,
        )
    assert armed_seen_by(world, "judge-b") is None  # it has said nothing in case B

    # Its outbox drains: a heartbeat it signed in case A just before the move says it was disarmed there.
    late = seal.event(EventType.HEARTBEAT, {"armed": False, "uptime_s": 9}, at=moved_at - timedelta(seconds=1))
    [result] = world.ingestor.ingest([message(seal.event_topic, late)])
    assert (result.outcome, result.case_no) == (Outcome.STORED, CASE_A)
    assert armed_seen_by(world, "judge-b") is None
    with world.session_factory() as session:
        row = session.scalar(select(Seal).where(Seal.device_id == "seal-a1"))
        assert row is not None and (row.armed, row.armed_at) == (None, None)

    seal.case_no = CASE_B  # configured for case B, it speaks there
    assert world.heard("seal-a1", armed=True).outcome is Outcome.STORED
    assert armed_seen_by(world, "judge-b") is True
    assert armed_seen_by(world, "debtor-b") is True
