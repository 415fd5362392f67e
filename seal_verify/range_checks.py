"""The check of the manifest's ``range`` (``docs/evidence.md``): every event's ``ts`` (its seal's clock) lies in it,
or the event lies inside its seal's chain between two events that do (a seal whose clock stepped back: the export
keeps the chain whole, and the verdict states such an event)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from seal_verify.event_checks import EventLine, moment
from seal_verify.verdict import Check, shown


def check_range(check: Check, events: Iterable[EventLine], manifest: dict[str, Any]) -> None:
    """Every event's ``ts`` lies in the manifest's ``range`` (``null``: open on that side), or between, by seq, two
    events of its seal whose ``ts`` does."""
    bounds = manifest.get("range")
    if not isinstance(bounds, dict) or set(bounds) != {"from", "to"}:
        check.fail("manifest.json has no range {from, to}")
        return
    if moment(manifest.get("exported_at")) is None:
        check.fail(f"manifest.json: exported_at {shown(manifest.get('exported_at'))} is no time")
    start, end = (bounds.get(side) for side in ("from", "to"))
    if (start is not None and moment(start) is None) or (end is not None and moment(end) is None):
        check.fail(f"manifest.json: the range {shown(bounds)} is not of ts values")
        return
    low, high = moment(start), moment(end)

    def inside(at: datetime) -> bool:
        return (low is None or at >= low) and (high is None or at <= high)

    spans: dict[str, tuple[int, int]] = {}  # device_id -> its first and last seq whose ts is in the range
    for line in events:
        env = line.envelope
        if env is not None and inside(env.occurred_at):
            first, last = spans.get(env.device_id, (env.seq, env.seq))
            spans[env.device_id] = (min(first, env.seq), max(last, env.seq))
    for line in events:
        env = line.envelope
        if env is None or inside(env.occurred_at):
            continue
        first, last = spans.get(env.device_id, (0, 0))
        where = f"line {line.number} ({env.device_id}#{env.seq}) at {env.ts}"
        if first < env.seq < last:
            check.note(
                f"{where} is outside the range, inside its seal's chain (the seal's clock stepped) / "
                "时间在范围之外，但位于封条哈希链中间（封条时钟曾回拨）"
            )
        else:
            check.fail(f"{where} is outside the range")
