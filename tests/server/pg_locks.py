"""Helpers of the tests that interleave transactions on PostgreSQL: an engine whose connections name themselves, so
a test counts the lock waits of its own transactions only (other tests share the database and its advisory locks),
threads whose failures the test sees, and the ingest's log lines of a race it lost."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from server.core.db import make_engine

#: What the ingest logs when a batch fails (then stores its messages one by one) or loses a race (then tries again).
FAILED = ("storing them one by one", "lost a race")


def named_engine(database_url: str, **settings: str) -> Engine:
    """An engine on ``database_url`` whose connections have an application name of their own and the server
    ``settings`` given (``-c name=value``, spaces escaped)."""
    url = make_url(database_url)
    given = {"application_name": f"locks-{uuid.uuid4().hex[:12]}", **settings}
    options = " ".join(f"-c {name}={value.replace(' ', chr(92) + ' ')}" for name, value in given.items())
    options = f"{url.query.get('options', '')} {options}".strip()
    return make_engine(url.update_query_dict({"options": options}).render_as_string(hide_password=False))


def lock_waits(engine: Engine) -> int:
    """How many of ``engine``'s connections wait for a lock."""
    with engine.connect() as conn:
        query = (
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = current_setting('application_name') AND wait_event_type = 'Lock'"
        )
        return conn.scalar(text(query)) or 0


def wait_for_lock_waits(engine: Engine, count: int, timeout_s: float = 10) -> None:
    """Return once ``count`` of ``engine``'s connections wait for a lock; fail after ``timeout_s``."""
    deadline = datetime.now(UTC) + timedelta(seconds=timeout_s)
    while lock_waits(engine) < count:
        assert datetime.now(UTC) < deadline, f"fewer than {count} transactions ever waited for a lock"
        threading.Event().wait(0.02)


class Side:
    """``work`` run on a thread of its own: :meth:`join` returns what it returned, or raises what it raised."""

    def __init__(self, work: Callable[[], Any]) -> None:
        self._work = work
        self._result: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = self._work()
        except BaseException as exc:  # handed to the test's thread by join()
            self._error = exc

    @property
    def finished(self) -> bool:
        return not self._thread.is_alive()

    def join(self, timeout_s: float = 30) -> Any:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "a transaction hung"
        if self._error is not None:
            raise self._error
        return self._result


def failed_batches(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The ingest's log lines (captured by ``caplog``) of a batch that failed or lost a race: none, where no
    transaction waited for another in a circle."""
    return [r.getMessage() for r in caplog.records if any(f in r.getMessage() for f in FAILED)]
