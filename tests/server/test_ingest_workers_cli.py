"""``seal-server ingest --workers 2``: two worker processes share one stream through the broker; SIGTERM stops
both cleanly. Without ``[mqtt] shared_group`` several workers are refused (each would take every message)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import func, select

from seal_dev.broker import PrivateBroker
from server.core.db import SessionFactory
from server.evidence.models import Event
from server.ingest.models import QuarantinedMessage
from server.seals.broker_files import SERVER_USERNAME
from tests.server.helpers import CASE_A, SimulatedSeal, register
from tests.server.mqtt_helpers import seal_connection

REPO = Path(__file__).resolve().parents[2]
EVENTS = 40
WAIT_S = 30.0


def _settings(path: Path, database_url: str, broker: PrivateBroker, *, group: str) -> Path:
    password_file = path.parent / "server-mqtt-password"
    password_file.write_text(broker.users[SERVER_USERNAME] + "\n")
    path.write_text(
        f'database_url = "{database_url}"\nsnapshot_dir = "{path.parent / "snapshots"}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nusername = "{SERVER_USERNAME}"\n'
        f'password_file = "{password_file}"\nshared_group = "{group}"\ngap_wait_s = 2.0\nbatch_size = 5\n',
        encoding="utf-8",
    )
    return path


def _ingest(config: Path, workers: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "server.cli", "ingest", "--config", str(config), "--workers", str(workers)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _stored(session_factory: SessionFactory) -> list[int]:
    with session_factory() as session:
        return list(session.scalars(select(Event.seq).order_by(Event.seq)))


class _Output:
    """The lines a process writes, read on a thread."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        stdout = process.stdout
        self._thread = threading.Thread(target=lambda: self.lines.extend(b.decode(errors="replace") for b in stdout))
        self._thread.start()

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))

    def text(self) -> str:
        self._thread.join(30)
        return "".join(self.lines)


def test_two_worker_processes_share_the_stream(
    broker: PrivateBroker, database_url: str, session_factory: SessionFactory, tmp_path: Path
) -> None:
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    config = _settings(tmp_path / "server.toml", database_url, broker, group="court-ingest")
    process = _ingest(config, 2)
    output = _Output(process)
    try:
        deadline = time.monotonic() + WAIT_S
        # messages published before a subscription go nowhere; the ingest's own line (the live feed logs that it
        # connected too)
        while output.count("connected to the broker (session present") < 2:
            assert time.monotonic() < deadline and process.poll() is None, (
                f"the workers did not connect: {output.lines}"
            )
            time.sleep(0.05)
        time.sleep(0.5)  # their SUBSCRIBE follows the CONNACK
        with seal_connection(broker, seal.device_id) as conn:
            sent = [conn.client.publish(seal.event_topic, seal.event(), qos=1) for _ in range(EVENTS)]
            for info in sent:
                info.wait_for_publish(WAIT_S)
            while len(_stored(session_factory)) < EVENTS:
                assert time.monotonic() < deadline, f"only {len(_stored(session_factory))} of {EVENTS} stored"
                time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = output.text()
    assert process.returncode == 0, text
    assert "ingest worker ingest-1 running" in text and "ingest worker ingest-2 running" in text
    # Each says which session is its own (the broker's client id, but for its secret suffix).
    assert all(f"(client id court-server-ingest-ingest-{i}-…)" in text for i in (1, 2)), text
    assert _stored(session_factory) == list(range(1, EVENTS + 1))
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(QuarantinedMessage)) == 0


def test_several_workers_need_a_shared_group(broker: PrivateBroker, tmp_path: Path) -> None:
    config = _settings(tmp_path / "server.toml", f"sqlite:///{tmp_path / 'c.db'}", broker, group="")
    process = _ingest(config, 2)
    output = process.communicate(timeout=60)[0].decode(errors="replace")
    assert process.returncode == 2
    assert "[mqtt] shared_group" in output
