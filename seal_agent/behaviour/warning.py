"""When to speak: a pure state machine over presence and time, with no threads and no hardware.

Policy (times in seconds from a monotonic clock):

* A presence that begins outside the cool-down starts a *warned presence*: the warning plays at once.
* While that presence continues, the warning repeats every ``repeat_s``, at most ``max_repeats`` times.
* When a warned presence ends, a cool-down of ``cooldown_s`` begins: a new presence within it is not warned
  at once (cleaners and passers-by re-trigger a PIR constantly), but if it is still going on when the
  cool-down ends, it becomes a warned presence then.

Whether the seal is armed is the caller's business: a disarmed seal simply does not ask.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WarningSettings:
    repeat_s: float
    max_repeats: int
    cooldown_s: float


class WarningPolicy:
    """Decides when the warning plays. Not thread-safe: the caller serialises calls."""

    def __init__(self, settings: WarningSettings) -> None:
        self.settings = settings
        self.present = False
        self._plays = 0  # warnings played during the current presence
        self._next_play_at: float | None = None
        self._cooldown_until = float("-inf")

    def motion_started(self, now: float) -> bool:
        """Presence began at ``now``; True if the warning should play now."""
        self.present = True
        self._plays = 0
        if now >= self._cooldown_until:
            return self._play(now)
        self._next_play_at = self._cooldown_until
        return False

    def motion_ended(self, now: float) -> None:
        """Presence ended at ``now``."""
        self.present = False
        self._next_play_at = None
        if self._plays:
            self._cooldown_until = now + self.settings.cooldown_s
        self._plays = 0

    def due(self, now: float) -> bool:
        """True if a scheduled (repeat or post-cool-down) warning should play now; call at :meth:`next_due`."""
        if not self.present or self._next_play_at is None or now < self._next_play_at:
            return False
        return self._play(now)

    def next_due(self) -> float | None:
        """When :meth:`due` may next return True, or None if nothing is scheduled."""
        return self._next_play_at if self.present else None

    def cancel(self) -> None:
        """The warning :meth:`motion_started` asked for was not played (the camera saw nobody): nothing more is
        scheduled for this presence, and its end starts no cool-down."""
        self._plays = 0
        self._next_play_at = None

    def reset(self) -> None:
        """Forget presence, repeats and cool-down (used on arm and disarm)."""
        self.present = False
        self._plays = 0
        self._next_play_at = None
        self._cooldown_until = float("-inf")

    def _play(self, now: float) -> bool:
        self._plays += 1
        repeats_done = self._plays - 1
        if repeats_done < self.settings.max_repeats:
            self._next_play_at = now + self.settings.repeat_s
        else:
            self._next_play_at = None
        return True
