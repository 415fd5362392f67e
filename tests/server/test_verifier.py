"""The verifier process: its answers are the ingest's own, in order, across chunks; and when it dies, stalls or
cannot start, every signature is still checked (by the ingest's thread), the failure counted, and a new process
started later. Real processes, real Ed25519 (PyNaCl), nothing stubbed."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from seal_protocol.signing import SigningKey, generate_signing_key
from server.core.db import SessionFactory
from server.ingest.results import Outcome, Reason
from server.ingest.verifier import CHUNK, Checks, ProcessVerifier, Verifier
from tests.server.ingest_world import make_court

KEYS = [generate_signing_key() for _ in range(3)]


def _job(n: int) -> tuple[SigningKey, bytes, str | None]:
    """The n-th check: good, forged (another key's signature), unsigned, or a signature that is not hex."""
    key = KEYS[n % 3]
    data = f"event {n} 门口有人".encode()
    kind = n % 7
    if kind == 3:
        return key, data, KEYS[(n + 1) % 3].sign(data).signature.hex()
    if kind == 5:
        return key, data, None
    if kind == 6:
        return key, data, "zz" * 64
    return key, data, key.sign(data).signature.hex()


def _started(verifier: ProcessVerifier) -> int:
    """Start the verifier process and wait until it is ready (meanwhile batches are checked here); its pid."""
    deadline = time.monotonic() + 30
    while verifier.connected() is None:
        assert time.monotonic() < deadline, "the verifier process did not get ready"
        time.sleep(0.05)
    assert verifier.pid is not None
    return verifier.pid


def _answers(checks: Checks, count: int) -> list[str | None]:
    for n in range(count):
        key, data, sig = _job(n)
        checks.add(key.verify_key, data, sig)
    return checks.results()


def test_the_process_answers_as_the_ingest_would_across_chunks() -> None:
    failures: list[int] = []
    verifier = ProcessVerifier(on_failure=lambda: failures.append(1))
    try:
        _answers(verifier.checks(), CHUNK - 1)
        assert verifier.pid is None  # a batch smaller than a chunk (a low rate) is checked here and starts nothing
        assert _answers(verifier.checks(), CHUNK + 1) == _answers(Verifier().checks(), CHUNK + 1)  # while it starts
        assert verifier.pid is not None
        _started(verifier)
        for count in (0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 7):
            expected = _answers(Verifier().checks(), count)
            assert _answers(verifier.checks(), count) == expected
        assert verifier.pid is not None and failures == []
        assert {None, "bad signature", "unsigned"} <= set(expected)  # every kind of answer was asked
    finally:
        verifier.close()
    assert verifier.pid is None


def test_a_dead_process_costs_a_local_check_not_an_answer() -> None:
    failures: list[int] = []
    verifier = ProcessVerifier(on_failure=lambda: failures.append(1), restart_after_s=0.5)
    try:
        pid = _started(verifier)
        checks = verifier.checks()
        key, data, sig = _job(0)
        for _ in range(2 * CHUNK):  # two chunks sent ...
            checks.add(key.verify_key, data, sig)
        os.kill(pid, signal.SIGKILL)  # ... and the process gone before it answers them all
        forged = KEYS[1].sign(data).signature.hex()
        checks.add(key.verify_key, data, forged)
        assert checks.results() == [None] * (2 * CHUNK) + ["bad signature"]
        assert failures == [1] and verifier.pid is None
        assert _answers(verifier.checks(), CHUNK + 3) == _answers(Verifier().checks(), CHUNK + 3)  # local meanwhile
        assert verifier.pid is None
        time.sleep(0.6)
        assert _answers(verifier.checks(), CHUNK + 3) == _answers(Verifier().checks(), CHUNK + 3)
        assert _started(verifier) != pid  # a new process, after the pause
        assert _answers(verifier.checks(), 2 * CHUNK + 3) == _answers(Verifier().checks(), 2 * CHUNK + 3)
    finally:
        verifier.close()


def test_a_stuck_process_is_given_up_after_the_timeout() -> None:
    failures: list[int] = []
    verifier = ProcessVerifier(on_failure=lambda: failures.append(1))
    pid = None
    try:
        pid = _started(verifier)  # (a process's start may take longer than the timeout below)
        verifier.answer_timeout_s = 0.5
        os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        assert _answers(verifier.checks(), 3 * CHUNK) == _answers(Verifier().checks(), 3 * CHUNK)
        assert time.monotonic() - started < 5  # one timeout, then every check here: not one timeout per chunk
        assert failures == [1] and verifier.pid is None
    finally:
        verifier.close()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_the_answers_of_an_abandoned_batch_are_never_taken_for_the_next() -> None:
    """A batch that fails after its checks were sent never reads their answers: the next batch must not take them
    for its own (good answers given to forged signatures)."""
    failures: list[int] = []
    verifier = ProcessVerifier(on_failure=lambda: failures.append(1))
    try:
        _started(verifier)
        abandoned = verifier.checks()
        key, data, sig = _job(0)  # a good signature
        for _ in range(3 * CHUNK):
            abandoned.add(key.verify_key, data, sig)  # three chunks answered "good", and never read
        forged = KEYS[2].sign(data).signature.hex()
        checks = verifier.checks()
        for _ in range(3 * CHUNK):
            checks.add(key.verify_key, data, forged)
        assert checks.results() == ["bad signature"] * (3 * CHUNK)
        assert failures == [] and verifier.pid is not None  # the same process, still trusted
    finally:
        verifier.close()


def test_an_ingest_batch_checked_by_the_process_stores_and_refuses_as_the_thread_would(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    """Three chunks of one seal's events, one of them signed with another key: the forged one is refused with the
    reason the ingest's own check gives, every other event is stored, and the process did the checking."""
    court = make_court(session_factory, tmp_path)
    verifier = ProcessVerifier()
    court.ingestor.verifier = verifier
    try:
        court.send(court.a, court.a.event())  # the seal's key is now known to the ingest: later checks go out
        _started(verifier)
        forged_at = CHUNK + 5  # in the second chunk
        payloads = [court.a.event(key=generate_signing_key() if n == forged_at else None) for n in range(3 * CHUNK + 2)]
        results = court.send(court.a, *payloads)
        assert verifier.pid is not None
    finally:
        court.ingestor.close()
    outcomes = [r.outcome for r in results]
    assert outcomes[forged_at] is Outcome.QUARANTINED and results[forged_at].reason is Reason.BAD_SIGNATURE
    assert outcomes.count(Outcome.STORED) == len(payloads) - 1
    forged_seq = forged_at + 2  # the first event sent alone was seq 1
    assert court.seqs("seal-a") == [seq for seq in range(1, len(payloads) + 2) if seq != forged_seq]
