"""A broker that cannot be reached: a WARNING with its address and the reason at the agent's start (no traceback),
and, once it is back, the agent reconnects within seconds (the back-off stops at ``[mqtt] reconnect_max_s``)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from seal_agent.config import load_config
from seal_agent.mqtt import DEFAULT_RECONNECT_MAX_S
from seal_dev.broker import PrivateBroker
from tests.agent.helpers import CourtSubscriber, RuntimeFactory, write_config

DEVICE = "seal-test-1"


class Records(logging.Handler):
    """Every record of the ``seal_agent`` loggers, DEBUG included, with :meth:`wait` for one that matches."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._cond = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._cond:
            self.records.append(record)
            self._cond.notify_all()

    def matching(self, predicate: Callable[[logging.LogRecord], bool]) -> list[logging.LogRecord]:
        with self._cond:
            return [record for record in self.records if predicate(record)]

    def wait(self, predicate: Callable[[logging.LogRecord], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: any(predicate(record) for record in self.records), timeout)


@pytest.fixture
def records() -> Iterator[Records]:
    logger = logging.getLogger("seal_agent")
    handler, level = Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_the_default_back_off_stops_at_a_few_seconds(tmp_path: Path, broker: PrivateBroker) -> None:
    assert load_config(write_config(tmp_path, broker, register=False)).mqtt.reconnect_max_s == DEFAULT_RECONNECT_MAX_S
    assert DEFAULT_RECONNECT_MAX_S <= 10


def test_an_unreachable_broker_is_a_warning_and_a_restarted_one_is_reached_within_seconds(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory, records: Records
) -> None:
    config = write_config(tmp_path, broker)
    address = f"mqtt://127.0.0.1:{broker.port}"
    court = CourtSubscriber(broker, persistent=True).start()  # its session outlives the broker's restart
    try:
        broker.stop()  # down before the agent starts
        runtime = runtimes(config, reconnect_max_s=None)  # the configured back-off (the default)
        runtime.start()

        def unreachable(record: logging.LogRecord) -> bool:
            return record.name == "seal_agent.mqtt" and "cannot reach the broker" in record.getMessage()

        assert records.wait(unreachable, timeout=10)
        warning = records.matching(unreachable)[0]
        assert warning.levelno == logging.WARNING
        assert address in warning.getMessage() and "Connection refused" in warning.getMessage()
        assert not records.matching(lambda record: record.exc_info is not None), "a traceback was logged"

        # Let the back-off grow to its ceiling: 1 s, then up to 2, 4, and 5 s from the fourth attempt on (each
        # attempt is logged at DEBUG: the warning is not repeated for the same reason).
        def attempt(n: int) -> Callable[[logging.LogRecord], bool]:
            return lambda record: record.name == "seal_agent.mqtt" and f"(attempt {n})" in record.getMessage()

        assert records.wait(attempt(5), timeout=30)
        repeated = [r for r in records.matching(unreachable) if r.levelno == logging.WARNING]
        assert len(repeated) == 1  # the same reason is a warning once (a minute), each attempt is at DEBUG
        delay = float(records.matching(attempt(5))[0].getMessage().split("next attempt in ")[1].split(" s")[0])
        assert 1.0 <= delay <= DEFAULT_RECONNECT_MAX_S

        broker.start()
        restarted = time.monotonic()
        assert runtime.publisher.wait_connected(DEFAULT_RECONNECT_MAX_S + 30)
        # The ceiling, plus a loaded machine: seconds, where an uncapped back-off would be minutes.
        assert time.monotonic() - restarted <= DEFAULT_RECONNECT_MAX_S + 20
        assert runtime.delivery.events.wait_drained(30)  # agent_started delivered and receipted once back
        assert court.wait_for(lambda c: "agent_started" in c.types(DEVICE))
        assert not records.matching(lambda record: record.exc_info is not None), "a traceback was logged"
    finally:
        court.close()


def test_a_refused_connection_is_one_error_with_the_address_and_the_delay_actually_used(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory, records: Records
) -> None:
    config = write_config(tmp_path, broker)
    (tmp_path / "mqtt-password").write_text("not-the-password\n")  # the account exists, the password is wrong
    runtime = runtimes(config)  # reconnect_max_s=2: several attempts within seconds
    runtime.start()

    def refused(record: logging.LogRecord) -> bool:
        return record.name == "seal_agent.mqtt" and "refused the connection" in record.getMessage()

    def attempt(n: int) -> Callable[[logging.LogRecord], bool]:
        return lambda record: refused(record) and f"(attempt {n})" in record.getMessage()

    assert records.wait(attempt(3), timeout=15)
    errors = [r for r in records.matching(refused) if r.levelno == logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]  # once (a minute), not once per attempt
    message = errors[0].getMessage()
    assert f"mqtt://127.0.0.1:{broker.port}" in message and DEVICE in message and "Not authorized" in message
    # The delay told is the one used: attempt n+1 comes that long after attempt n's message (give or take).
    first, second = records.matching(attempt(1))[0], records.matching(attempt(2))[0]
    told = float(first.getMessage().split("next attempt in ")[1].split(" s")[0])
    assert 1.0 <= told <= 2.0
    assert told - 0.3 <= second.created - first.created <= told + 1.5
    assert not runtime.publisher.connected
    assert not records.matching(lambda record: record.exc_info is not None), "a traceback was logged"
