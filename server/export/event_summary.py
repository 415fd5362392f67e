"""What the evidence report states of a bundle's events, gathered one event at a time: counts per seal and type,
heartbeats per seal and day, and the significant events the timeline lists one by one — at most
:data:`TIMELINE_MAX` of them, the earliest received, with the count of those left out. An export reads a case's
events as they stream from the database (:mod:`server.export.event_source`), so nothing here keeps an event that
the report will not print.

Two passes: :meth:`EventSummary.add` takes every event; then :meth:`EventSummary.follow_ups` takes the warnings'
outcomes and the cameras' decisions (``warning_result``, ``snapshot_taken``: :data:`FOLLOW_UP_TYPES`), keeping those
of a listed event, which the timeline prints beside it.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from seal_protocol.envelope import is_simulated
from server.core.court_clock import court_clock
from server.export.report_text import TIMELINE_TYPES, sort_time

#: The significant events the timeline lists one by one, at most (the report states how many more there are).
TIMELINE_MAX = 10_000
#: The events that say how an earlier one ended: a warning's outcome, the camera's decision on a warning.
FOLLOW_UP_TYPES = ("warning_result", "snapshot_taken")

#: (device_id, trigger type, trigger seq) -> the payload of the event that followed it up.
Found = dict[tuple[Any, Any, Any], Mapping[str, Any]]


@dataclass(frozen=True)
class EventFacts:
    """One line of ``events.jsonl`` as the report reads it: the signed fields and what the court recorded."""

    device_id: str
    seq: int
    type: str
    ts: datetime
    received_at: datetime
    leaf_index: int
    payload: Mapping[str, Any]


def names_event(payload: Mapping[str, Any], *names: str) -> bool:
    """Whether ``payload`` names an event by a ``trigger_seq`` (and each of ``names``) of the agent's JSON types: a
    signed payload may hold any JSON there (an object is no key of a dict; ``true`` is no seq 1)."""
    return type(payload.get("trigger_seq")) is int and all(type(payload.get(name)) is str for name in names)


@dataclass
class EventSummary:
    """The report's view of a bundle's events (see the module's docstring)."""

    count: int = 0
    #: How many a simulated seal signed.
    simulated: int = 0
    #: (device_id, type, simulated) -> how many.
    types: Counter[tuple[str, str, bool]] = field(default_factory=Counter)
    #: (device_id, day by the seal's clock in China time) -> how many heartbeats.
    heartbeats: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: The significant events kept for the timeline: a heap of the earliest received (the latest on top).
    _kept: list[tuple[float, int, EventFacts]] = field(default_factory=list)
    #: Significant events not listed (past :data:`TIMELINE_MAX`).
    left_out: int = 0
    #: The outcomes of the listed events' warnings, and the cameras' decisions on them.
    results: Found = field(default_factory=dict)
    decisions: Found = field(default_factory=dict)
    limit: int = TIMELINE_MAX

    @classmethod
    def of(cls, events: Iterable[EventFacts], *, limit: int = TIMELINE_MAX) -> EventSummary:
        """The summary of ``events`` (a sequence: it is read twice)."""
        summary = cls(limit=limit)
        for event in events:
            summary.add(event)
        summary.follow_ups(e for e in events if e.type in FOLLOW_UP_TYPES)
        return summary

    def add(self, event: EventFacts) -> None:
        simulated = is_simulated(event.payload)
        self.count += 1
        self.simulated += simulated
        self.types[(event.device_id, event.type, simulated)] += 1
        if event.type == "heartbeat":
            self.heartbeats[(event.device_id, court_clock(event.ts)[:10])] += 1
        if event.type not in TIMELINE_TYPES:
            return
        item = (-sort_time(event.received_at), -self.count, event)  # the latest (and of those the last) on top
        if len(self._kept) < self.limit:
            heapq.heappush(self._kept, item)
        else:
            self.left_out += 1
            if self.limit and item[:2] > self._kept[0][:2]:
                heapq.heapreplace(self._kept, item)

    def follow_ups(self, events: Iterable[EventFacts]) -> None:
        """Keep, of ``events`` (in the bundle's order; others are ignored), the outcomes of the listed events'
        warnings and the cameras' decisions on them: the last one that names each."""
        listed = {(e.device_id, e.type, e.seq) for e in self.listed}
        for e in events:
            if e.type == "warning_result" and names_event(e.payload, "trigger"):
                key = (e.device_id, e.payload["trigger"], e.payload["trigger_seq"])
                if key in listed:
                    self.results[key] = e.payload
            elif e.type == "snapshot_taken" and "warning" in e.payload and names_event(e.payload):
                key = (e.device_id, "intrusion", e.payload["trigger_seq"])
                if key in listed:
                    self.decisions[key] = e.payload

    @property
    def listed(self) -> list[EventFacts]:
        """The significant events the timeline lists, in the order they came (by leaf)."""
        return [event for _, _, event in sorted(self._kept, key=lambda item: -item[1])]
