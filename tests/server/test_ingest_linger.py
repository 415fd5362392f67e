"""``[mqtt] batch_linger_ms`` counts from the first message's arrival: a message that waited for the batch before it
is stored as soon as that batch commits, not after lingering once more (against a real Mosquitto, on SQLite, whose
write lock the test holds to make a batch wait)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from seal_dev.broker import PrivateBroker
from server.core.db import READ_ONLY, make_engine, make_session_factory
from server.migrations.run import init_db
from tests.agent.helpers import wait_until
from tests.server.helpers import CASE_A, SimulatedSeal, register
from tests.server.ingest_processes import stored_seqs
from tests.server.mqtt_helpers import seal_connection, server_mqtt_settings
from tests.server.test_mqtt_ingest import start_ingest

LINGER_S = 2.0


def test_a_message_that_waited_for_the_batch_before_is_not_made_to_linger_again(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    path = tmp_path / "court.db"
    engine = make_engine(f"sqlite:///{path}")
    init_db(engine)
    factory = make_session_factory(engine)
    reader = make_session_factory(engine.execution_options(**READ_ONLY))  # its polls take no write lock
    seal = SimulatedSeal("seal-a", CASE_A)
    register(factory, seal)
    settings = server_mqtt_settings(broker, tmp_path).model_copy(update={"batch_linger_ms": LINGER_S * 1000})
    running = start_ingest(settings, factory, tmp_path)
    assert running.ingest.wait_subscribed(30), "the ingest did not subscribe"
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        with seal_connection(broker, seal.device_id) as conn:
            holder.execute("BEGIN IMMEDIATE")  # the first batch, once it has lingered, waits for this lock
            conn.publish(seal.event_topic, seal.event())
            time.sleep(LINGER_S + 0.5)  # its batch has lingered and waits for the lock
            conn.publish(seal.event_topic, seal.event())
            time.sleep(LINGER_S + 0.5)  # the second waits behind it, longer than a linger
            holder.execute("COMMIT")
            released = time.monotonic()
            assert wait_until(lambda: stored_seqs(reader) == [1, 2], 10 * LINGER_S)
            waited = time.monotonic() - released
        # stored with the first batch's commit, plus a moment; lingering again would have taken LINGER_S more
        assert waited < LINGER_S / 2, f"the second event was stored {waited:.2f} s after the first batch's lock"
    finally:
        holder.close()
        running.ingest.stop()
        engine.dispose()
