"""What a warning really did, as the seal's events say it, and the speaker's health for the heartbeat.

A warning is a Chinese clip then an English clip (the configured languages, in order). Its events must say only
what happened, yet the event of a trigger is committed within milliseconds of the edge, long before the clips have
played (each lasts seconds). So an event records the warning as it stands when it is committed, after waiting (at
most :data:`BEGIN_WAIT_S`) for the sound device to accept or refuse the first clip:

* ``started``: the warning is under way (a clip is playing, or the next one is still to be tried); a
  ``warning_result`` event naming the trigger's ``seq`` reports the outcome per language once it is over;
* ``played`` / ``failed`` / ``stopped``: it is already over (every clip was refused at once, or a speaker that
  plays instantly), and the event itself is the outcome;
* ``busy``: a warning was already playing, so none was started for this trigger; ``failed`` also when the speaker
  raised instead of starting;
* ``deferred_cooldown`` (an intrusion within the cool-down): none yet; a ``warning_result`` naming its ``seq`` follows
  with the warning the cool-down's end played, or why none played (see :mod:`seal_agent.behaviour.deferred`).

It imports no hardware library: the speaker reports into a :class:`~seal_agent.interfaces.WarningPlayback`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from seal_agent.interfaces import Speaker, WarningPlayback
from seal_agent.journal.timeline import Moment

logger = logging.getLogger(__name__)

#: How long an event waits for the sound device to accept or refuse the warning's first clip.
BEGIN_WAIT_S = 1.0


@dataclass(slots=True)
class WarningStart:
    """What asking the speaker for a warning did: ``started`` (its ``playback`` tells the rest), ``busy`` or
    ``failed`` (the speaker raised: ``reason``). ``settled`` is what the last event recorded of it (see
    :meth:`settle`): an event that said ``started`` promises a ``warning_result``."""

    result: str
    playback: WarningPlayback | None = None
    reason: str | None = None
    settled: str | None = None
    owed: str | None = None  # the outbox setting that keeps the promise of its warning_result (:mod:`.owed_results`)

    def settle(self) -> tuple[str, list[dict[str, Any]]]:
        """The warning as an event records it now: ``warning`` and ``warning_languages``."""
        if self.playback is None:
            self.settled = self.result
            return self.result, []
        self.playback.wait_begun(BEGIN_WAIT_S)
        state, languages = self.playback.outcome()
        self.settled = state
        return state, languages

    @property
    def promised_result(self) -> bool:
        """The event recorded the warning as ``started``, or this is what became of the warning of an intrusion
        recorded as ``deferred_cooldown`` (``settled`` set so by the report): a ``warning_result`` must follow,
        however soon it ends."""
        if self.settled == "deferred_cooldown":
            return self.result != "deferred_cooldown"  # not the intrusion's own: the warning decided for it
        return self.playback is not None and self.settled == "started"


def start_warning(speaker: Speaker) -> WarningStart:
    """Start the warning: ``started`` (with its playback), ``busy`` (one is playing) or ``failed`` (the speaker
    raised; logged). Never raises."""
    try:
        playback = speaker.play_warning()
    except Exception as exc:
        logger.exception("the warning could not be started")
        return WarningStart("failed", reason=f"{type(exc).__name__}: {exc}")
    if playback is None:
        return WarningStart("busy")
    logger.info("warning started")
    return WarningStart("started", playback)


class SpeakerHealth:
    """The outcome of the last warning that ended (``untested`` before the first) and the last failure, for the
    heartbeat. Thread-safe: playbacks end on the speaker's thread."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._state = "untested"
        self._failure: dict[str, Any] | None = None

    def watch(self, start: WarningStart) -> None:
        if start.playback is not None:
            start.playback.when_ended(self._ended)
        elif start.result == "failed":
            self._failed(None, start.reason or "the speaker raised")

    def payload(self) -> dict[str, Any]:
        """``speaker`` (``untested`` | ``ok`` | ``failed``) and ``speaker_failure`` (null or
        ``{"language", "reason", "ts"}``, ``ts`` a :class:`~seal_agent.journal.timeline.Moment`: the recorder tells
        it in the clock of the heartbeat's own ``ts``, also when the clock stepped since the failure)."""
        with self._lock:
            return {"speaker": self._state, "speaker_failure": None if self._failure is None else dict(self._failure)}

    def _ended(self, playback: WarningPlayback) -> None:
        failures = playback.failures()
        if failures:
            language, reason = failures[-1]
            self._failed(language, reason)
        elif playback.state == "played":
            with self._lock:
                self._state = "ok"

    def _failed(self, language: str | None, reason: str) -> None:
        with self._lock:
            self._state = "failed"
            self._failure = {"language": language, "reason": reason, "ts": Moment(self._monotonic())}
