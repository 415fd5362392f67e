"""``seal-server ingest --workers 2``: two worker processes share one stream through the broker; SIGTERM stops
both cleanly, also one sent to every process while they start. Without ``[mqtt] shared_group`` several workers are
refused (each would take every message)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
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
    """``seal-server ingest``, in a process group of its own (as a shell or systemd starts it)."""
    command = [sys.executable, "-m", "server.cli", "ingest", "--config", str(config), "--workers", str(workers)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )


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


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # ended meanwhile
        return b""


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


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "systemd-stop"])
def test_a_stop_sent_to_every_process_while_the_workers_start_ends_them_cleanly(
    broker: PrivateBroker,
    database_url: str,
    session_factory: SessionFactory,
    tmp_path: Path,
    stop: signal.Signals,
) -> None:
    """A Ctrl-C (every process of the terminal's group) or systemd's stop (every process of the unit) while the
    workers import their modules, before they can stop: each stops once it can, without a KeyboardInterrupt
    traceback and without dying of the signal (the parent, which sends them SIGTERM as well, would exit 1)."""
    config = _settings(tmp_path / "server.toml", database_url, broker, group="court-ingest")
    process = _ingest(config, 2)
    try:
        deadline = time.monotonic() + WAIT_S
        while sum(b"spawn_main" in _cmdline(pid) for pid in _children(process.pid)) < 2:
            assert time.monotonic() < deadline and process.poll() is None, "the workers did not start"
            time.sleep(0.01)
        os.killpg(process.pid, stop)
        output = process.communicate(timeout=60)[0].decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Traceback" not in output, output
    assert process.returncode == 0, output
