"""A batch stored one message at a time (one message made it fail) places what the batch would have placed.

A batch tries its events refused for their case again, each seal's from the top down, once its other events are
stored (:meth:`~server.ingest.batch.IngestBatch.apply`): a moved seal's drain (A's run, signed with its clock behind,
then the first event signed for B, whose ``prev_hash`` names the last of A's) is placed in A at once. Stored one by
one, after a message the database refused made the batch fail (:mod:`.ingestor`), A's run comes before its successor
and would stay refused — one message's failure costing another seal its placement. So after that pass
(:func:`place_refused`), each seal's events refused for their case whose successor (``seq`` + 1) the pass stored are
stored again, alone, from the top down: each placed one lets the one below it be tried. Only those: one whose
successor is not stored cannot be placed, and trying it again would only quarantine one more copy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from server.ingest.case_hold import decoded
from server.ingest.late_chain import CASE_REASONS
from server.ingest.results import IngestResult, Message, Outcome


def place_refused(
    messages: Sequence[Message], results: list[IngestResult], ingest_alone: Callable[[Message], IngestResult]
) -> None:
    """Store again (``ingest_alone``) the events of ``messages`` refused for their case (``results``, replaced in
    place) whose successor the batch stored, each seal's from the top down."""
    if not any(result.reason in CASE_REASONS for result in results):
        return
    stored: set[tuple[str, int]] = set()
    refused: list[tuple[str, int, int]] = []  # (device_id, -seq, place)
    for place, (message, result) in enumerate(zip(messages, results, strict=True)):
        if result.outcome is Outcome.STORED or result.reason in CASE_REASONS:
            envelope = decoded(message.payload)
            if envelope is None:
                continue
            if result.outcome is Outcome.STORED:
                stored.add((envelope.device_id, envelope.seq))
            else:
                refused.append((envelope.device_id, -envelope.seq, place))
    for device_id, minus_seq, place in sorted(refused):
        if (device_id, 1 - minus_seq) in stored:
            results[place] = ingest_alone(messages[place])
            if results[place].outcome is Outcome.STORED:
                stored.add((device_id, -minus_seq))
