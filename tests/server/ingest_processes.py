"""Court processes in tests: ``seal-server ingest`` started as a shell or systemd starts it, its output read on a
thread, stopped as systemd stops it; the processes it started, and the events stored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select

from seal_dev.broker import PrivateBroker
from server.core.db import SessionFactory
from server.evidence.models import Event
from server.seals.broker_files import SERVER_USERNAME
from tests.agent.helpers import wait_until
from tests.server.helpers import SimulatedSeal
from tests.server.mqtt_helpers import SealConnection

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 30.0


def ingest_config(path: Path, database_url: str, broker: PrivateBroker, *, group: str) -> Path:
    password_file = path.parent / "server-mqtt-password"
    password_file.write_text(broker.users[SERVER_USERNAME] + "\n")
    for store in ("snapshots", "removal-proofs"):  # the stores' directories, as `seal-server init` makes them
        (path.parent / store).mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'database_url = "{database_url}"\nsnapshot_dir = "{path.parent / "snapshots"}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nusername = "{SERVER_USERNAME}"\n'
        f'password_file = "{password_file}"\nshared_group = "{group}"\ngap_wait_s = 2.0\nbatch_size = 5\n',
        encoding="utf-8",
    )
    return path


def start_ingest(config: Path, workers: int) -> subprocess.Popen[bytes]:
    """``seal-server ingest``, in a process group of its own (as a shell or systemd starts it)."""
    command = [sys.executable, "-m", "server.cli", "ingest", "--config", str(config), "--workers", str(workers)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )


def child_pids(pid: int) -> list[int]:
    """``pid``'s child processes (whichever of its threads started them)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(") ", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):  # a process that ended meanwhile
            pass
    return found


def cmdline_of(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # ended meanwhile
        return b""


def stored_seqs(session_factory: SessionFactory) -> list[int]:
    with session_factory() as session:
        return list(session.scalars(select(Event.seq).order_by(Event.seq)))


def first_event_stored(
    conn: SealConnection, seal: SimulatedSeal, session_factory: SessionFactory, *, each_s: float, within_s: float
) -> bool:
    """The seal's first event, sent again every ``each_s`` until it is stored, as its outbox would: an ingest's
    SUBSCRIBE follows its CONNACK, and a message published before it goes nowhere. False if not stored within
    ``within_s``."""
    first = seal.event()

    def sent_and_stored() -> bool:
        conn.client.publish(seal.event_topic, first, qos=1).wait_for_publish(WAIT_S)
        return wait_until(lambda: len(stored_seqs(session_factory)) >= 1, each_s)

    return wait_until(sent_and_stored, within_s)


class ProcessOutput:
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


@contextmanager
def stopping(process: subprocess.Popen[bytes]) -> Iterator[None]:
    """Within: ``process`` runs. At the end it is sent SIGTERM (it finishes its batch) and waited for; whatever
    happened, neither it nor any process of its group (its workers, orphaned or not) outlives the block."""
    try:
        yield
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    finally:
        end_group(process)


def end_group(process: subprocess.Popen[bytes]) -> None:
    """``process`` (started by :func:`start_ingest`, the leader of its group) and every process of its group ended:
    SIGTERM to all (each finishes its batch), then SIGKILL to what is left after :data:`WAIT_S`."""
    if process.poll() is None or group_pids(process.pid):
        _signal_group(process.pid, signal.SIGTERM)
        if not wait_until(lambda: process.poll() is not None and not group_pids(process.pid), WAIT_S):
            _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def group_pids(group: int) -> list[int]:
    """The processes of process group ``group`` that still run (not those that ended, waiting to be reaped)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
            if int(fields[2]) == group and fields[0] not in ("Z", "X"):
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):  # a process that ended meanwhile
            pass
    return found


def _signal_group(group: int, sig: signal.Signals) -> None:
    try:
        os.killpg(group, sig)
    except ProcessLookupError:  # none left
        pass
