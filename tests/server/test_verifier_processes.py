"""The verifier process under the real commands: ``seal-server ingest`` (one worker, or several) and ``seal-server
run`` start one per ingest with the first large batch, and it ends with its ingest, whether that is stopped (SIGTERM,
SIGINT) or killed (SIGKILL) — no process left behind, no traceback, no failure logged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seal_dev.broker import PrivateBroker, free_port
from server.core.db import SessionFactory
from tests.server.helpers import CASE_A, SimulatedSeal, register
from tests.server.mqtt_helpers import seal_connection
from tests.server.test_ingest_workers_cli import REPO, WAIT_S, _Output, _settings, _stored

ROUNDS, EVENTS = 3, 300  # batches of up to 300 events: several chunks each for the verifier process


def _children(pid: int) -> list[int]:
    """``pid``'s child processes (whichever of its threads started them)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(") ", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):  # a process that ended meanwhile
            pass
    return found


def _verifiers(pid: int) -> list[int]:
    """The verifier processes among ``pid``'s descendants."""
    found, todo = [], [pid]
    while todo:
        for child in _children(todo.pop()):
            todo.append(child)
            try:
                if b"server.ingest.verifier" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(child)
            except OSError:
                pass
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] not in "ZX"
    except OSError:
        return False


@pytest.mark.parametrize(
    ("command", "ingests", "stop"),
    [
        (["ingest", "--workers", "1"], 1, signal.SIGKILL),
        (["ingest", "--workers", "2"], 2, signal.SIGTERM),
        (["run"], 1, signal.SIGINT),
    ],
    ids=["ingest-killed", "ingest-2-workers-stopped", "run-stopped"],
)
def test_the_verifier_process_ends_with_its_ingest(
    broker: PrivateBroker,
    database_url: str,
    session_factory: SessionFactory,
    tmp_path: Path,
    command: list[str],
    ingests: int,
    stop: signal.Signals,
) -> None:
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    config = _settings(tmp_path / "server.toml", database_url, broker, group="court-ingest")
    text = config.read_text().replace("batch_size = 5\n", "batch_size = 500\nbatch_linger_ms = 300\n")
    config.write_text(text + f'[http]\nhost = "127.0.0.1"\nport = {free_port()}\n')
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", *command, "--config", str(config)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output = _Output(process)
    verifiers: list[int] = []
    try:
        deadline = time.monotonic() + WAIT_S
        while output.count("connected to the broker (session present") < ingests:
            assert time.monotonic() < deadline and process.poll() is None, "".join(output.lines)
            time.sleep(0.05)
        time.sleep(0.5)  # the SUBSCRIBE follows the CONNACK
        with seal_connection(broker, seal.device_id) as conn:
            conn.client.publish(seal.event_topic, seal.event(), qos=1).wait_for_publish(WAIT_S)
            while not _stored(session_factory):  # the seal's key is known from now on: its events are checked
                assert time.monotonic() < deadline
                time.sleep(0.05)
            for _ in range(ROUNDS):
                for info in [conn.client.publish(seal.event_topic, seal.event(), qos=1) for _ in range(EVENTS)]:
                    info.wait_for_publish(WAIT_S)
                time.sleep(1.0)  # the first large batch starts the process (ready in about a second)
            while len(_stored(session_factory)) < 1 + ROUNDS * EVENTS:
                assert time.monotonic() < deadline + 60, f"{len(_stored(session_factory))} stored"
                time.sleep(0.05)
        verifiers = _verifiers(process.pid)
        assert verifiers, "".join(output.lines)
        process.send_signal(stop)
        process.wait(60)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in verifiers):
            assert time.monotonic() < deadline, f"left running: {[pid for pid in verifiers if _alive(pid)]}"
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in verifiers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    text = output.text()
    assert "Traceback" not in text and "verifier process failed" not in text, text
    if stop is not signal.SIGKILL:
        assert process.returncode == 0, text
