"""The ``warning_result`` an event promised, kept in the outbox until it is signed: a crash or a power cut never leaves
a warning the chain says ``started`` without an outcome.

An event that records a warning as ``started`` — an ``intrusion``, a ``tamper``, the ``snapshot_taken`` of a
confirmation that started one, a ``test_warning``'s ``command_ack`` — promises a ``warning_result`` naming its
trigger's ``seq`` once the warning is over; so does the warning the end of a cool-down started for a
``deferred_cooldown`` intrusion. The follow-up thread that keeps the promise lives in memory only: a kill -9 or a power
cut while the clips play would leave it open for good, and the court could not tell a warning still playing from a
seal that died. So the promise is an outbox setting (its own key under :data:`OWED_PREFIX`, the trigger, its ``seq``
and the languages as the event recorded them, in JSON), committed in the transaction of the event that makes it
(:func:`owe`; for a deferred warning, written as its follow-up starts: :func:`promise`), and the ``warning_result``
removes it in its own transaction (:func:`paid`). A setting found at start (:func:`sign_owed`, right after
``agent_started``) is a promise the stop broke: the restarted agent signs that ``warning_result`` now, stamped now,
``failed``, each language the event recorded as not yet over (``playing``, ``queued``) ``failed`` with
:data:`CUT_SHORT` as its reason (a language already over keeps what it was). ``failed`` is not a claim that the
speaker broke: the seal cannot vouch that the warning was heard, and the court, which raises ``speaker_failed`` on it,
should check (a ``test_warning`` answers). No new value: every court and ``seal-verify`` already read it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from typing import Any

from seal_agent.behaviour.held_snapshots import TriggerSeq
from seal_agent.behaviour.warning_outcome import WarningStart
from seal_agent.errors import OutboxError
from seal_agent.journal.outbox import Outbox, Settings
from seal_agent.journal.recorder import EventRecorder
from seal_protocol import EventType

logger = logging.getLogger(__name__)

#: Outbox settings: one per warning whose event said ``started`` and whose ``warning_result`` is not yet committed.
OWED_PREFIX = "owed_warning_result/"
#: The reason of each language a stop of the agent cut short before its ``warning_result`` was committed.
CUT_SHORT = (
    "封条程序在警告结束前停止（崩溃或断电），此后的播放情况不明 / the agent stopped (a crash, a power cut) before the "
    "warning was over; what it played after that is unknown"
)
#: A language's results that say it was not over.
_NOT_OVER = ("playing", "queued")


def owe(
    start: WarningStart, trigger: str, languages: list[dict[str, Any]], trigger_seq: TriggerSeq | None = None
) -> Settings | None:
    """The setting to commit with the event that records ``start``'s warning as it stands (``languages``), if that
    event promises a ``warning_result`` (:attr:`WarningStart.promised_result`; else None). It names the event's own
    seq, or ``trigger_seq`` (a ``snapshot_taken``'s: its trigger's)."""
    if not start.promised_result:
        return None
    key = start.owed = f"{OWED_PREFIX}{uuid.uuid4().hex}"

    def value(seq: int) -> str:  # in the event's transaction: the trigger's seq is known by then
        named = seq if trigger_seq is None else trigger_seq() if callable(trigger_seq) else trigger_seq
        return _promise(trigger, named, languages)

    return {key: value}


def promise(outbox: Outbox, start: WarningStart, trigger: str, trigger_seq: TriggerSeq) -> None:
    """A ``warning_result`` is owed for ``start``'s warning, under way, and no event committed the promise (the warning
    a cool-down's end started for a ``deferred_cooldown`` intrusion): write it now. A full disk: logged, and only a
    crash before the result loses it."""
    if start.owed is not None or start.playback is None or callable(trigger_seq):
        return
    key = f"{OWED_PREFIX}{uuid.uuid4().hex}"
    try:
        outbox.set_setting(key, _promise(trigger, trigger_seq, start.playback.outcome()[1]))
    except OutboxError:
        logger.exception("the warning_result owed to %s seq=%d could not be noted in the outbox", trigger, trigger_seq)
        return
    start.owed = key


def paid(start: WarningStart) -> Settings | None:
    """The setting to commit with ``start``'s ``warning_result``: its promise is kept."""
    return None if start.owed is None else {start.owed: None}


def sign_owed(recorder: EventRecorder) -> None:
    """At start: the ``warning_result`` of each promise a stop of the agent broke (:data:`CUT_SHORT`), in the order of
    their triggers' seqs, each committed with its setting's removal (a full disk: in line, and the setting stays)."""
    try:
        records = recorder.outbox.settings_named(OWED_PREFIX)
    except OutboxError:
        logger.exception("cannot read the warning_results owed from the outbox: the next start signs them")
        return
    owed: list[tuple[int, str, dict[str, Any]]] = []
    for key, value in records.items():
        try:
            found = json.loads(value)
            payload = {"trigger": str(found["trigger"]), "trigger_seq": found["trigger_seq"]}
            payload |= _cut_short(found["warning_languages"])
        except (ValueError, TypeError, KeyError, AttributeError):
            logger.error("unreadable record %s of a warning_result owed: %r; dropped", key, value)
            with contextlib.suppress(OutboxError):
                recorder.outbox.unset_setting(key)
            continue
        owed.append((payload["trigger_seq"] if isinstance(payload["trigger_seq"], int) else 0, key, payload))
    for _, key, payload in sorted(owed, key=lambda item: item[:2]):
        logger.error(
            "the warning of %s seq=%s was not over when the agent stopped: its warning_result is signed now (%s)",
            payload["trigger"],
            payload["trigger_seq"],
            payload["warning"],
        )
        recorder.record_in_line(EventType.WARNING_RESULT, payload, settings={key: None})


def _promise(trigger: str, trigger_seq: int | None, languages: list[dict[str, Any]]) -> str:
    return json.dumps({"trigger": trigger, "trigger_seq": trigger_seq, "warning_languages": languages})


def _cut_short(languages: list[dict[str, Any]]) -> dict[str, Any]:
    """``warning`` and ``warning_languages`` of a warning the agent's stop cut short after its event said
    ``languages``."""
    told = [
        {"language": str(item["language"]), "result": "failed", "reason": CUT_SHORT}
        if item["result"] in _NOT_OVER
        else {"language": str(item["language"]), "result": str(item["result"]), "reason": item.get("reason")}
        for item in languages
    ]
    results = {item["result"] for item in told}
    warning = "failed" if "failed" in results or not told else "played" if results == {"played"} else "stopped"
    return {"warning": warning, "warning_languages": told}
