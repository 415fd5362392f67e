"""The seal's reconnect back-off and its log of why it cannot connect (:mod:`seal_agent.mqtt`'s rules)."""

from __future__ import annotations

import logging
import random
import time

import paho.mqtt.client as mqtt

#: While the broker stays unreachable (or refuses the connection) for the same reason, that is logged as a warning
#: (an error) at most this often (s).
UNREACHABLE_WARNING_EVERY_S = 60.0


class Backoff:
    """Draws each reconnect's delay (jittered, doubling to ``max_s``) and makes it paho's next wait; logs a problem
    at its level the first time, when it changes, and once a minute, else at DEBUG."""

    def __init__(
        self, client: mqtt.Client, *, min_s: float, max_s: float, rng: random.Random, log: logging.Logger
    ) -> None:
        self._client = client
        self.min_s, self.max_s = min_s, max_s
        self._rng = rng
        self._log = log
        self.attempt = 0
        self.problem: tuple[str, float] | None = None  # (problem, monotonic time) of the last such warning/error

    def schedule(self) -> float:
        """Draw the next back-off (jittered) and make it paho's next reconnect wait; return it."""
        self.attempt += 1
        ceiling = min(self.max_s, self.min_s * 2 ** min(self.attempt - 1, 16))
        delay = self._rng.uniform(self.min_s, ceiling)
        # paho annotates whole seconds but only adds the delay to the time: a fraction spreads the seals better.
        self._client.reconnect_delay_set(min_delay=delay, max_delay=delay)  # type: ignore[arg-type]
        return delay

    def log_problem(self, level: int, problem: str, delay: float) -> None:
        """``problem`` at ``level`` the first time (or when it changes) and then once a minute; every other attempt
        at DEBUG; with the delay actually used before the next attempt."""
        now = time.monotonic()
        last = self.problem
        due = last is None or last[0] != problem or now - last[1] >= UNREACHABLE_WARNING_EVERY_S
        if due:
            self.problem = (problem, now)
        self._log.log(
            level if due else logging.DEBUG,
            "%s (attempt %d); next attempt in %.1f s, at most %g s apart",
            problem,
            self.attempt,
            delay,
            self.max_s,
        )

    def connected(self) -> bool:
        """A connection was accepted: whether a problem had been logged before it (then it is forgotten)."""
        again, self.problem = self.problem is not None, None
        return again
