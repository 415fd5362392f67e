"""The verifier process under load: a backlog's next batch opened ahead while the one before is stored, one batch at
a time in the process (another batch meanwhile is opened here), and what the pipes and the process do with what
they cannot take. Real processes, real envelopes, a real broker; nothing stubbed."""

from __future__ import annotations

import os
import pickle
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from seal_dev.broker import PrivateBroker
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.ingest.checks import prepare_all
from server.ingest.ingestor import Ingestor
from server.ingest.mqtt import MqttIngest
from server.ingest.results import Message, Reason
from server.ingest.verifier import CHUNK, ProcessVerifier, Verifier
from server.ingest.verifier_pipe import FRAME, MAX_FRAME, Pipe, read_frame, write_frame
from server.ingest.verifier_process import READY, serve, start
from tests.agent.helpers import wait_until
from tests.server.helpers import CASE_A, SimulatedSeal, register
from tests.server.ingest_processes import stored_seqs
from tests.server.ingest_world import make_court
from tests.server.mqtt_helpers import seal_connection, server_mqtt_settings
from tests.server.test_verifier import KEYS, _answers, _job, _problems, _started


def test_a_backlog_is_opened_a_batch_ahead_and_stored_once_in_order(
    broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """Events that piled up while the court was away come in full batches: the verifier process opens each next
    batch while the one before it is stored. Every event is stored once, in the seal's order, the forged one refused,
    the process never failed, and it opened most of them (a batch in its turn is shared half and half; one opened
    ahead goes to it whole)."""
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    count, forged_at = 12 * CHUNK, 7 * CHUNK + 3
    settings = server_mqtt_settings(broker, tmp_path).model_copy(update={"batch_size": 2 * CHUNK + 5})
    first = MqttIngest(settings, Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "s"))
    first.start()
    try:
        assert first.wait_subscribed(30), "the ingest did not subscribe"
        with seal_connection(broker, seal.device_id) as conn:
            conn.client.publish(seal.event_topic, seal.event(), qos=1).wait_for_publish(30)
            assert wait_until(lambda: len(stored_seqs(session_factory)) == 1, 30)
            first.stop()  # the court is away: its session keeps what comes meanwhile
            payloads = [seal.event(key=KEYS[0] if n == forged_at else None) for n in range(count)]
            for info in [conn.client.publish(seal.event_topic, data, qos=1) for data in payloads]:
                info.wait_for_publish(30)
    finally:
        first.stop()
    failures: list[int] = []
    verifier = ProcessVerifier(on_failure=lambda: failures.append(1))
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "s", verifier=verifier)
    ingestor.ingest([Message(seal.event_topic, seal.event(seq=1), datetime.now(UTC))])  # the seal's key is known
    _started(verifier)
    again = MqttIngest(settings, ingestor)
    # The seal's row held locked until the whole backlog is in the court's queue: the first batch waits for it, so
    # that every batch after it finds a backlog behind it (else the drain may keep up with the broker's delivery,
    # and a batch in its turn is shared half and half)
    holder = session_factory()
    holder.execute(text("UPDATE seals SET location = location WHERE device_id = :d"), {"d": seal.device_id})
    again.start()
    try:
        assert wait_until(lambda: again.progress().unstored == count, 30), again.progress()
        holder.rollback()
        assert wait_until(lambda: len(stored_seqs(session_factory)) == count, 60)
        assert wait_until(lambda: again.progress().unstored == 0, 30)
    finally:
        holder.close()
        again.stop()
    forged_seq = forged_at + 2  # the first event, sent alone, was seq 1
    assert stored_seqs(session_factory) == [seq for seq in range(1, count + 2) if seq != forged_seq]
    assert failures == []
    # Opened in its turn, a batch of 133 gives the process one chunk of 64 (48 %), a last one of 103 gives 62 %; the
    # batches opened ahead go to it whole: 77-87 % in all, by where the first batch ends
    assert verifier.answered >= 0.7 * count, verifier.answered


@contextmanager
def _held(session_factory: SessionFactory) -> Iterator[None]:
    """The events' table held against writers (SQLite: the write lock; PostgreSQL: a lock on the table) until the end
    of the block: the ingest's batch waits for it, and what arrives meanwhile waits in its queue."""
    with session_factory() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE"))
        else:
            session.execute(text("DELETE FROM events WHERE id < 0"))  # BEGIN IMMEDIATE: the write lock
        yield
        session.rollback()


def test_bursts_start_the_process_and_are_opened_ahead(
    broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """Bursts of 150 events, in batches of at most 50 (none holds a full chunk of 64): the first starts the verifier
    process (none runs before); in later ones, while a batch is stored, the next batch is opened by the process.
    Every event is stored once, in the seal's order."""
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    burst, bursts = 150, 8
    failures: list[int] = []
    verifier = ProcessVerifier(on_failure=lambda: failures.append(1))
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "s", verifier=verifier)
    ingestor.ingest([Message(seal.event_topic, seal.event(), datetime.now(UTC))])  # the seal's key is known
    ingest = MqttIngest(server_mqtt_settings(broker, tmp_path), ingestor)  # batches of at most 50
    ingest.start()
    try:
        assert ingest.wait_subscribed(30), "the ingest did not subscribe"
        with seal_connection(broker, seal.device_id) as conn:
            for n in range(bursts):
                # After the first, each burst arrives whole while the database is held, so that a backlog forms (on a
                # slow machine a burst may otherwise trickle in as fast as it is stored: nothing to open ahead)
                with _held(session_factory) if n else nullcontext():
                    for info in [conn.client.publish(seal.event_topic, seal.event(), qos=1) for _ in range(burst)]:
                        info.wait_for_publish(30)
                    assert not n or wait_until(lambda: ingest.progress().unstored >= burst, 30), "not all received"
                assert wait_until(lambda n=n: len(stored_seqs(session_factory)) == 1 + (n + 1) * burst, 60)
                if n == 0:
                    assert wait_until(lambda: verifier.pid is not None, 30), "the burst did not start the process"
                    threading.Event().wait(1.0)  # it gets ready meanwhile (the next batch asks)
            assert wait_until(lambda: ingest.progress().unstored == 0, 30)
    finally:
        ingest.stop()
    assert stored_seqs(session_factory) == list(range(1, 2 + burst * bursts))
    assert failures == []
    assert verifier.answered > 0  # before, only a batch with a full chunk started it, and it opened nothing here


def test_a_second_batch_while_the_first_is_with_the_process_is_opened_here() -> None:
    """A batch tried again (a lost race, a database back) while the next one is with the process: its events are
    opened here, and the other batch's answers, still in the pipe, stay its own — none skipped, nothing waited for."""
    failures: list[int] = []
    verifier = ProcessVerifier(on_failure=lambda: failures.append(1), answer_timeout_s=5.0)
    try:
        _started(verifier)
        ahead = verifier.checks(ahead=True)
        for n in range(3 * CHUNK + 5):
            key, data = _job(n)
            ahead.add(key.verify_key, data)
        ahead.send_all()
        again = verifier.checks()
        assert _answers(again, 4 * CHUNK) == _answers(Verifier().checks(), 4 * CHUNK)
        assert ahead.results() == _answers(Verifier().checks(), 3 * CHUNK + 5)
        # An answer skipped would have been waited for until the timeout, then counted a failure.
        assert failures == [] and verifier.answered == 3 * CHUNK + 5  # the ahead batch's, all of them
    finally:
        verifier.close()


def test_an_event_the_process_cannot_open_is_opened_by_the_ingest() -> None:
    """Opening an event raises in the process (a defect, here a key that is none): it answers "open it yourself" for
    that event alone and goes on; the ingest meets the defect itself, where one message's failure stays its own."""
    to_read, to_write = os.pipe()
    from_read, from_write = os.pipe()
    process = threading.Thread(target=serve, args=(to_read, from_write), daemon=True)
    process.start()
    try:
        assert pickle.loads(read_frame(from_read) or b"") == (0, READY)
        key, data = _job(0)
        write_frame(to_write, pickle.dumps((1, [(bytes(key.verify_key), data), (b"not a key", data)])))
        number, answers = pickle.loads(read_frame(from_read) or b"")
        assert number == 1 and answers[1] is None and _problems(answers[:1]) == [None]
        write_frame(to_write, pickle.dumps((2, [(bytes(key.verify_key), data)])))
        assert pickle.loads(read_frame(from_read) or b"")[0] == 2  # still answering
    finally:
        os.close(to_write)
        process.join(10)
        for fd in (to_read, from_read, from_write):
            os.close(fd)


def test_bytes_too_large_for_an_event_never_go_to_the_process(session_factory: SessionFactory, tmp_path: Path) -> None:
    """A known seal's messages of more than an envelope's limit are refused as ``oversized`` by the ingest's thread
    itself, as before: not copied, chunk after chunk of megabytes, through the pipes to be refused there."""
    court = make_court(session_factory, tmp_path)
    court.send(court.a, court.a.event())  # the seal's key is known
    verifier = ProcessVerifier()
    try:
        _started(verifier)
        large = court.a.event() + b" " * (1 << 20)
        prepared = prepare_all(
            [Message(court.a.event_topic, large, datetime.now(UTC))] * (2 * CHUNK), court.ingestor.cache, verifier
        )
        assert {p.checked.reason for p in prepared} == {Reason.OVERSIZED}  # type: ignore[union-attr]
        assert verifier.answered == 0
    finally:
        verifier.close()


def test_a_frame_longer_than_any_answer_is_refused_unread() -> None:
    """A process that says a frame of more than :data:`MAX_FRAME` bytes follows is not believed (nor read)."""
    to_read, to_write = os.pipe()
    from_read, from_write = os.pipe()
    pipe = Pipe(to_write, from_read)
    try:
        os.write(from_write, FRAME.pack(MAX_FRAME + 1) + b"x" * 100)
        with pytest.raises(ValueError, match="limit"):
            pipe.poll(1)
    finally:
        pipe.close()
        for fd in (to_read, from_write):
            os.close(fd)


def test_a_frame_cut_off_half_way_holds_the_ingest_no_longer_than_its_timeout() -> None:
    """A process stopped (or slow) in the middle of writing its answers: the ingest waits for the rest of the frame at
    most its timeout, never for good; the frame is taken once whole; the process's end is seen as the end."""
    to_read, to_write = os.pipe()
    from_read, from_write = os.pipe()
    pipe = Pipe(to_write, from_read)
    try:
        answer = pickle.dumps((1, ["答复"] * 10_000))  # larger than a pipe holds, as a chunk's answers are
        frame = FRAME.pack(len(answer)) + answer
        os.write(from_write, frame[:1000])
        assert not pipe.poll(0.2)  # a poll that waited for the rest for good would hang (pytest-timeout)

        def write_the_rest() -> None:
            os.write(from_write, frame[1000:])
            os.close(from_write)

        writer = threading.Thread(target=write_the_rest)
        writer.start()
        assert pipe.poll(10) and pickle.loads(pipe.recv_bytes()) == (1, ["答复"] * 10_000)
        writer.join(10)
        assert pipe.poll(10)  # the end
        with pytest.raises(EOFError):
            pipe.recv_bytes()
    finally:
        pipe.close()
        os.close(to_read)


def test_the_pipe_to_the_process_holds_a_batch_it_does_not_read_yet() -> None:
    """A batch opened ahead is sent whole while the process is still opening the one before: the pipe must take it
    (about 300 KB for 500 events) without waiting for the process to read — at Linux's default 64 KB it would not."""
    process, pipe = start()
    try:
        assert pipe.poll(30) and pickle.loads(pipe.recv_bytes()) == (0, READY)
        os.kill(process.pid, signal.SIGSTOP)  # reads nothing more
        pipe.send_bytes(b"x" * 900_000, timeout=2.0)  # a TimeoutError if the pipe held less
    finally:
        process.kill()
        process.wait(60)
        pipe.close()
