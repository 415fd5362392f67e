"""The court takes an ``intrusion``/``tamper`` whose edge the seal's level check caught (``detected_by``,
``not_before``) as it takes any other, and its case report says the time is the catch's, not the edge's."""

from __future__ import annotations

from typing import Any

import pytest

from seal_protocol import EventType
from server.core.db import SessionFactory
from server.export.report_text import event_details
from server.ingest.results import Outcome
from tests.server.test_commands import World

CAUGHT = {"detected_by": "level_check", "not_before": "2026-01-01T08:00:00.250Z"}


@pytest.fixture
def world(session_factory: SessionFactory, tmp_path: Any) -> World:
    return World(session_factory, tmp_path / "snapshots")


def test_events_caught_by_the_level_check_are_stored(world: World) -> None:
    intrusion = {"sensor": "pir", "armed": True, "warning": "started", "warning_languages": ["zh", "en"],
                 "camera": "none", "camera_motion": "unknown", "snapshots": [], **CAUGHT}  # fmt: skip
    tamper = {"state": "open", "at_start": False, "armed": True, "warning": "started", "warning_languages": ["zh"],
              "camera": "none", "snapshots": [], **CAUGHT}  # fmt: skip
    assert world.answer(EventType.INTRUSION, intrusion) is Outcome.STORED
    assert world.answer(EventType.TAMPER, tamper) is Outcome.STORED
    assert world.events("intrusion") == world.events("tamper") == 1


def test_the_case_report_says_the_edge_was_caught_by_the_level_check() -> None:
    zh, en = event_details("intrusion", {"camera": "none", "snapshots": [], **CAUGHT})
    assert "caught by the level check, not before" in en and "电平检查" in zh
    assert "level check" not in event_details("tamper", {"camera": "none", "snapshots": []})[1]
