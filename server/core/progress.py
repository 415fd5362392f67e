"""How far the ingest has got: what it received and has not stored yet, read by the health check and the metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: A message received this long ago and still not stored means the ingest is not making progress. A batch normally
#: commits within milliseconds; seconds already mean trouble.
STALLED_AFTER_S = 30.0


@dataclass(frozen=True, slots=True)
class IngestProgress:
    """Is the ingest keeping up? Read by the health check and the metrics."""

    #: Messages received from the broker and not yet stored (queued, or in the batch being stored).
    unstored: int
    #: Age in seconds of the oldest of them (0 when there is none).
    oldest_unstored_s: float
    #: Since when (``time.monotonic()``) storing fails and is being retried, or ``None``.
    storage_failing_since: float | None
    #: The bytes they hold (payload, topic, overhead: :func:`server.ingest.backlog.footprint`), whatever their QoS.
    unstored_bytes: int = 0

    @property
    def state(self) -> Literal["ok", "retrying", "stalled"]:
        """``ok``; ``retrying`` (the database does not answer, or its storage fails); ``stalled`` (a message has
        waited too long)."""
        if self.storage_failing_since is not None:
            return "retrying"
        return "stalled" if self.oldest_unstored_s > STALLED_AFTER_S else "ok"
