"""The facts of a seal's event that every alarm raised from it carries in its details: the event's type, seq and
time, and ``simulated: true`` when the seal signed it as a simulated seal's (``seal-agent simulate``,
docs/protocol.md) — which the pages show beside the alarm, whatever its kind. Each alarm raised from an event builds
its details here, so that none leaves the mark out."""

from __future__ import annotations

from typing import Any

from seal_protocol import Envelope
from seal_protocol.envelope import SIMULATED_FIELD, is_simulated


def event_details(envelope: Envelope, **more: Any) -> dict[str, Any]:
    """``event_type``, ``seq``, ``ts`` of ``envelope``, then ``more``, and ``simulated: true`` for a simulated
    seal's event (written last: no other key takes its place)."""
    details: dict[str, Any] = {"event_type": envelope.type.value, "seq": envelope.seq, "ts": envelope.ts, **more}
    details.pop(SIMULATED_FIELD, None)
    if is_simulated(envelope.payload):
        details[SIMULATED_FIELD] = True
    return details
