"""Schemathesis against the app's own OpenAPI: every route, with generated (valid and invalid) input, as a logged-in
clerk on a seeded database, and not one answer is a server error.

The default run is short and the same every time (5 examples per operation and mode, derandomised); the full run,
``SEAL_LONG_TESTS=1 .venv/bin/pytest -p no:cacheprovider tests/server/test_api_fuzz.py --log-cli-level=INFO``,
takes 200 random examples each and logs how many requests were made and what they were answered.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
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
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.ingest.models import QuarantinedMessage
from server.notify.targets import add_notification_target
from tests.server.auth_helpers import add_user, bearer, make_settings
from tests.server.ingest_world import make_court

logger = logging.getLogger(__name__)

LONG = os.environ.get("SEAL_LONG_TESTS") == "1"
MAX_EXAMPLES = 200 if LONG else 5


def seed(session_factory: SessionFactory, tmp_path: Path) -> dict[str, Any]:
    """Two cases with a seal each, events, an alarm, a webhook target, hostile quarantined bytes and one user per
    role; return path parameters that name them."""
    court = make_court(session_factory, tmp_path)
    for seal in (court.a, court.b):
        court.send(seal, seal.event(EventType.AGENT_STARTED), seal.event(EventType.INTRUSION))
    with session_scope(session_factory) as session:
        alarm = AlarmBook(session, fold_window=timedelta(0)).raise_alarm(
            AlarmKind.TAMPER, device_id=court.a.device_id, case_no=court.a.case_no, at=utc_now(), details={}
        )
        target = add_notification_target(
            session, case_no=court.a.case_no, role="judge", url="https://court.example/hook", secret="s" * 20
        )
        refused = QuarantinedMessage(
            received_at=utc_now(),
            topic="seal/v1/seal-a/events",
            device_id="seal-a",
            reason="invalid_json",
            detail="not JSON",
            size=6,
            raw=b"\x1b[2J\x00\xff",
        )
        session.add(refused)
        session.flush()
        known = {"alarm_id": alarm.id, "target_id": target.id, "message_id": refused.id}
    for role in Role:
        add_user(session_factory, role.value, role, () if role is Role.CLERK else (court.a.case_no,))
    return known | {"case_no": court.a.case_no, "device_id": court.a.device_id, "username": "judge"}


@dataclass
class Fuzzed:
    """The app under test and the path parameters of objects that exist in its database."""

    app: FastAPI
    known: dict[str, Any]


@pytest.fixture
def fuzzed(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[Fuzzed]:
    known = seed(session_factory, tmp_path)
    instance = create_app(make_settings(database_url, tmp_path), with_ingest=False)
    try:
        yield Fuzzed(instance, known)
    finally:
        shutdown_lifespans()  # the app's lifespan (engine) is started by Schemathesis's first call


def fuzz(
    operation: Any,
    mode: GenerationMode,
    session_factory: SessionFactory,
    statuses: Counter[int],
    path_parameters: dict[str, Any] | None = None,
) -> str | None:
    """Run ``operation`` with generated cases of ``mode`` (and the given path parameters), counting the answers; the
    failure Hypothesis settled on, if any."""

    @given(case=operation.as_strategy(mode, path_parameters=path_parameters))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=not LONG, suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        # A fresh login per call: a generated logout or password change must not end the rest of the run's login.
        response = case.call(headers=bearer(session_factory, "clerk"))
        statuses[response.status_code] += 1
        case.validate_response(response, checks=[not_a_server_error])

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (e.g. no parameters, no body): no negative cases
        return None
    except Exception as exc:  # the assertion (or the app's exception) Hypothesis reports for its minimal case
        fixed = " on known objects" if path_parameters else ""
        return f"{operation.label} ({mode.value}{fixed}): {type(exc).__name__}: {exc}"
    return None


@pytest.mark.timeout(4 * 3600 if LONG else 300)
def test_no_input_gives_a_server_error(fuzzed: Fuzzed, session_factory: SessionFactory) -> None:
    """Each operation: positive and negative cases with generated path parameters (mostly objects that do not
    exist), then positive cases on objects that do, so bodies and queries reach the code behind the lookups.

    (The Schemathesis pytest plugin's lazy schema does not run under pytest 9: the operations are walked here.)"""
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 35
    statuses: Counter[int] = Counter()
    runs: list[tuple[Any, GenerationMode, dict[str, Any] | None]] = []
    for operation in operations:
        runs += [(operation, GenerationMode.POSITIVE, None), (operation, GenerationMode.NEGATIVE, None)]
        names = {parameter.name for parameter in operation.path_parameters}
        if names and names <= fuzzed.known.keys():
            runs.append((operation, GenerationMode.POSITIVE, {name: fuzzed.known[name] for name in names}))
    failures = [
        failure
        for operation, mode, path in runs
        if (failure := fuzz(operation, mode, session_factory, statuses, path)) is not None
    ]
    total, server_errors = sum(statuses.values()), sum(n for code, n in statuses.items() if code >= 500)
    logger.info("%d requests to %d operations; answers %s", total, len(operations), dict(sorted(statuses.items())))
    assert failures == [], "\n".join(failures)
    assert server_errors == 0 and total >= len(operations) * MAX_EXAMPLES / 2
