"""Two ingest workers writing one PostgreSQL database at once: they lock rows in one order (no deadlock), a deadlock
or serialization failure is retried rather than blamed on a message, and the quarantine counts every copy."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text

from seal_protocol import EventType, encode_status
from seal_protocol.status import SealStatus
from server.alarms.models import Alarm
from server.core.base import utc_now
from server.core.db import SessionFactory, make_engine, make_session_factory
from server.core.metrics import IngestMetrics
from server.errors import StorageUnavailable
from server.evidence.log import lock_log
from server.evidence.models import Event
from server.ingest.ingestor import Ingestor
from server.ingest.liveness import LivenessChecker
from server.ingest.models import ChainState, QuarantinedMessage
from server.ingest.quarantine_rows import quarantine_row
from server.ingest.results import Message, Outcome
from tests.agent.helpers import wait_until
from tests.server.helpers import CASE_A, CASE_B, SimulatedSeal, message, register
from tests.server.pg_locks import Side, failed_batches, lock_waits, wait_for_lock_waits

SEALS_PER_SIDE = 4
ROUNDS = 120


@pytest.fixture
def postgres_url(database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        pytest.skip("a race between two PostgreSQL workers (SQLite serialises its writers at BEGIN)")
    return database_url


@pytest.fixture
def second_engine(database_url: str, engine: Engine) -> Iterator[Engine]:
    """The second worker's own connections, as another process would have (after ``engine`` made the tables)."""
    other = make_engine(database_url)
    try:
        yield other
    finally:
        other.dispose()


def _run_both(first: Callable[[], None], second: Callable[[], None]) -> None:
    """Run the two workers' loops at once; re-raise what either raised."""
    errors: list[BaseException] = []

    def run(loop: Callable[[], None]) -> None:
        try:
            loop()
        except BaseException as exc:  # reported to the test's thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(loop,)) for loop in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a worker hung"
    if errors:
        raise errors[0]


def test_two_workers_with_batches_over_the_same_seals_in_opposite_orders_never_deadlock(
    session_factory: SessionFactory,
    postgres_url: str,
    second_engine: Engine,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Worker 1 stores events of seals A… and statuses of seals B…; worker 2 the other way round: each batch updates
    rows of every seal, in the opposite order of the other's."""
    side_a = [SimulatedSeal(f"seal-a{i}", CASE_A) for i in range(SEALS_PER_SIDE)]
    side_b = [SimulatedSeal(f"seal-b{i}", CASE_B) for i in range(SEALS_PER_SIDE)]
    register(session_factory, *side_a, *side_b)
    metrics = [IngestMetrics(), IngestMetrics()]
    workers = [
        Ingestor(factory, metrics=m, snapshot_dir=tmp_path / "snapshots")
        for factory, m in zip((session_factory, make_session_factory(second_engine)), metrics, strict=True)
    ]
    for seal in side_a + side_b:  # chain states exist: the race is between updates of existing rows
        workers[0].ingest([Message(seal.event_topic, seal.event(), datetime.now(UTC))])

    def batch(events: list[SimulatedSeal], statuses: list[SimulatedSeal], round_no: int) -> list[Message]:
        state = SealStatus.ONLINE if round_no % 2 else SealStatus.OFFLINE  # a change each round: the row is written
        at = datetime.now(UTC)
        messages = [Message(seal.event_topic, seal.event(), at) for seal in events]
        return messages + [Message(seal.status_topic, encode_status(state), at) for seal in statuses]

    def loop(worker: Ingestor, events: list[SimulatedSeal], statuses: list[SimulatedSeal]) -> Callable[[], None]:
        def run() -> None:
            for round_no in range(ROUNDS):
                results = worker.ingest(batch(events, statuses, round_no))
                assert {r.outcome for r in results} <= {Outcome.STORED, Outcome.STATUS}, results

        return run

    caplog.set_level(logging.INFO, logger="server.ingest")
    _run_both(loop(workers[0], side_a, side_b[::-1]), loop(workers[1], side_b, side_a[::-1]))

    failed = failed_batches(caplog)
    assert failed == [], f"{len(failed)} batches failed, the first: {failed[0]}"
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(QuarantinedMessage)) == 0
        stored = session.scalar(select(func.count()).select_from(Event))
    assert stored == 2 * SEALS_PER_SIDE * (ROUNDS + 1)


def _lose_races(engine: Engine, sqlstate: str, times: int, table: str = "events") -> None:
    """Make the next ``times`` inserts into ``table`` fail as a lost race does (the database raises ``sqlstate``): a
    trigger counting with a sequence, which no rollback winds back."""
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SEQUENCE lost_races MAXVALUE {times + 1} NO CYCLE"))
        conn.execute(
            text(
                "CREATE FUNCTION lose_a_race() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                f" IF (SELECT last_value < {times} OR NOT is_called FROM lost_races) THEN"
                "   PERFORM nextval('lost_races');"
                f"   RAISE EXCEPTION 'lost a race (test)' USING ERRCODE = '{sqlstate}';"
                " END IF; RETURN NEW; END $$"
            )
        )
        conn.execute(text(f"CREATE TRIGGER lose_races BEFORE INSERT ON {table} EXECUTE FUNCTION lose_a_race()"))


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
def test_a_lost_race_is_retried_and_blames_no_message(
    session_factory: SessionFactory, engine: Engine, postgres_url: str, tmp_path: Path, sqlstate: str
) -> None:
    """A deadlock or a serialization failure is transient: before, the batch fell back to one message at a time and
    a message that lost twice more was quarantined as ``storage_error``."""
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    _lose_races(engine, sqlstate, times=3)  # the batch, then the message alone, twice

    [result] = ingestor.ingest([Message(seal.event_topic, seal.event(), datetime.now(UTC))])

    assert result.outcome is Outcome.STORED, result
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(QuarantinedMessage)) == 0
        assert list(session.scalars(select(Event.seq))) == [1]


def test_a_race_lost_again_and_again_leaves_the_messages_unacknowledged_not_quarantined(
    session_factory: SessionFactory, engine: Engine, postgres_url: str, tmp_path: Path
) -> None:
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    _lose_races(engine, "40P01", times=100)

    with pytest.raises(StorageUnavailable):  # the caller acknowledges nothing and tries again later
        ingestor.ingest([Message(seal.event_topic, seal.event(), datetime.now(UTC))])

    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(QuarantinedMessage)) == 0


COPIES_PER_BATCH = 2


def test_two_workers_quarantining_the_same_bytes_count_every_copy(
    session_factory: SessionFactory, second_engine: Engine, tmp_path: Path
) -> None:
    """A seal sending a refused message again and again, its copies split between two workers: one row, whose
    ``copies`` is the number of copies sent (before, on PostgreSQL, both read the row and wrote back their own count
    + 1, and could both insert it). SQLite's writers queue at BEGIN; its variant checks the same counting."""
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    refused = b'{"not": "an envelope"}'
    workers = [
        Ingestor(factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
        for factory in (session_factory, make_session_factory(second_engine))
    ]

    def loop(worker: Ingestor) -> Callable[[], None]:
        def run() -> None:
            for _ in range(ROUNDS):
                at = datetime.now(UTC)
                results = worker.ingest([Message(seal.event_topic, refused, at)] * COPIES_PER_BATCH)
                assert {r.outcome for r in results} == {Outcome.QUARANTINED}, results

        return run

    _run_both(loop(workers[0]), loop(workers[1]))

    with session_factory() as session:
        rows = list(session.scalars(select(QuarantinedMessage)))
    assert [(row.reason, row.copies) for row in rows] == [("invalid_envelope", 2 * ROUNDS * COPIES_PER_BATCH)]
    assert rows[0].last_received_at is not None and rows[0].last_received_at > rows[0].received_at


def test_a_copy_counts_on_one_row_where_earlier_races_left_two(session_factory: SessionFactory, tmp_path: Path) -> None:
    """Rows written before copies were counted in the database may repeat a key: a new copy counts on the oldest."""
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    refused = Message(seal.event_topic, b"not json", datetime.now(UTC))
    [result] = ingestor.ingest([refused])
    with session_factory() as session:  # the second row a race of two workers used to leave
        session.add(quarantine_row(refused, result))
        session.commit()

    ingestor.ingest([refused, refused])

    with session_factory() as session:
        copies = list(session.scalars(select(QuarantinedMessage.copies).order_by(QuarantinedMessage.id)))
    assert copies == [3, 1]


def test_the_liveness_check_and_the_ingest_of_a_seal_with_a_live_alarm_do_not_deadlock(
    pg_engine: Engine, session_factory: SessionFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The liveness check locks a seal's live alarms, then its seal row; the ingest's insert of an event already
    holds a key-share lock on that row (the foreign key's check) when it asks for the alarms. A FOR UPDATE on the
    seal row waits for that key-share lock: a deadlock, whichever of the two PostgreSQL then kills. A third
    transaction holding a share lock on the seal row (which lets key-share locks through, not the check's) pins the
    check between its two locks while the ingest takes its own; the check must not wait for key-share locks at
    all."""
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    factory = make_session_factory(pg_engine)
    ingestor = Ingestor(factory, metrics=IngestMetrics(), snapshot_dir=tmp_path)
    ingestor.ingest([message(seal.event_topic, seal.event(EventType.HEARTBEAT, {"armed": True}))])
    checker = LivenessChecker(factory, offline_after_s=60, interval_s=1)
    later = utc_now() + timedelta(hours=1)
    assert checker.check(later) == ["seal-a"]  # its offline alarm is live now

    returning = message(seal.event_topic, seal.event(EventType.HEARTBEAT, {"armed": True}))
    with caplog.at_level(logging.INFO, logger="server.ingest.ingestor"), pg_engine.connect() as pin:
        pin.execute(text("SELECT 1 FROM seals WHERE device_id = 'seal-a' FOR SHARE"))
        check = Side(lambda: checker.check(later + timedelta(hours=1)))
        wait_for_lock_waits(pg_engine, 1)  # the check holds the alarm and waits for the seal row
        ingest = Side(lambda: ingestor.ingest([returning]))
        wait_for_lock_waits(pg_engine, 2)  # the ingest holds its key-share lock and waits for the alarm
        pin.rollback()
        check.join()
        ingest.join()
    assert failed_batches(caplog) == []
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 2


def test_a_race_lost_by_the_quarantine_row_of_a_failing_message_keeps_its_bytes(
    session_factory: SessionFactory, engine: Engine, postgres_url: str, tmp_path: Path
) -> None:
    """A message whose rows the database refuses is quarantined alone; should that quarantine row lose a race, it is
    tried again, not stored without the message's bytes as if the database had refused the bytes themselves."""
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    with engine.begin() as conn:  # every event refused: the message fails its batch and twice alone
        conn.execute(
            text(
                "CREATE FUNCTION refuse_events() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                " RAISE EXCEPTION 'refused (test)' USING ERRCODE = 'P0001'; END $$"
            )
        )
        conn.execute(text("CREATE TRIGGER refuse_events BEFORE INSERT ON events EXECUTE FUNCTION refuse_events()"))
    _lose_races(engine, "40001", times=1, table="quarantine")
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    payload = seal.event()

    [result] = ingestor.ingest([Message(seal.event_topic, payload, datetime.now(UTC))])

    assert result.outcome is Outcome.QUARANTINED, result
    with session_factory() as session:
        [row] = session.scalars(select(QuarantinedMessage)).all()
        assert (row.raw, row.copies) == (payload, 1), row.detail


def test_two_workers_making_a_new_seals_chain_state_at_once_store_their_batches_whole(
    session_factory: SessionFactory,
    pg_engine: Engine,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A seal's first events split between two workers: both make its chain state. The second waits for the first
    and takes the row it committed (seq 1 stored); before, its insert failed on the primary key and its batch fell
    back to one message at a time (a WARNING with the SQL), as found in the walk-through of docs/deploy.md. Kept its
    own idea of the chain instead (no event stored yet), it would record seq 1 as missing and raise an alarm."""
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    [first, second] = [Message(seal.event_topic, seal.event(), datetime.now(UTC)) for _ in range(2)]
    workers = [Ingestor(make_session_factory(pg_engine), metrics=IngestMetrics(), snapshot_dir=tmp_path) for _ in "ab"]
    caplog.set_level(logging.INFO, logger="server.ingest")
    with session_factory() as pin:
        lock_log(pin)  # the first worker's transaction is held at its end, its chain state made, not committed
        one = Side(lambda: workers[0].ingest([first]))
        wait_for_lock_waits(pg_engine, 1, timeout_s=30)
        two = Side(lambda: workers[1].ingest([second]))
        wait_for_lock_waits(pg_engine, 2, timeout_s=30)  # the second waits for the first's new row
        pin.rollback()
    results = [one.join(), two.join()]

    assert [[r.outcome for r in batch] for batch in results] == [[Outcome.STORED], [Outcome.STORED]]
    assert failed_batches(caplog) == []
    with session_factory() as session:
        assert list(session.scalars(select(Event.seq).order_by(Event.seq))) == [1, 2]
        chain = session.get(ChainState, seal.device_id)
        assert chain is not None and (chain.max_seq, chain.missing) == (2, [])
        assert session.scalar(select(func.count()).select_from(Alarm)) == 0


def _blocked_by(engine: Engine, pid: int) -> int:
    """How many connections wait for a lock that the backend ``pid`` holds."""
    with engine.connect() as conn:
        query = "SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"
        return conn.scalar(text(query), {"pid": pid}) or 0


def test_two_workers_sharing_a_new_seal_and_a_known_one_do_not_deadlock(
    session_factory: SessionFactory, pg_engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Workers B and C both get seal-a's first event and seal-b's next one (a redelivery: the same bytes); seal-a
    sorts first. Before, a batch locked the chain states it found, then made the missing ones. B found neither (it
    looked before worker D made seal-b's), made seal-a's, then waited for seal-b's; C found seal-b's, locked it, then
    waited to make seal-a's, which B held: each waited for the other, and PostgreSQL failed one batch, which was
    tried again. Now the states are made or locked in one pass in ``device_id`` order: C waits for seal-a's holding
    nothing. What sets the scene: a transaction making seal-a's state that then fails, which B's first look waits
    for; D making seal-b's; E holding seal-b's (written: its transaction is held by the log's lock) while B and C
    come to it."""
    new, known = SimulatedSeal("seal-a", CASE_A), SimulatedSeal("seal-b", CASE_A)
    register(session_factory, new, known)
    first, second = (message(known.event_topic, known.event()) for _ in range(2))
    shared = [message(new.event_topic, new.event()), message(known.event_topic, known.event())]
    factory = make_session_factory(pg_engine)
    b, c, d, e = (Ingestor(factory, metrics=IngestMetrics(), snapshot_dir=tmp_path) for _ in range(4))

    with caplog.at_level(logging.INFO, logger="server.ingest"), pg_engine.connect() as making, factory() as pin:
        making.execute(
            text("INSERT INTO chain_state (device_id, max_seq, missing, updated_at) VALUES ('seal-a', 0, '[]', now())")
        )
        maker = making.scalar(text("SELECT pg_backend_pid()"))
        worker_b = Side(lambda: b.ingest(shared))
        wait_for_lock_waits(pg_engine, 1)  # B waits for seal-a's state (before: having found neither state)
        assert [r.outcome for r in d.ingest([first])] == [Outcome.STORED]  # seal-b's state is made
        lock_log(pin)
        worker_e = Side(lambda: e.ingest([second]))
        wait_for_lock_waits(pg_engine, 2)  # E holds seal-b's state and waits for the log
        making.rollback()
        assert wait_until(lambda: _blocked_by(pg_engine, maker) == 0 and lock_waits(pg_engine) == 2, 10)
        worker_c = Side(lambda: c.ingest(shared))  # B made seal-a's state and waits for seal-b's (E)
        wait_for_lock_waits(pg_engine, 3)  # C waits for seal-a's, B's (before: for seal-b's, to hold it next)
        pin.rollback()
        results = [worker_b.join(), worker_c.join(), worker_e.join()]

    assert failed_batches(caplog) == []
    [from_b, from_c, from_e] = ([r.outcome for r in batch] for batch in results)
    assert sorted([from_b, from_c]) == [[Outcome.DUPLICATE] * 2, [Outcome.STORED] * 2]  # whichever went first
    assert from_e == [Outcome.STORED]
    with session_factory() as session:
        stored = session.execute(select(Event.device_id, Event.seq).order_by(Event.device_id, Event.seq)).all()
        assert stored == [("seal-a", 1), ("seal-b", 1), ("seal-b", 2), ("seal-b", 3)]
        chains = session.execute(select(ChainState.device_id, ChainState.max_seq, ChainState.missing)).all()
        assert sorted(chains) == [("seal-a", 1, []), ("seal-b", 3, [])]
        assert session.scalar(select(func.count()).select_from(Alarm)) == 0
