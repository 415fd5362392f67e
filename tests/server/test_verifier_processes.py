"""The verifier process under the real commands: ``seal-server ingest`` (one worker, or several) and ``seal-server
run`` start one per ingest with the first large batch, and it ends with its ingest, whether that is stopped (SIGTERM,
SIGINT) or killed (SIGKILL) — no process left behind, no traceback, no failure logged. Also when the stop reaches
every process at once, as a Ctrl-C reaches the terminal's process group and systemd's stop the unit's control group:
the verifier process ignores it, goes on checking until its ingest has finished, then ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from seal_dev.broker import PrivateBroker, free_port
from server.core.db import SessionFactory
from tests.server.helpers import CASE_A, SimulatedSeal, register
from tests.server.ingest_processes import (
    REPO,
    WAIT_S,
    ProcessOutput,
    child_pids,
    cmdline_of,
    first_event_stored,
    ingest_config,
    stored_seqs,
)
from tests.server.mqtt_helpers import SealConnection, seal_connection

ROUNDS, EVENTS = 3, 300  # batches of up to 300 events: several chunks each for the verifier process
#: How long an ingest's batch waits for more messages (the most the configuration allows): one wait per batch, so
#: that a round of EVENTS gives each worker a batch of several chunks (the verifier process starts with the first)
#: even on a slow machine.
LINGER_MS = 1000


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        children = child_pids(todo.pop())
        found += children
        todo += children
    return found


def _verifiers(pid: int) -> list[int]:
    """The verifier processes among ``pid``'s descendants."""
    return [child for child in _descendants(pid) if b"server.ingest.verifier" in cmdline_of(child)]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] not in "ZX"
    except OSError:
        return False


class _Court:
    """A real ``seal-server`` command in a process group of its own (as a shell or systemd starts one), and a seal
    whose key it knows (the first event stored), connected to publish more."""

    def __init__(
        self, process: subprocess.Popen[bytes], output: ProcessOutput, seal: SimulatedSeal, conn: SealConnection
    ) -> None:
        self.process, self.output = process, output
        self._seal, self._conn = seal, conn
        self.published = 1
        self.seen: list[int] = []  # every process it started, to be checked ended (or killed by the test)

    def publish(self) -> None:
        """Publish a round of events (one batch for an ingest lingering ``LINGER_MS``)."""
        for info in [
            self._conn.client.publish(self._seal.event_topic, self._seal.event(), qos=1) for _ in range(EVENTS)
        ]:
            info.wait_for_publish(WAIT_S)
        self.published += EVENTS

    def wait_stored(self, session_factory: SessionFactory) -> None:
        deadline = time.monotonic() + WAIT_S + 60
        while len(stored_seqs(session_factory)) < self.published:
            assert time.monotonic() < deadline, f"{len(stored_seqs(session_factory))} of {self.published} stored"
            time.sleep(0.05)

    def verifiers(self) -> list[int]:
        """Its verifier processes now."""
        self.seen = sorted(set(self.seen) | set(_descendants(self.process.pid)))
        return _verifiers(self.process.pid)

    def start_verifiers(self, session_factory: SessionFactory, count: int = 1) -> list[int]:
        """Rounds of events until the ``count`` verifier processes (one per ingest, started with its first large
        batch) are ready; their pids."""
        verifiers: list[int] = []
        for _ in range(ROUNDS * 3):
            self.publish()
            time.sleep(1.0)  # the first large batch starts the process (ready in about a second)
            self.wait_stored(session_factory)
            verifiers = self.verifiers()
            if len(verifiers) >= count and self.published >= ROUNDS * EVENTS:
                break
        assert len(verifiers) == count, self.output.text()
        return verifiers

    def stop(self, stop: signal.Signals, *, everyone: bool = False) -> str:
        """Send ``stop`` to the command (``everyone``: to every process of its group at once); what it wrote once
        it and every process it started have ended."""
        self.verifiers()
        if everyone:
            os.killpg(self.process.pid, stop)
        else:
            self.process.send_signal(stop)
        self.process.wait(60)
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in self.seen):
            assert time.monotonic() < deadline, f"left running: {[pid for pid in self.seen if _alive(pid)]}"
            time.sleep(0.05)
        return self.output.text()


@contextmanager
def _court(
    command: list[str],
    ingests: int,
    broker: PrivateBroker,
    database_url: str,
    session_factory: SessionFactory,
    tmp_path: Path,
) -> Iterator[_Court]:
    """``seal-server <command>`` with ``ingests`` ingests connected, batches of up to 500 events lingering
    ``LINGER_MS``."""
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    config = ingest_config(tmp_path / "server.toml", database_url, broker, group="court-ingest")
    text = config.read_text().replace("batch_size = 5\n", f"batch_size = 500\nbatch_linger_ms = {LINGER_MS}\n")
    config.write_text(text + f'[http]\nhost = "127.0.0.1"\nport = {free_port()}\n')
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", *command, "--config", str(config)],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    output = ProcessOutput(process)
    court = None
    try:
        deadline = time.monotonic() + WAIT_S
        while output.count("connected to the broker (session present") < ingests:
            assert time.monotonic() < deadline and process.poll() is None, "".join(output.lines)
            time.sleep(0.05)
        with seal_connection(broker, seal.device_id) as conn:
            court = _Court(process, output, seal, conn)
            # Its key is known once its first event is stored: its events are checked from then on.
            each_s = LINGER_MS / 1000 + 5
            assert first_event_stored(conn, seal, session_factory, each_s=each_s, within_s=WAIT_S + 60), output.text()
            yield court
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in court.seen if court is not None else []:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _assert_clean(text: str) -> None:
    assert "Traceback" not in text and "verifier process failed" not in text, text


@pytest.mark.parametrize(
    ("command", "ingests", "stop", "everyone"),
    [
        (["ingest", "--workers", "1"], 1, signal.SIGKILL, False),
        (["ingest", "--workers", "2"], 2, signal.SIGTERM, False),
        (["run"], 1, signal.SIGINT, False),
        (["ingest", "--workers", "2"], 2, signal.SIGTERM, True),
        (["run"], 1, signal.SIGINT, True),
    ],
    ids=["ingest-killed", "ingest-2-workers-stopped", "run-stopped", "systemd-stops-2-workers", "ctrl-c-stops-run"],
)
@pytest.mark.timeout(300)  # rounds of batches, each lingering LINGER_MS, on a loaded machine
def test_the_verifier_process_ends_with_its_ingest(
    broker: PrivateBroker,
    database_url: str,
    session_factory: SessionFactory,
    tmp_path: Path,
    command: list[str],
    ingests: int,
    stop: signal.Signals,
    everyone: bool,
) -> None:
    """``everyone``: the signal goes to every process at once, and here it reaches the verifier processes first (the
    order is anyone's): they go on checking the batches their ingests have in hand, and end after them."""
    with _court(command, ingests, broker, database_url, session_factory, tmp_path) as court:
        verifiers = court.start_verifiers(session_factory, ingests)
        if everyone:
            for pid in verifiers:
                os.kill(pid, stop)
            court.publish()
            court.wait_stored(session_factory)
            assert court.verifiers() == verifiers
        text = court.stop(stop, everyone=everyone)
    _assert_clean(text)
    if stop is not signal.SIGKILL:
        assert court.process.returncode == 0, text


@pytest.mark.timeout(300)
def test_a_ctrl_c_while_the_verifier_process_starts_ends_the_server_cleanly(
    broker: PrivateBroker, database_url: str, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """A Ctrl-C that comes while the verifier process imports its modules (about a second after the first large
    batch) reaches it too: no KeyboardInterrupt traceback from it, no failure, nothing left running."""
    with _court(["run"], 1, broker, database_url, session_factory, tmp_path) as court:
        court.publish()
        deadline = time.monotonic() + WAIT_S
        while not court.verifiers():
            assert time.monotonic() < deadline, court.output.text()
            time.sleep(0.01)
        text = court.stop(signal.SIGINT, everyone=True)
    _assert_clean(text)
    assert court.process.returncode == 0, text
