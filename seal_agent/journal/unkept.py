"""Snapshots a trigger's signed event named before they were stored: never lost silently, not even by a crash.

A trigger's event (``intrusion``, ``tamper``) lists its pre-trigger snapshots by hash as soon as they are encoded in
memory, so that nothing waits for the disk before the event is committed; they are stored and queued just after, on
the trigger's follow-up, whose ``snapshot_taken`` names those it could not store (``not_stored``). A power cut or a
kill -9 between the two would leave a signed event naming pictures that no file and no queue entry holds, and nothing
signed saying so. So the event is committed together with an outbox setting (:func:`unkept_settings`: its own key
under :data:`UNKEPT_PREFIX`, the hashes as a JSON list), and the ``snapshot_taken`` removes it in its own transaction
(:func:`kept_settings`). A setting found at start (:func:`sign_unkept`, once the snapshot spool has queued what was
stored but never queued) is a follow-up a crash cut short: each hash it names that is neither stored, queued nor
receipted by the court gets a signed ``snapshot_lost`` (reason :data:`LOST_NEVER_STORED`), each committed with the
setting's update, so a crash during this names none twice.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Collection

from seal_agent.errors import EventLost
from seal_agent.journal.outbox import Settings
from seal_agent.journal.recorder import EventRecorder
from seal_protocol import EventType

logger = logging.getLogger(__name__)

#: Outbox settings: one per trigger whose event is committed and whose ``snapshot_taken`` is not yet.
UNKEPT_PREFIX = "unkept_snapshots/"
#: ``snapshot_lost``'s ``reason`` for a snapshot a trigger's event named and the seal stopped before storing.
LOST_NEVER_STORED = "never_stored"
NEVER_STORED_DETAIL = "its trigger's event named it; the seal stopped (a power cut, a crash) before storing it"


def unkept_settings(hashes: Collection[str]) -> tuple[str, Settings]:
    """The key of a trigger's record and the settings committed with its event, which names ``hashes``."""
    key = f"{UNKEPT_PREFIX}{uuid.uuid4().hex}"
    return key, {key: json.dumps(sorted(set(hashes)))}


def kept_settings(key: str | None) -> Settings | None:
    """The settings committed with the trigger's ``snapshot_taken``: its snapshots are stored or named not stored."""
    return None if key is None else {key: None}


def sign_unkept(recorder: EventRecorder, stored: Collection[str]) -> None:
    """At start: a ``snapshot_lost`` for each snapshot a trigger's committed event named and a crash kept from being
    stored (neither in ``stored``, the store's files, nor queued or receipted). Raises OutboxError (a full disk: the
    records stay, and the next start tries again)."""
    outbox = recorder.outbox
    records = outbox.settings_named(UNKEPT_PREFIX)
    if not records:
        return
    known = set(stored) | outbox.queued_snapshots() | outbox.receipted_snapshots()
    for key, value in sorted(records.items()):
        try:
            left = [sha for sha in json.loads(value) if isinstance(sha, str) and sha not in known]
        except (ValueError, TypeError):
            logger.error("unreadable record %s of a trigger's snapshots: %r; dropped", key, value)
            left = []
        while left:
            sha, left = left[0], left[1:]
            logger.error("snapshot %s, named by a trigger's event, was never stored (the seal stopped first)", sha)
            payload = {"snapshot": sha, "reason": LOST_NEVER_STORED, "detail": NEVER_STORED_DETAIL, "kept": None}
            try:
                recorder.record(EventType.SNAPSHOT_LOST, payload, settings={key: json.dumps(left) if left else None})
            except EventLost:  # its event_lost stands in its place; the record goes on with the next one
                outbox.set_setting(key, json.dumps(left))
        if outbox.setting(key) is not None:  # every snapshot it named is stored (or its loss is signed)
            outbox.unset_setting(key)
