"""RoundLoop: runs at once, survives a failing round, wakes on demand, stops."""

from __future__ import annotations

import threading

import pytest

from server.core.rounds import RoundLoop


def test_a_failing_round_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    rounds: list[int] = []
    second = threading.Event()

    def work() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise RuntimeError("first round breaks")
        second.set()

    loop = RoundLoop("test-loop", work, interval_s=3600)  # only wake() can bring the second round
    loop.start()
    try:
        assert not second.wait(0.2)  # the interval is long: no second round by itself
        loop.wake()
        assert second.wait(30)
    finally:
        loop.stop()
    assert loop.stopping and rounds[:2] == [0, 1]
    assert any("test-loop: round failed" in r.getMessage() and r.exc_info for r in caplog.records)
