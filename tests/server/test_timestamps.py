"""RFC 3161 time stamps of the log's checkpoints, from a real ``openssl ts`` TSA over HTTP (seal_dev.tsa): each
signed checkpoint gets a token over its note's bytes that verifies offline and is kept with the chain; a TSA that is
down or answers wrongly holds no checkpoint back, costs a log line and a metric, and is asked again later; the
routes serve the token and its chain."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from seal_dev.tsa import LocalTsa, TsaPki, make_tsa_pki
from seal_verify.timestamp import verify_timestamp
from server.app import create_app, log_workers
from server.config import EvidenceSettings
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.errors import NotFound
from server.evidence import log
from server.evidence.checkpointer import Checkpointer
from server.evidence.checkpoints import LogKey
from server.evidence.errors import TimestampFailed
from server.evidence.models import LogCheckpoint, LogTimestamp
from server.evidence.timestamps import STAMPS_PER_ROUND, Timestamper, stamp_checkpoint, timestamp_of
from server.evidence.tsa import TsaClient
from tests.server.auth_helpers import LOG_ORIGIN, make_settings
from tests.server.helpers import CASE_A, SimulatedSeal, register
from tests.server.test_merkle_log import ingest


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TsaPki:
    return make_tsa_pki(tmp_path_factory.mktemp("tsa"))


@pytest.fixture
def tsa(pki: TsaPki) -> Iterator[LocalTsa]:
    with LocalTsa(pki) as server:
        yield server


@pytest.fixture
def seal(session_factory: SessionFactory) -> SimulatedSeal:
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    return seal


@pytest.fixture
def base(session_factory: SessionFactory, seal: SimulatedSeal) -> int:
    """The leaves before the seal's first event: the audit entries of its registration (docs/audit.md)."""
    with session_factory() as session:
        return log.tree_size(session)


def checkpointer(tmp_path: Path, session_factory: SessionFactory) -> Checkpointer:
    return Checkpointer(session_factory, LogKey(tmp_path / "log.key", LOG_ORIGIN), interval_s=60)


def kept(session_factory: SessionFactory) -> dict[int, LogTimestamp]:
    """The kept time stamps by their checkpoint's tree size."""
    with session_factory() as session:
        query = select(LogCheckpoint.tree_size, LogTimestamp).join(LogCheckpoint)
        return {row.tree_size: row.LogTimestamp for row in session.execute(query)}


def test_each_checkpoint_gets_a_token_that_verifies_offline(
    session_factory: SessionFactory, tmp_path: Path, seal: SimulatedSeal, tsa: LocalTsa, pki: TsaPki, base: int
) -> None:
    metrics = IngestMetrics()
    client = TsaClient(tsa.url, roots_file=pki.ca_pem, timeout_s=5)
    stamper = Timestamper(session_factory, client, metrics=metrics, interval_s=60)
    signer = checkpointer(tmp_path, session_factory)
    ingest(session_factory, tmp_path, seal, 3)
    assert signer.run_once() == base + 3
    ingest(session_factory, tmp_path, seal, 2)
    assert signer.run_once() == base + 5
    assert stamper.run_once() == 2
    assert stamper.run_once() == 0  # nothing left to stamp: the TSA is not asked again
    assert tsa.queries == 2
    assert metrics.snapshot().timestamps == {"stamped": 2}

    stamps = kept(session_factory)
    assert sorted(stamps) == [base + 3, base + 5]
    with session_factory() as session:
        for checkpoint in session.scalars(select(LogCheckpoint)):
            token, chain = timestamp_of(session, checkpoint) or (b"", b"")
            verdict = verify_timestamp(token, checkpoint.note.encode("utf-8"), chain, pki.ca_pem.read_bytes())
            assert verdict.ok, verdict.reason
            assert verdict.pinned and stamps[checkpoint.tree_size].pinned
            assert stamps[checkpoint.tree_size].gen_time == verdict.gen_time
            assert stamps[checkpoint.tree_size].tsa_subject == "O=Seal Tests,CN=Seal Test TSA"
            # The chain kept is enough without pinning too, and it holds the TSA's root.
            assert verify_timestamp(token, checkpoint.note.encode(), chain, None).ok
            assert chain.count(b"BEGIN CERTIFICATE") == 2
            # It is the note's bytes that are stamped, not another checkpoint's.
            other = session.scalars(select(LogCheckpoint).where(LogCheckpoint.id != checkpoint.id)).one()
            assert not verify_timestamp(token, other.note.encode(), chain, pki.ca_pem.read_bytes()).ok


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("down", "unreachable"),
        ("http-500", "http_error"),
        ("garbage", "malformed"),
        ("refuse", "refused"),
        ("wrong-root", "unverified"),
    ],
)
def test_a_failing_tsa_holds_no_checkpoint_back_and_is_asked_again(
    session_factory: SessionFactory,
    tmp_path: Path,
    seal: SimulatedSeal,
    base: int,
    pki: TsaPki,
    fault: str,
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = make_tsa_pki(tmp_path / "other-ca")
    metrics = IngestMetrics()
    with LocalTsa(pki) as tsa:
        url = tsa.url
        roots = other.ca_pem if fault == "wrong-root" else pki.ca_pem
        stamper = Timestamper(
            session_factory, TsaClient(url, roots_file=roots, timeout_s=10), metrics=metrics, interval_s=60
        )
        if fault in ("http-500", "garbage", "refuse"):
            tsa.fault = fault  # type: ignore[assignment]
        if fault == "down":
            tsa.stop()
        ingest(session_factory, tmp_path, seal, 2)
        signer = checkpointer(tmp_path, session_factory)
        with caplog.at_level(logging.WARNING, logger="server.evidence.timestamps"):
            assert signer.run_once() == base + 2  # the checkpoint is made and kept whatever the TSA does
            assert stamper.run_once() == 0
            assert stamper.run_once() == 0
        assert metrics.snapshot().timestamps == {kind: 2}
        assert kept(session_factory) == {}
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1  # once while it keeps failing the same way, not every round
        assert f"tree size {base + 2}" in warnings[0].getMessage() and "asked again" in warnings[0].getMessage()

    # The TSA answers again (a new one at the same place, trusted): the next round stamps the waiting checkpoint.
    with LocalTsa(pki) as fixed:
        stamper = Timestamper(
            session_factory, TsaClient(fixed.url, roots_file=pki.ca_pem), metrics=metrics, interval_s=60
        )
        ingest(session_factory, tmp_path, seal, 1)
        assert signer.run_once() == base + 3
        assert stamper.run_once() == 2
    assert sorted(kept(session_factory)) == [base + 2, base + 3]
    assert metrics.snapshot().timestamps == {kind: 2, "stamped": 2}


def test_the_reason_is_in_the_log_line(
    session_factory: SessionFactory, tmp_path: Path, seal: SimulatedSeal, tsa: LocalTsa, pki: TsaPki,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    tsa.fault = "http-500"
    stamper = Timestamper(session_factory, TsaClient(tsa.url), metrics=IngestMetrics(), interval_s=60)
    ingest(session_factory, tmp_path, seal, 1)
    checkpointer(tmp_path, session_factory).run_once()
    with caplog.at_level(logging.WARNING, logger="server.evidence.timestamps"):
        stamper.run_once()
    assert "HTTP 500" in caplog.text and tsa.url in caplog.text


def test_a_backlog_is_stamped_newest_first_a_few_per_round(
    session_factory: SessionFactory, tmp_path: Path, seal: SimulatedSeal, tsa: LocalTsa, base: int
) -> None:
    signer = checkpointer(tmp_path, session_factory)
    for _ in range(STAMPS_PER_ROUND + 2):
        ingest(session_factory, tmp_path, seal, 1)
        signer.run_once()
    stamper = Timestamper(session_factory, TsaClient(tsa.url), metrics=IngestMetrics(), interval_s=60)
    assert stamper.run_once() == STAMPS_PER_ROUND
    assert sorted(kept(session_factory)) == list(range(base + 3, base + STAMPS_PER_ROUND + 3))
    assert not any(stamp.pinned for stamp in kept(session_factory).values())  # no tsa_ca_file: self-consistent only
    assert stamper.run_once() == 2
    assert len(kept(session_factory)) == STAMPS_PER_ROUND + 2


def test_a_fresh_checkpoint_is_stamped_at_once_for_the_export(
    session_factory: SessionFactory, tmp_path: Path, seal: SimulatedSeal, tsa: LocalTsa, pki: TsaPki, base: int
) -> None:
    ingest(session_factory, tmp_path, seal, 4)
    key = LogKey(tmp_path / "log.key", LOG_ORIGIN)
    client = TsaClient(tsa.url, roots_file=pki.ca_pem)
    with session_factory() as session:
        checkpoint = log.make_checkpoint(session, key)
        assert checkpoint is not None
        session.commit()
        note = checkpoint.note.encode()
        assert timestamp_of(session, checkpoint) is None
    token, chain = stamp_checkpoint(session_factory, base + 4, client)
    assert verify_timestamp(token, note, chain, pki.ca_pem.read_bytes()).ok
    assert stamp_checkpoint(session_factory, base + 4, client) == (token, chain)  # kept: the TSA is not asked twice
    assert tsa.queries == 1
    with session_factory() as session:
        assert timestamp_of(session, session.scalars(select(LogCheckpoint)).one()) == (token, chain)
    with pytest.raises(NotFound):
        stamp_checkpoint(session_factory, base + 5, client)

    tsa.fault = "garbage"
    ingest(session_factory, tmp_path, seal, 1)
    with session_factory() as session:
        assert log.make_checkpoint(session, key) is not None
        session.commit()
    with pytest.raises(TimestampFailed) as failed:
        stamp_checkpoint(session_factory, base + 5, client)
    assert failed.value.kind == "malformed"
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(LogTimestamp)) == 1


def test_the_export_and_the_stamper_asking_at_once_keep_one_token(
    session_factory: SessionFactory, tmp_path: Path, seal: SimulatedSeal, tsa: LocalTsa, base: int
) -> None:
    ingest(session_factory, tmp_path, seal, 2)
    checkpointer(tmp_path, session_factory).run_once()
    client = TsaClient(tsa.url)
    stamper = Timestamper(session_factory, client, metrics=IngestMetrics(), interval_s=60)
    tsa.before_reply = stamper.run_once  # while the export waits for its token, the stamper keeps one
    token, chain = stamp_checkpoint(session_factory, base + 2, client)
    assert tsa.queries == 2
    with session_factory() as session:
        rows = session.scalars(select(LogTimestamp)).all()
    assert len(rows) == 1
    assert (rows[0].response, rows[0].chain_pem.encode()) == (token, chain)  # the stamper's, not the lost one


def test_an_unreadable_roots_file_is_a_failure_not_an_unpinned_token(
    session_factory: SessionFactory, tmp_path: Path, seal: SimulatedSeal, tsa: LocalTsa
) -> None:
    metrics = IngestMetrics()
    client = TsaClient(tsa.url, roots_file=tmp_path / "missing.pem")
    ingest(session_factory, tmp_path, seal, 1)
    checkpointer(tmp_path, session_factory).run_once()
    assert Timestamper(session_factory, client, metrics=metrics, interval_s=60).run_once() == 0
    assert metrics.snapshot().timestamps == {"roots": 1}
    assert tsa.queries == 0 and kept(session_factory) == {}


def test_the_running_workers_stamp_what_the_checkpointer_signs(
    database_url: str, session_factory: SessionFactory, tmp_path: Path, seal: SimulatedSeal, tsa: LocalTsa,
    pki: TsaPki, base: int,
) -> None:  # fmt: skip
    settings = make_settings(database_url, tmp_path)
    tsa_settings = {"tsa_url": tsa.url, "tsa_ca_file": pki.ca_pem, "checkpoint_interval_s": 0.2}
    evidence = EvidenceSettings(**{**settings.evidence.model_dump(), **tsa_settings})
    settings = settings.model_copy(update={"evidence": evidence})
    workers = log_workers(settings, session_factory, LogKey(tmp_path / "log.key", LOG_ORIGIN), IngestMetrics())
    assert [type(worker).__name__ for worker in workers] == ["Checkpointer", "Timestamper"]
    ingest(session_factory, tmp_path, seal, 2)
    for worker in workers:
        worker.start()
    try:
        deadline = time.monotonic() + 30
        while base + 2 not in kept(session_factory) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        for worker in workers:
            worker.stop()
    assert base + 2 in kept(session_factory)

    without = log_workers(
        make_settings(database_url, tmp_path), session_factory, LogKey(None, LOG_ORIGIN), IngestMetrics()
    )
    assert [type(worker).__name__ for worker in without] == ["Checkpointer"]

    with TestClient(create_app(settings, with_ingest=False)) as api:
        answer = api.get("/api/log/checkpoint/timestamp")  # public, as the checkpoint is
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/timestamp-reply"
        assert answer.headers["x-checkpoint-size"] == str(base + 2)
        chain = api.get("/api/log/checkpoint/timestamp/chain", params={"size": base + 2})
        assert chain.headers["content-type"].startswith("application/pem-certificate-chain")
        note = api.get("/api/log/checkpoint").text
        assert verify_timestamp(answer.content, note.encode(), chain.content, pki.ca_pem.read_bytes()).ok
        assert api.get("/api/log/checkpoint/timestamp", params={"size": base + 2}).content == answer.content
        assert api.get("/api/log/checkpoint/timestamp", params={"size": 99}).status_code == 404
        assert api.get("/api/log/checkpoint/timestamp", params={"size": 0}).status_code == 422


def test_a_tsa_that_answers_a_byte_at_a_time_is_given_up_within_the_timeout(tsa: LocalTsa, pki: TsaPki) -> None:
    """``tsa_timeout_s`` bounds the whole exchange, not each read: a TSA trickling its (right) answer would otherwise
    hold the time stamper's round, or an export waiting for its checkpoint's token, for as long as it likes."""
    client = TsaClient(tsa.url, roots_file=pki.ca_pem, timeout_s=5)  # the local TSA runs openssl for each answer
    assert client.stamp(b"a note\n").verdict.ok  # it answers in time when it does not trickle
    tsa.fault = "trickle"
    started = time.monotonic()
    with pytest.raises(TimestampFailed) as failed:
        client.stamp(b"a note\n")
    # Not a speed figure: a TSA trickling its answer held the round for as long as it trickled (the test was killed at
    # 120 s) before the whole exchange was bounded; ten times the timeout tells the two apart on a loaded machine.
    assert time.monotonic() - started < 50
    assert failed.value.kind == "unreachable" and "within 5 s" in str(failed.value)
