"""When a seal's signed event shows it back after what made the court judge it offline: the one rule the ingest's
close of an ``offline`` alarm (:mod:`server.ingest.alarming`) and the liveness check's raise after the grace
(:func:`server.ingest.liveness.find_gone_seals`) share, so that they cannot contradict each other.

Both sides are the court's own receive times (``received_at``: when a worker took the message from the broker), never
the seal's ``ts`` nor a commit time. With several ingest workers, one that is behind (paused, restarting) may store a
seal's events after another stored its Last Will; those events were received *before* the Will and show nothing of the
seal after it. An event shows the seal back only if the court received it later than the fault:

- an ``offline`` status (the Last Will, a clean shutdown): the moment the court received that status —
  ``seals.status_changed_at``, and the alarm's ``offline_since`` (the last such status folded into it);
- silence (``reason: silent``): the ``last_seen_at`` the alarm's details hold, the receive time of the last event
  the court had when it judged the seal silent.

An event that does not close the alarm leaves it live; the seal's next event received after the fault (a heartbeat a
minute) closes it. An ``offline`` alarm whose details name neither (written before this rule) is closed by any event,
as it always was.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from server.alarms.models import Alarm


def spoke_after(received_at: datetime | None, fault_at: datetime) -> bool:
    """The court received a signed event of the seal (at ``received_at``; None: none yet) later than the fault that
    made it offline (received at ``fault_at``)."""
    return received_at is not None and received_at > fault_at


def offline_fault_at(alarm: Alarm) -> datetime | None:
    """When the court received what raised (or last folded into) an ``offline`` alarm — its offline status, or the last
    event before the silence — from its details; None if they name neither (an alarm raised before this rule)."""
    details = alarm.details if isinstance(alarm.details, dict) else {}
    key = {"offline_status": "offline_since", "silent": "last_seen_at"}.get(str(details.get("reason")))
    moment = details.get(key) if key is not None else None
    if isinstance(moment, str):
        try:
            parsed = datetime.fromisoformat(moment)
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return None


def closes_offline(received_at: datetime) -> Callable[[Alarm], bool]:
    """Whether a signed event received at ``received_at`` closes an ``offline`` alarm: only one received after its
    fault (:func:`offline_fault_at`; any event if the alarm names none)."""

    def closes(alarm: Alarm) -> bool:
        fault_at = offline_fault_at(alarm)
        return fault_at is None or spoke_after(received_at, fault_at)

    return closes
