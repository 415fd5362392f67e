"""The events a batch stores get their own ids and their log leaves in the order of the messages, whatever else the
batch holds: copies, clashes and refusals between them, and after a batch that failed and was stored one by one. The
log is checked against an RFC 6962 tree computed from the stored bytes by the tests (:mod:`tests.server.log_checks`)."""

from __future__ import annotations

from pathlib import Path

from seal_protocol import EventType, decode_envelope, envelope_hash
from server.core.db import SessionFactory
from server.ingest.results import Outcome
from tests.server.helpers import message, refuse_seq_in_the_database
from tests.server.ingest_world import Court, make_court, resigned
from tests.server.log_checks import logged_events


def test_a_mixed_batch_stores_its_events_in_order_under_their_own_ids(
    session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    court: Court = make_court(session_factory, tmp_path)
    a, b = court.a, court.b
    a1, a2, b1 = a.event(), a.event(), b.event()
    assert {r.outcome for r in court.ingestor.ingest([message(a.event_topic, d) for d in (a1, a2)])} == {Outcome.STORED}
    assert court.send(b, b1)[0].outcome is Outcome.STORED

    a3, b2 = a.event(EventType.TAMPER, {"note": '","sig":"' + "0" * 128 + '"'}), b.event()
    # b's next seq under a's stored event_id; seq 3 of a again with other bytes (neither changes the seals' chains)
    stolen_id = resigned(b2, b.key, event_id=decode_envelope(a1).event_id, seq=b.seq + 1, prev_hash=envelope_hash(b2))
    replay = resigned(a3, a.key, payload={"other": 1})
    a4, b3 = a.event(), b.event()
    batch = [
        (a.event_topic, a3),
        (a.event_topic, a2),  # stored by the first batch: a redelivery
        (b.event_topic, b2),
        (b.event_topic, stolen_id),  # another seal's stored event_id
        (a.event_topic, b"{not json"),
        (a.event_topic, a4),
        (a.event_topic, replay),  # seq 3 again, other bytes
        (b.event_topic, b3),
        (a.event_topic, a3),  # a copy within the batch
    ]
    results = court.ingestor.ingest([message(topic, data) for topic, data in batch])
    assert [r.outcome for r in results] == [
        Outcome.STORED,
        Outcome.DUPLICATE,
        Outcome.STORED,
        Outcome.QUARANTINED,
        Outcome.QUARANTINED,
        Outcome.STORED,
        Outcome.QUARANTINED,
        Outcome.STORED,
        Outcome.DUPLICATE,
    ]
    assert logged_events(session_factory) == [a1, a2, b1, a3, b2, a4, b3]

    # A batch the database fails (a trigger refuses one row) is stored one by one: the others keep their order.
    a5, a6, b4, a7 = a.event(), a.event(), b.event(), a.event()
    refuse_seq_in_the_database(session_factory, database_url, seq=6)  # a6
    results = court.ingestor.ingest([message(b.event_topic, b4)] + [message(a.event_topic, d) for d in (a5, a6, a7)])
    assert [r.outcome for r in results] == [Outcome.STORED, Outcome.STORED, Outcome.QUARANTINED, Outcome.STORED]
    assert logged_events(session_factory) == [a1, a2, b1, a3, b2, a4, b3, b4, a5, a7]
