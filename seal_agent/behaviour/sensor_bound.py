"""A bound on what one sensor's edges cost: a flapping line (a failing PIR, a loose tamper wire: hundreds of edges a
second) must not sign a full trigger per edge, and a PIR stuck high must not fall silent.

Each trigger edge (a presence beginning, the lid opening) takes a token from the sensor's bucket: at most
``burst`` in a row, one more each ``refill_s``. While the bucket has a token, the edge is a full trigger as before
(its ``intrusion`` or ``tamper``, snapshots, warning). An edge that finds it empty is *merged*: the seal signs ONE
``sensor_flapping`` (``phase: began``: the edges counted in the last ``window_s``), and from then on counts every
edge (both directions) into a ``sensor_flapping`` (``phase: continuing``) each ``summary_s`` that saw edges (how
many, the first and the last), until the line has been quiet (no edge) for ``quiet_s``: then ``sensor_normal``
(the edges since the last summary, and how many were merged in all), and the bucket holds at least one token again,
so the first edge after the quiet is a full trigger. Every edge counted is in a signed event; a stop signs what is
counted (``phase: at_stop``). The warning is the seal's business: merged presences still follow its policy.

A sensor ``high`` (PIR: motion) without an edge for ``stuck_after_s`` is signed ``sensor_stuck`` (``since``: its
last rising edge); its next falling edge signs ``sensor_unstuck``. Not thread-safe: the seal calls it under its lock.
Times are on the monotonic clock, signed as :class:`~seal_agent.journal.timeline.Moment` (told in the wall clock of
the event's own ``ts``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from seal_agent.journal.timeline import Moment
from seal_protocol import EventType

#: An event a sensor's bound asks the seal to sign: its type, payload, and when (monotonic).
Note = tuple[EventType, dict[str, Any], float]


@dataclass(frozen=True, slots=True)
class SensorLimits:
    """The bound's settings (``[sensors]`` in the agent's configuration); ``stuck_after_s`` None: not watched."""

    burst: int = 10
    refill_s: float = 10.0
    summary_s: float = 60.0
    quiet_s: float = 30.0
    stuck_after_s: float | None = 600.0

    @property
    def window_s(self) -> float:
        """How far back ``sensor_flapping`` (began) counts edges: the time the bucket takes to fill."""
        return self.burst * self.refill_s


class SensorBound:
    """One sensor's token bucket, flapping state and stuck watch."""

    def __init__(self, sensor: str, limits: SensorLimits, now: float) -> None:
        self.sensor = sensor
        self.limits = limits
        self._tokens = float(limits.burst)
        self._filled_at = now
        self._recent: deque[list[int]] = deque()  # [second, edges] of the last window_s, for the began event
        self.flapping_since: float | None = None
        self.merged = 0  # edges merged since the flapping began
        self._edges = 0  # edges since the last signed statement
        self._first: float | None = None
        self._last: float | None = None
        self._stated_at = now
        self._latest = now  # the last edge merged (or the flapping's first): the quiet is counted from it
        self._high_since: float | None = None
        self._stuck_since: float | None = None

    # -- edges -----------------------------------------------------------------------------------------------------

    def edge(self, now: float, *, high: bool, trigger: bool) -> tuple[bool, list[Note]]:
        """An edge at ``now`` to ``high``; ``trigger``: the seal would make a trigger of it. Returns whether it is a
        full trigger (False: merged, or no trigger), and the events to sign now."""
        notes: list[Note] = []
        self._count_recent(now)
        if high and trigger:
            self._high_since = now
        if not high:
            self._high_since = None
            if self._stuck_since is not None:
                payload = {"sensor": self.sensor, "since": Moment(self._stuck_since)}
                notes.append((EventType.SENSOR_UNSTUCK, payload, now))
                self._stuck_since = None
        if self.flapping_since is not None:
            self._merge(now)
            return False, notes
        if not trigger:
            return False, notes
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True, notes
        self.flapping_since = self._stated_at = self._latest = now
        self.merged = 1
        payload = {
            "sensor": self.sensor,
            "phase": "began",
            "edges": sum(count for _, count in self._recent),
            "window_s": round(self.limits.window_s),  # whole seconds: a payload admits no floats
            "triggers_allowed": self.limits.burst,
            "refill_s": round(self.limits.refill_s),
        }
        notes.append((EventType.SENSOR_FLAPPING, payload, now))
        return False, notes

    def _merge(self, now: float) -> None:
        self.merged += 1
        self._edges += 1
        self._first = now if self._first is None else self._first
        self._last = self._latest = now

    def _count_recent(self, now: float) -> None:
        second = math.floor(now)
        if self._recent and self._recent[-1][0] == second:
            self._recent[-1][1] += 1
        else:
            self._recent.append([second, 1])
        while self._recent and self._recent[0][0] <= now - self.limits.window_s:
            self._recent.popleft()

    def _refill(self, now: float) -> None:
        gained = (now - self._filled_at) / self.limits.refill_s
        self._tokens = min(float(self.limits.burst), self._tokens + max(0.0, gained))
        self._filled_at = now

    # -- time --------------------------------------------------------------------------------------------------

    def due(self, now: float, *, high: bool) -> list[Note]:
        """What falls due at ``now`` (the timer): a summary, the return to normal, a stuck line (``high``: its level
        as the seal believes it)."""
        notes: list[Note] = []
        stuck_after = self.limits.stuck_after_s
        since = self._high_since
        watching = stuck_after is not None and high and since is not None and self._stuck_since is None
        if watching and since is not None and stuck_after is not None and now - since >= stuck_after:
            self._stuck_since = since
            payload = {"sensor": self.sensor, "since": Moment(since), "after_ms": round((now - since) * 1000)}
            notes.append((EventType.SENSOR_STUCK, payload, now))
        if self.flapping_since is None:
            return notes
        if now - self._latest >= self.limits.quiet_s:
            notes.append((EventType.SENSOR_NORMAL, self._normal(), now))
        elif self._edges and now - self._stated_at >= self.limits.summary_s:
            notes.append((EventType.SENSOR_FLAPPING, self._summary("continuing", now), now))
        return notes

    def flush(self, now: float) -> list[Note]:
        """At the stop: the edges counted and not yet signed."""
        if self.flapping_since is None or not self._edges:
            return []
        return [(EventType.SENSOR_FLAPPING, self._summary("at_stop", now), now)]

    def _counted(self) -> dict[str, Any]:
        first, last = self._first, self._last
        fields = {
            "edges": self._edges,
            "first_edge": None if first is None else Moment(first),
            "last_edge": None if last is None else Moment(last),
            "since": Moment(self.flapping_since if self.flapping_since is not None else self._stated_at),
        }
        self._edges, self._first, self._last = 0, None, None
        return fields

    def _summary(self, phase: str, now: float) -> dict[str, Any]:
        self._stated_at = now
        return {"sensor": self.sensor, "phase": phase, "merged": True, **self._counted()}

    def _normal(self) -> dict[str, Any]:
        payload = {
            "sensor": self.sensor,
            **self._counted(),
            "merged_edges": self.merged,
            "quiet_s": round(self.limits.quiet_s),
        }
        self.flapping_since, self.merged = None, 0
        self._tokens = max(self._tokens, 1.0)  # the first edge after the quiet is a full trigger again
        return payload

    def heartbeat(self) -> dict[str, Any]:
        """The sensor's state for the heartbeat: ``normal``, ``flapping`` (with the edges merged so far) or
        ``stuck``."""
        if self.flapping_since is not None:
            return {"state": "flapping", "merged_edges": self.merged}
        return {"state": "normal" if self._stuck_since is None else "stuck", "merged_edges": 0}


class SensorBounds:
    """The seal's sensors' bounds (the PIR's; the tamper switch's, if it has one, without a stuck watch: an open lid
    is open), each event they ask for handed to ``sign(type, payload, at)``. Called under the seal's lock."""

    def __init__(
        self, limits: SensorLimits, now: float, *, tamper: bool, sign: Callable[[EventType, Any, float], None]
    ) -> None:
        self._sign = sign
        self._bounds = {"pir": SensorBound("pir", limits, now)}
        if tamper:
            self._bounds["tamper"] = SensorBound("tamper", replace(limits, stuck_after_s=None), now)

    def edge(self, sensor: str, now: float, *, high: bool, trigger: bool = False) -> bool:
        """Count an edge: whether it is a full trigger (see :meth:`SensorBound.edge`)."""
        full, notes = self._bounds[sensor].edge(now, high=high, trigger=trigger)
        self._signed(notes)
        return full

    def due(self, now: float, high: Mapping[str, bool]) -> None:
        """The timer: what falls due for each sensor (``high``: its level as the seal believes it)."""
        for sensor, bound in self._bounds.items():
            self._signed(bound.due(now, high=high[sensor]))

    def flush(self, now: float) -> None:
        for bound in self._bounds.values():
            self._signed(bound.flush(now))

    def heartbeat(self) -> dict[str, Any]:
        return {sensor: bound.heartbeat() for sensor, bound in self._bounds.items()}

    def _signed(self, notes: list[Note]) -> None:
        for type, payload, at in notes:
            self._sign(type, payload, at)
