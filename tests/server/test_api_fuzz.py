"""Schemathesis against the app's own OpenAPI: every route, with generated (valid and invalid) input, as a logged-in
clerk on a seeded database, and not one answer is a server error.

The default run is short (a few examples per route); ``SEAL_LONG_TESTS=1`` raises the count for the full run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.python.asgi import shutdown_lifespans

from seal_protocol import EventType
from server.alarms.book import AlarmBook
from server.alarms.state import AlarmKind
from server.app import create_app
from server.auth.access import Role
from server.db import SessionFactory, session_scope
from server.models import QuarantinedMessage, utc_now
from tests.server.auth_helpers import add_user, bearer, make_settings
from tests.server.ingest_world import make_court

LONG = os.environ.get("SEAL_LONG_TESTS") == "1"
MAX_EXAMPLES = 500 if LONG else 8


def seed(session_factory: SessionFactory, tmp_path: Path) -> None:
    """Two cases with a seal each, events, an alarm, hostile quarantined bytes and one user per role."""
    court = make_court(session_factory, tmp_path)
    for seal in (court.a, court.b):
        court.send(seal, seal.event(EventType.AGENT_STARTED), seal.event(EventType.INTRUSION))
    with session_scope(session_factory) as session:
        AlarmBook(session, fold_window=timedelta(0)).raise_alarm(
            AlarmKind.TAMPER, device_id=court.a.device_id, case_no=court.a.case_no, at=utc_now(), details={}
        )
        session.add(
            QuarantinedMessage(
                received_at=utc_now(),
                topic="seal/v1/seal-a/events",
                device_id="seal-a",
                reason="bad_json",
                detail="not JSON",
                size=6,
                raw=b"\x1b[2J\x00\xff",
            )
        )
    for role in Role:
        add_user(session_factory, role.value, role, () if role is Role.CLERK else (court.a.case_no,))


@pytest.fixture
def app(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[FastAPI]:
    seed(session_factory, tmp_path)
    instance = create_app(make_settings(database_url, tmp_path), with_ingest=False)
    try:
        yield instance
    finally:
        shutdown_lifespans()  # the app's lifespan (engine) is started by Schemathesis's first call


def fuzz(operation: Any, mode: GenerationMode, session_factory: SessionFactory) -> str | None:
    """Run ``operation`` with generated cases of ``mode``; the failure Hypothesis settled on, if any."""

    @given(case=operation.as_strategy(mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        # A fresh login per call: a generated logout or password change must not end the rest of the run's login.
        case.call_and_validate(headers=bearer(session_factory, "clerk"), checks=[not_a_server_error])

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (e.g. no parameters, no body): no negative cases
        return None
    except Exception as exc:  # the assertion (or the app's exception) Hypothesis reports for its minimal case
        return f"{operation.label} ({mode.value}): {type(exc).__name__}: {exc}"
    return None


def test_no_input_gives_a_server_error(app: FastAPI, session_factory: SessionFactory) -> None:
    """(The Schemathesis pytest plugin's lazy schema does not run under pytest 9: the operations are walked here.)"""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 35
    failures = [
        failure
        for operation in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if (failure := fuzz(operation, mode, session_factory)) is not None
    ]
    assert failures == [], "\n".join(failures)
