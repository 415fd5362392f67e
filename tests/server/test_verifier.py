"""The verifier process: its answers (the decoded envelope and its signature's check, or the decoding's refusal) are
the ingest's own, in order, across chunks; and when it dies, stalls or cannot start, every event is still decoded
and checked (by the ingest's thread), the failure counted, and a new process started later. Real processes, real
Ed25519 (PyNaCl), real envelopes, nothing stubbed."""

from __future__ import annotations

import functools
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from seal_dev.broker import PrivateBroker
from seal_protocol import EventType, encode_envelope, new_envelope
from seal_protocol.signing import SigningKey, generate_signing_key, sign_envelope
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.ingest.ingestor import Ingestor
from server.ingest.mqtt import MqttIngest
from server.ingest.opened import Answer
from server.ingest.results import Outcome, Reason
from server.ingest.verifier import CHUNK, Checks, ProcessVerifier, Verifier, _SharedChecks
from server.ingest.verifier_pipe import read_frame
from server.ingest.verifier_process import BOOT, READY
from tests.agent.helpers import wait_until
from tests.server.helpers import CASE_A, SimulatedSeal, register
from tests.server.ingest_processes import stored_seqs
from tests.server.ingest_world import make_court
from tests.server.mqtt_helpers import seal_connection, server_mqtt_settings

REPO = Path(__file__).resolve().parents[2]
KEYS = [generate_signing_key() for _ in range(3)]


@functools.cache
def _event(n: int, signer: SigningKey | None) -> bytes:
    """The bytes of the n-th event of a seal, signed by ``signer`` (None: unsigned); the same bytes each time."""
    envelope = new_envelope(
        device_id="seal-a", case_no=CASE_A, seq=n + 1, type=EventType.HEARTBEAT, payload={"note": f"门口有人 {n}"}
    )
    return encode_envelope(envelope if signer is None else sign_envelope(envelope, signer))


def _job(n: int) -> tuple[SigningKey, bytes]:
    """The n-th event to open: good, forged (another key's signature), unsigned, or bytes that are no envelope."""
    key = KEYS[n % 3]
    kind = n % 7
    if kind == 3:
        return key, _event(n, KEYS[(n + 1) % 3])
    if kind == 5:
        return key, _event(n, None)
    if kind == 6:
        return key, b'{"device_id": "seal-a", ' + str(n).encode()
    return key, _event(n, key)


def _problems(answers: list[Answer]) -> list[str | None]:
    """Each answer's signature problem (None: good), or the decoding's refusal code."""
    return [answer[2] if len(answer) == 3 else f"refused: {answer[0]}" for answer in answers]


def _started(verifier: ProcessVerifier) -> int:
    """Start the verifier process and wait until it is ready (meanwhile batches are checked here); its pid."""
    deadline = time.monotonic() + 30
    while verifier.connected() is None:
        assert time.monotonic() < deadline, "the verifier process did not get ready"
        time.sleep(0.05)
    assert verifier.pid is not None
    return verifier.pid


def _answers(checks: Checks, count: int) -> list[Answer]:
    for n in range(count):
        key, data = _job(n)
        checks.add(key.verify_key, data)
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
        for count in (0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 7, 20 * CHUNK):  # answers: ≈ 1.6 MB
            expected = _answers(Verifier().checks(), count)
            assert _answers(verifier.checks(), count) == expected
        assert verifier.pid is not None and failures == []
        assert {None, "bad signature", "unsigned", "refused: invalid_json"} <= set(_problems(expected))  # every kind
    finally:
        verifier.close()
    assert verifier.pid is None


def test_a_dead_process_costs_a_local_check_not_an_answer() -> None:
    failures: list[int] = []
    verifier = ProcessVerifier(on_failure=lambda: failures.append(1), restart_after_s=3.0)
    try:
        pid = _started(verifier)
        checks = verifier.checks(ahead=True)
        key, data = _job(0)
        for _ in range(4 * CHUNK):  # four chunks sent (a batch opened ahead goes to the process whole) ...
            checks.add(key.verify_key, data)
        os.kill(pid, signal.SIGKILL)  # ... and the process gone before it answers them all (≈ 5 ms a chunk)
        checks.add(key.verify_key, _event(0, KEYS[1]))
        assert _problems(checks.results()) == [None] * (4 * CHUNK) + ["bad signature"]
        assert failures == [1] and verifier.pid is None
        assert _answers(verifier.checks(), CHUNK + 3) == _answers(Verifier().checks(), CHUNK + 3)  # local meanwhile
        assert verifier.pid is None
        time.sleep(3.1)
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
        assert _answers(verifier.checks(), 3 * CHUNK) == _answers(Verifier().checks(), 3 * CHUNK)
        assert failures == [1] and verifier.pid is None  # one timeout, then every check here: not one per chunk
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
        key, data = _job(0)  # a good signature
        for _ in range(4 * CHUNK):
            abandoned.add(key.verify_key, data)  # two chunks sent, answered "good", and never read
        abandoned.abandon()  # as a batch that fails does
        forged = _event(0, KEYS[2])
        checks = verifier.checks()
        for _ in range(3 * CHUNK):
            checks.add(key.verify_key, forged)
        assert _problems(checks.results()) == ["bad signature"] * (3 * CHUNK)
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
        forged_at = 5  # in the first chunk: the process's (the second and the rest are opened by the ingest's thread)
        payloads = [court.a.event(key=generate_signing_key() if n == forged_at else None) for n in range(3 * CHUNK + 2)]
        results = court.send(court.a, *payloads)
        assert verifier.pid is not None and verifier.answered == 2 * CHUNK  # the first and third chunks
    finally:
        court.ingestor.close()
    outcomes = [r.outcome for r in results]
    assert outcomes[forged_at] is Outcome.QUARANTINED and results[forged_at].reason is Reason.BAD_SIGNATURE
    assert outcomes.count(Outcome.STORED) == len(payloads) - 1
    forged_seq = forged_at + 2  # the first event sent alone was seq 1
    assert court.seqs("seal-a") == [seq for seq in range(1, len(payloads) + 2) if seq != forged_seq]


def test_a_stuck_process_does_not_hold_the_sends_of_a_large_batch() -> None:
    """A process that reads nothing more fills the pipe to it (1 MB: a chunk of the largest events is more): the
    ingest's send must give up after the timeout too, not block for good with the batch in hand (a stalled ingest)."""
    failures: list[int] = []
    verifier = ProcessVerifier(on_failure=lambda: failures.append(1))
    pid = None
    try:
        pid = _started(verifier)
        verifier.answer_timeout_s = 0.5
        os.kill(pid, signal.SIGSTOP)
        key = KEYS[0]
        data = encode_envelope(
            sign_envelope(
                new_envelope(
                    device_id="seal-a", case_no=CASE_A, seq=1, type=EventType.HEARTBEAT, payload={"x": "门" * 20_000}
                ),
                key,
            )
        )  # ≈ 60 KB: a chunk of them ≈ 4 MB
        answers: list[list[Answer]] = []

        def batch(checks: Checks) -> list[Answer]:
            for _ in range(2 * CHUNK):
                checks.add(key.verify_key, data)
            return checks.results()

        thread = threading.Thread(target=lambda: answers.append(batch(verifier.checks())), daemon=True)
        thread.start()
        thread.join(10)
        assert not thread.is_alive(), "the ingest's thread is stuck sending to a stuck verifier process"
        assert answers == [batch(Verifier().checks())] and _problems(answers[0]) == [None] * (2 * CHUNK)
        assert failures == [1] and verifier.pid is None
    finally:
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)  # also ends the thread's send, should it be blocked
            except ProcessLookupError:
                pass
        verifier.close()


def _lone_process(*, hello_read: bool) -> subprocess.CompletedProcess[bytes]:
    """A verifier process whose ingest is gone: nobody reads its hello (``hello_read`` False), or the answer to the
    chunk of checks it was sent. What it says on its way out, and how it ends."""
    to_read, to_write = os.pipe()
    from_read, from_write = os.pipe()
    command = [sys.executable, "-I", "-c", BOOT, json.dumps(sys.path), str(to_read), str(from_write)]  # as start
    if not hello_read:
        os.close(from_read)
    process = subprocess.Popen(command, pass_fds=(to_read, from_write), stderr=subprocess.PIPE, cwd=REPO)
    os.close(to_read)
    os.close(from_write)
    if hello_read:
        assert pickle.loads(read_frame(from_read) or b"") == (0, READY)
        os.close(from_read)
    key, data = _job(0)
    chunk = pickle.dumps((1, [(bytes(key.verify_key), data)] * CHUNK))
    try:
        os.write(to_write, struct.pack("!I", len(chunk)) + chunk)
    except BrokenPipeError:  # it ended already
        pass
    os.close(to_write)
    _, stderr = process.communicate(timeout=30)
    return subprocess.CompletedProcess(command, process.returncode, b"", stderr)


def test_a_process_whose_ingest_is_gone_ends_quietly() -> None:
    """The ingest killed (or stopped) while its verifier process starts or answers: the process ends, without a
    traceback in the court's log for an error that is none."""
    for hello_read in (False, True):
        ended = _lone_process(hello_read=hello_read)
        assert (ended.returncode, ended.stderr.decode()) == (0, ""), hello_read


def test_the_process_runs_the_ingests_own_code_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server started in a directory where someone else can write (/tmp, a shared home) must not run a
    ``server/ingest/verifier_process.py`` planted there: it would answer every forged signature "good"."""
    planted = tmp_path / "server" / "ingest"
    planted.mkdir(parents=True)
    for package in (tmp_path / "server", planted):
        (package / "__init__.py").write_text("")
    ran = tmp_path / "planted-code-ran"
    (planted / "verifier_process.py").write_text(  # answers every event "decoded, signature good"
        "import pickle, struct, sys\n"
        "from seal_protocol import decode_signed_envelope\n"
        f"open({str(ran)!r}, 'w').close()\n"
        "send = open(int(sys.argv[2]), 'wb')\n"
        "def answer(data):\n"
        "    send.write(struct.pack('!I', len(data)) + data)\n"
        "    send.flush()\n"
        "answer(pickle.dumps((0, 'ready')))\n"
        "with open(int(sys.argv[1]), 'rb', buffering=0) as receive:\n"
        "    while header := receive.read(4):\n"
        "        number, jobs = pickle.loads(receive.read(struct.unpack('!I', header)[0]))\n"
        "        answer(pickle.dumps((number, [(*decode_signed_envelope(data), None) for _, data in jobs])))\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    verifier = ProcessVerifier()
    try:
        _started(verifier)
        key, _ = _job(0)
        forged = _event(0, KEYS[1])
        checks = verifier.checks()
        for _ in range(2 * CHUNK):
            checks.add(key.verify_key, forged)
        assert _problems(checks.results()) == ["bad signature"] * (2 * CHUNK)
    finally:
        verifier.close()
    assert not ran.exists()


def test_the_signals_that_stop_the_ingest_do_not_end_the_process() -> None:
    """A Ctrl-C reaches every process of the terminal's group, systemd's stop every process of the unit, at once; the
    verifier process must not end from them (a failure counted, a traceback during its start) but when the ingest,
    having finished its batch, closes the pipe. Here they come as it starts, then in the middle of a batch."""
    failures: list[int] = []
    verifier = ProcessVerifier(on_failure=lambda: failures.append(1))
    try:
        assert verifier.connected() is None  # started now: it is importing its modules
        pid = verifier.pid
        assert pid is not None
        for stop in (signal.SIGINT, signal.SIGTERM):
            os.kill(pid, stop)
        assert _started(verifier) == pid
        checks = verifier.checks()
        for n in range(2 * CHUNK):
            key, data = _job(n)
            checks.add(key.verify_key, data)
        for stop in (signal.SIGINT, signal.SIGTERM):
            os.kill(pid, stop)
        for n in range(2 * CHUNK, 4 * CHUNK + 3):
            key, data = _job(n)
            checks.add(key.verify_key, data)
        assert checks.results() == _answers(Verifier().checks(), 4 * CHUNK + 3)
        assert failures == [] and verifier.pid == pid
    finally:
        verifier.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # ended (and reaped) by the close


def test_closed_under_a_batch_in_hand_the_batch_checks_the_rest_itself() -> None:
    """The ingest's stop may close the verifier while its worker is still in a batch (a worker that did not stop in
    time): that batch's answers are all still right, no failure is counted, and no process is started again."""
    failures: list[int] = []
    verifier = ProcessVerifier(on_failure=lambda: failures.append(1), restart_after_s=0.0)
    _started(verifier)
    checks = verifier.checks()
    for n in range(2 * CHUNK):  # two chunks sent to the process ...
        key, data = _job(n)
        checks.add(key.verify_key, data)
    pipe, process = checks._connection, verifier._process
    assert pipe is not None and process is not None
    verifier.close()  # ... which is gone before it answered them
    # The pipe stays the batch's (its thread may be in the middle of a read or a write of it); the process ends.
    assert not pipe.closed and process.poll() is not None
    for n in range(2 * CHUNK, 4 * CHUNK + 3):
        key, data = _job(n)
        checks.add(key.verify_key, data)
    assert checks.results() == _answers(Verifier().checks(), 4 * CHUNK + 3)
    assert _answers(verifier.checks(), 3 * CHUNK) == _answers(Verifier().checks(), 3 * CHUNK)
    assert failures == [] and verifier.pid is None


def test_a_batch_that_begins_as_the_verifier_closes_takes_no_pipe_and_starts_no_process() -> None:
    """The stop's thread closes the verifier between the ingest's ``checks()`` and its batch taking the pipe: the
    batch is refused the pipe (which the close may be closing) and makes every check itself."""
    failures: list[int] = []
    verifier = ProcessVerifier(on_failure=lambda: failures.append(1), restart_after_s=0.0)
    _started(verifier)
    verifier.close()
    checks = _SharedChecks(verifier)  # as made by checks() just before the close
    for n in range(2 * CHUNK + 1):
        key, data = _job(n)
        checks.add(key.verify_key, data)
    assert checks.results() == _answers(Verifier().checks(), 2 * CHUNK + 1)
    assert failures == [] and verifier.pid is None


def _stuck(ingest: MqttIngest, session_factory: SessionFactory, published: int) -> bool:
    """All ``published`` events are come, at least CHUNK of them not stored and none stored for longer than the
    longest linger and a batch's own check: the worker is in a batch it is waiting for answers to."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        unstored = ingest.progress().unstored
        if unstored >= CHUNK and len(stored_seqs(session_factory)) + unstored == published:
            time.sleep(2.5)
            if ingest.progress().unstored == unstored:
                return True
        time.sleep(0.05)
    return False


def test_a_stop_that_gives_up_on_a_stuck_worker_still_ends_the_process(
    broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``MqttIngest.stop`` waits so long for the worker's batch; a worker still in it (here: waiting for a stuck
    verifier process) must not keep the process running. The stop ends it; the batch, then checked by the worker
    itself, is stored, with no failure counted."""
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    failures: list[int] = []
    verifier = ProcessVerifier(on_failure=lambda: failures.append(1), answer_timeout_s=60.0)
    ingestor = Ingestor(
        session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots", verifier=verifier
    )
    # The stuck batch must reach the process: a batch of fewer than CHUNK events is checked by the worker itself.
    # The longest linger the configuration allows lets all 3 * CHUNK events arrive before the batch is taken.
    settings = server_mqtt_settings(broker, tmp_path).model_copy(
        update={"batch_size": 3 * CHUNK, "batch_linger_ms": 1000}
    )
    ingest = MqttIngest(settings, ingestor)
    pid = _started(verifier)
    try:
        ingest.start()
        assert ingest.wait_subscribed(30), "the ingest did not subscribe"
        with seal_connection(broker, seal.device_id) as conn:
            conn.client.publish(seal.event_topic, seal.event(), qos=1).wait_for_publish(30)
            assert wait_until(lambda: len(stored_seqs(session_factory)) == 1, 30)  # the seal's key is known from now on
            os.kill(pid, signal.SIGSTOP)
            for info in [conn.client.publish(seal.event_topic, seal.event(), qos=1) for _ in range(3 * CHUNK)]:
                info.wait_for_publish(30)
            # On a loaded machine the linger may end before all have come: a first batch of fewer than CHUNK is then
            # checked and stored by the worker itself, and the next one, the rest, is the stuck one.
            assert _stuck(ingest, session_factory, 1 + 3 * CHUNK), "no batch stuck with the verifier process"
            ingest.stop(timeout=0.5)
        assert "ingest worker did not stop within 0.5 s" in caplog.text  # it was in its batch, waiting for answers
        assert verifier.pid is None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # ended (and reaped) by the stop
        assert wait_until(lambda: len(stored_seqs(session_factory)) == 1 + 3 * CHUNK, 30)
        assert failures == []
    finally:
        ingest.stop()
        verifier.close()
