"""The reliability suites' world: a real ``seal-server run``, real ``seal-agent simulate`` processes, a real Mosquitto,
and the one check every fault scenario ends with (:func:`check_delivery`).

Everything listens on 127.0.0.1 only. Every wait here is bounded; a test that does not converge fails with what it
saw, it never hangs.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from seal_agent.state_checks import SIMULATED_MARK
from seal_dev.alsa_sink import alsa_file_config
from seal_dev.broker import PrivateBroker, free_port
from seal_protocol import decode_envelope, encode_envelope
from seal_protocol.errors import InvalidEnvelope, SignatureError
from seal_protocol.signing import (
    VerifyKey,
    load_or_create_signing_key,
    public_key_b64,
    verify_envelope,
    verify_key_from_b64,
)
from server.core.db import make_engine, make_session_factory, session_scope
from server.evidence.models import Event, Snapshot
from server.ingest.models import QuarantineCount, QuarantinedMessage
from server.migrations.run import init_db
from server.seals.broker_files import SERVER_USERNAME
from server.seals.cases import add_case
from server.seals.registry import register_seal

REPO = Path(__file__).resolve().parents[2]
SEAL_SERVER = Path(sys.executable).with_name("seal-server")
SEAL_AGENT = Path(sys.executable).with_name("seal-agent")
CASE_NO = "(2021)苏0214执1234号"


def log(message: str, *args: object) -> None:
    """A progress line on stderr (shown with ``pytest -s`` and in the captured output of a failure)."""
    sys.stderr.write(time.strftime("%H:%M:%S ") + (message % args if args else message) + "\n")
    sys.stderr.flush()


#: When set, a file that each scenario appends its figures to (one JSON object a line), for docs/reliability.md.
REPORT_ENV = "SEAL_RELIABILITY_REPORT"


def report(scenario: str, **figures: object) -> None:
    """Print a scenario's figures, and append them to ``$SEAL_RELIABILITY_REPORT`` if that is set."""
    line = json.dumps({"scenario": scenario, **figures}, ensure_ascii=False, sort_keys=True)
    log("figures %s", line)
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(line + "\n")


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` (a database or a file has no notification) until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", **extra)
    env.pop("GPIOZERO_PIN_FACTORY", None)
    return env


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> int | None:
    """SIGTERM, wait, SIGKILL if it does not stop; returns the exit status (None if there was no process)."""
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return process.returncode


def kill_process(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        process.kill()
        process.wait(10)


# -- the broker ------------------------------------------------------------------------------------------------


def restart_broker(broker: PrivateBroker, how: signal.Signals, down_s: float = 0.5) -> None:
    """Stop the broker with ``how`` (SIGTERM: it saves its store; SIGKILL: it loses what it had not saved yet), keep
    it down ``down_s`` seconds, start it again on the same port with the same persistence directory."""
    pid = int(broker.pid_file.read_text())
    os.kill(pid, how)
    deadline = time.monotonic() + 15
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    broker.stop()  # reaps it (and SIGKILLs a broker that ignored SIGTERM for 10 s)
    time.sleep(down_s)
    broker.start()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


# -- the court server -------------------------------------------------------------------------------------------


def court_key(path: Path) -> str:
    """Create the court's signing key at ``path`` (as ``seal-server court-key`` does); its base64 public key."""
    key, _ = load_or_create_signing_key(path)
    return public_key_b64(key)


@dataclass
class Court:
    """A ``seal-server run`` on ``database_url`` and the broker at ``broker_port``; started and killed at will."""

    directory: Path
    broker: PrivateBroker
    database_url: str
    #: The court's signing key (commands and receipts); seals pin its public key (:func:`court_key`).
    signing_key_file: Path
    http_port: int = field(default_factory=free_port)
    batch_size: int = 100
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0
    _engine: Engine | None = None

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "mqtt-password").write_text(self.broker.users[SERVER_USERNAME] + "\n")
        self.config = self.directory / "server.toml"
        for store in ("snapshots", "removal-proofs"):  # the stores' directories, as `seal-server init` makes them
            (self.directory / store).mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            f"""database_url = "sqlite:///unused.db"
snapshot_dir = "{self.directory / "snapshots"}"
[http]
host = "127.0.0.1"
port = {self.http_port}
[mqtt]
host = "127.0.0.1"
port = {self.broker.port}
username = "{SERVER_USERNAME}"
password_file = "{self.directory / "mqtt-password"}"
keepalive_s = 5
batch_size = {self.batch_size}
[commands]
signing_key_file = "{self.signing_key_file}"
""",
            encoding="utf-8",
        )
        self.log_path = self.directory / "server.log"

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.database_url, pool_pre_ping=True)
        return self._engine

    def dispose_engine(self) -> None:
        """Drop the test's own database connections (before the database goes away under them)."""
        if self._engine is not None:
            self._engine.dispose()

    def prepare(self, seals: Mapping[str, str], case_no: str = CASE_NO) -> None:
        """Create the tables and the case, and register each seal (device id → base64 public key) bound to it."""
        init_db(self.engine)
        with session_scope(make_session_factory(self.engine)) as session:
            add_case(session, actor=None, case_no=case_no, court="无锡市滨湖区人民法院", judge="王法官")
        self.register(seals, case_no)

    def register(self, seals: Mapping[str, str], case_no: str = CASE_NO) -> None:
        with session_scope(make_session_factory(self.engine)) as session:
            for device_id, public_key in seals.items():
                register_seal(session, actor=None, device_id=device_id, case_no=case_no, public_key=public_key)

    def start(self, timeout: float = 90.0) -> None:
        """Start the server and wait until its API answers and its ingest holds a broker connection."""
        assert self.process is None or self.process.poll() is not None, "the court server is already running"
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [str(SEAL_SERVER), "run", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=child_env(DATABASE_URL=self.database_url),
            )
        self.starts += 1
        assert wait_for(lambda: self.alive() and self.metric("seal_broker_connected") == 1, timeout, 0.2), (
            f"the court server did not come up within {timeout} s:\n{self.log_tail()}"
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        kill_process(self.process)
        self.kills += 1

    def stop(self) -> int | None:
        """SIGTERM; returns the exit status."""
        status = stop_process(self.process)
        self.process = None
        return status

    def close(self) -> None:
        stop_process(self.process)
        if self._engine is not None:
            self._engine.dispose()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    # -- what it exposes -------------------------------------------------------------------------------------

    def metrics_text(self) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as response:
                return str(response.read().decode())
        except (urllib.error.URLError, OSError):
            return None

    def health(self) -> dict[str, Any] | None:
        """``/api/health`` (its body also when it answers 503), or None if the server does not answer."""
        url = f"http://127.0.0.1:{self.http_port}/api/health"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return dict(json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            return dict(json.loads(exc.read()))
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def metrics(self) -> dict[str, float] | None:
        """``name`` or ``name{labels}`` → value, from ``/metrics``; None if the server does not answer."""
        text = self.metrics_text()
        if text is None:
            return None
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def metric(self, name: str) -> float | None:
        values = self.metrics()
        return None if values is None else values.get(name)

    def session(self) -> Session:
        """A read session on the court's database (close it: ``with court.session() as session``)."""
        return make_session_factory(self.engine)()

    def stored_raw(self, device_id: str) -> dict[int, bytes]:
        """seq → the stored bytes of each of the seal's events."""
        with self.session() as session:
            rows = session.execute(select(Event.seq, Event.raw).where(Event.device_id == device_id))
            return {int(seq): bytes(raw) for seq, raw in rows}

    def stored_seqs(self, device_id: str) -> list[int]:
        with make_session_factory(self.engine)() as session:
            return list(session.scalars(select(Event.seq).where(Event.device_id == device_id).order_by(Event.seq)))

    def event_count(self, device_id: str | None = None) -> int:
        query = select(func.count()).select_from(Event)
        if device_id is not None:
            query = query.where(Event.device_id == device_id)
        with make_session_factory(self.engine)() as session:
            return int(session.scalar(query) or 0)

    def payloads(self, device_id: str, type: str | None = None) -> list[dict[str, Any]]:
        """Payloads of the seal's stored events (of ``type``), in seq order."""
        query = select(Event.payload).where(Event.device_id == device_id).order_by(Event.seq)
        if type is not None:
            query = query.where(Event.type == type)
        with make_session_factory(self.engine)() as session:
            return list(session.scalars(query))

    def snapshot_hashes(self, device_id: str) -> set[str]:
        with make_session_factory(self.engine)() as session:
            return set(session.scalars(select(Snapshot.sha256).where(Snapshot.device_id == device_id)))

    def quarantine_reasons(self) -> Counter[str]:
        with make_session_factory(self.engine)() as session:
            return _quarantine_counts(session)


def rejected_by_reason(metrics: Mapping[str, float]) -> dict[str, int]:
    found = {}
    for name, value in metrics.items():
        match = re.fullmatch(r'seal_messages_rejected_total\{reason="([^"]*)"\}', name)
        if match and value:
            found[match.group(1)] = int(value)
    return found


# -- a seal ---------------------------------------------------------------------------------------------------


@dataclass
class Seal:
    """One ``seal-agent simulate`` on gpiozero mock pins with its own state directory, broker account and key.

    ``mqtt_port`` is where it connects (the broker's port, or a fault proxy in front of it). Presence comes from the
    agent's own ``--trigger-every`` timer while :meth:`start` is given ``trigger_every``.
    """

    directory: Path
    device_id: str
    broker: PrivateBroker
    #: The court's public key: commands and receipts are checked with it.
    court_public_key: str
    mqtt_port: int = 0
    case_no: str = CASE_NO
    heartbeat_s: float = 3600
    camera: str = ""
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0
    _presence: threading.Event = field(default_factory=threading.Event, repr=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        password = os.urandom(9).hex()
        self.broker.add_user(self.device_id, password)
        self.broker.reload()
        self.password = password
        (self.directory / "mqtt-password").write_text(password + "\n")
        self.state_dir = self.directory / "state"
        self.state_dir.mkdir(mode=0o700, exist_ok=True)
        (self.state_dir / SIMULATED_MARK).write_text("a simulated seal of the reliability suites\n")  # before its key
        key, _ = load_or_create_signing_key(self.state_dir / "device.key")
        self.signing_key = key
        self.public_key = public_key_b64(key)
        self.write_config()
        self.env = child_env(ALSA_CONFIG_PATH=str(alsa_file_config(self.directory / "speaker.raw")))
        self.log_path = self.directory / "agent.log"

    def write_config(self) -> None:
        """Its configuration: each presence (``trigger_every``, a load far above a person's) a full trigger, which a
        real seal's ``[sensors]`` bound would merge as a flapping line's."""
        self.config = self.directory / "seal.toml"
        self.config.write_text(
            f"""device_id = "{self.device_id}"
case_no = "{self.case_no}"
state_dir = "{self.state_dir}"
heartbeat_s = {self.heartbeat_s}
[mqtt]
host = "127.0.0.1"
port = {self.mqtt_port or self.broker.port}
password_file = "{self.directory / "mqtt-password"}"
keepalive_s = 5
[pir]
pin = 17
[tamper]
enabled = false
[warning]
languages = ["zh"]
cooldown_s = 86400
[commands]
server_public_key = "{self.court_public_key}"
[sensors]
trigger_burst = 1000000
{self.camera}
""",
            encoding="utf-8",
        )

    @property
    def outbox_path(self) -> Path:
        return self.state_dir / "outbox.sqlite"

    def start(self, trigger_every: float | None = None, presence_s: float = 0.05) -> None:
        """Start the agent; with ``trigger_every``, a presence (``m`` on its stdin, as a person at the keyboard of
        ``seal-agent simulate``) that often until :meth:`quiesce`, :meth:`kill` or :meth:`stop`."""
        assert self.process is None or self.process.poll() is not None, f"{self.device_id} is already running"
        args = [str(SEAL_AGENT), "simulate", "--config", str(self.config), "--presence-s", str(presence_s)]
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                args, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, env=self.env
            )
        self.starts += 1
        if trigger_every is not None:
            self._presence = threading.Event()
            threading.Thread(
                target=_walk_in, args=(self.process, trigger_every, self._presence), name=f"{self.device_id}-presence"
            ).start()

    def quiesce(self) -> None:
        """No more presence: the agent stays up and makes no new event (its heartbeat is an hour)."""
        self._presence.set()

    def kill(self) -> None:
        self.quiesce()
        kill_process(self.process)
        self.kills += 1

    def stop(self) -> int | None:
        self.quiesce()
        status = stop_process(self.process)
        self.process = None
        return status

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _outbox(self, sql: str) -> int:
        if not self.outbox_path.exists():
            return 0
        db = sqlite3.connect(f"file:{self.outbox_path}?mode=ro", uri=True, timeout=10)
        try:
            row = db.execute(sql).fetchone()
        except sqlite3.OperationalError:  # created but not yet initialised by a starting agent
            return 0
        finally:
            db.close()
        return int(row[0]) if row and row[0] is not None else 0

    def last_seq(self) -> int:
        """The seq of the last event this seal's outbox ever committed: the seal has created exactly 1..last_seq."""
        return self._outbox("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'last_seq'")

    def outbox_depth(self) -> int:
        return self._outbox("SELECT COUNT(*) FROM outbox")

    def count_events_of_type(self, type: str) -> int:
        """How many events of ``type`` wait in the outbox (not yet acknowledged)."""
        if not self.outbox_path.exists():
            return 0
        db = sqlite3.connect(f"file:{self.outbox_path}?mode=ro", uri=True, timeout=10)
        try:
            rows = db.execute("SELECT data FROM outbox").fetchall()
        except sqlite3.OperationalError:
            return 0
        finally:
            db.close()
        return sum(1 for (data,) in rows if json.loads(data).get("type") == type)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no agent log)"


def _walk_in(process: subprocess.Popen[bytes], every: float, stop: threading.Event) -> None:
    """Type ``m`` + Enter into the agent every ``every`` seconds until ``stop`` (or the agent is gone)."""
    assert process.stdin is not None
    while not stop.wait(every):
        try:
            process.stdin.write(b"m\n")
            process.stdin.flush()
        except (OSError, ValueError):  # killed: the pipe is broken or closed
            return


def burst_with_kills(seal: Seal, kills: int, rng: random.Random, *, trigger_every: float, max_life_s: float) -> None:
    """Start ``seal`` bursting and SIGKILL it at a random moment, ``kills`` times (the next start follows at once).
    Every other life, the moment is drawn from when the seal first records (its first event of that life committed):
    on a loaded machine the interpreter alone may take seconds to start, so a moment drawn from the start alone
    would only ever kill it starting (opening its outbox, recovering the last kill's WAL), never while it records.
    Those lives (``(kills + 1) // 2``) each record at least one event."""
    for life in range(kills):
        before = seal.last_seq()
        seal.start(trigger_every=trigger_every)
        if life % 2 == 0:
            recorded = wait_for(lambda b=before: seal.last_seq() > b, 60, 0.02)
            assert recorded, f"{seal.device_id} recorded nothing in 60 s"
        time.sleep(rng.uniform(0.05, max_life_s))
        seal.kill()


# -- the end of every scenario -----------------------------------------------------------------------------------


def settle(court: Court, seals: Iterable[Seal], timeout: float, stall_s: float = 15.0) -> dict[str, int]:
    """Let every seal deliver what it holds: no more presence (a dead seal is started again), until the court has stored
    1..last_seq of each and its outbox is empty; then each is stopped. Returns device id → last_seq, read from the
    seal's outbox after it stopped.

    Gives up after ``timeout``, or earlier when the outboxes are empty and nothing has reached the court for
    ``stall_s`` (what is missing then is lost: no seal holds it any more).
    """
    seals = list(seals)
    for seal in seals:
        if seal.alive():
            seal.quiesce()
        else:
            seal.start()
    deadline = time.monotonic() + timeout
    last_change, last_state = time.monotonic(), None
    while True:
        depths = [seal.outbox_depth() for seal in seals]
        stored = [court.event_count(seal.device_id) for seal in seals]
        created = [seal.last_seq() for seal in seals]
        if not any(depths) and all(s >= c > 0 for s, c in zip(stored, created, strict=True)):
            break
        state = (depths, stored, created)
        if state != last_state:
            last_change, last_state = time.monotonic(), state
        now = time.monotonic()
        if now >= deadline or (not any(depths) and now - last_change >= stall_s):
            log("settle: gave up; outbox depths %s, stored %s of %s", depths, stored, created)
            break
        time.sleep(0.25)
    for seal in seals:
        seal.stop()
    return {seal.device_id: seal.last_seq() for seal in seals}


def wait_flowing(court: Court, seals: Iterable[Seal], events: int = 3, timeout: float = 30.0) -> None:
    """Wait until the court has stored at least ``events`` events of each seal: the burst is under way."""
    seals = list(seals)
    assert wait_for(lambda: all(court.event_count(seal.device_id) >= events for seal in seals), timeout), (
        f"the seals' events did not reach the court within {timeout} s\n{court.log_tail()}"
    )


def check_delivery(
    court: Court,
    created: Mapping[str, int],
    public_keys: Mapping[str, str],
    *,
    quarantine: Mapping[str, int] | None = None,
) -> None:
    """The check every fault scenario ends with.

    For each seal, the events its outbox created (seq 1..``created[device_id]``) are all in the court's database,
    each exactly once, each stored as the canonical bytes of its envelope whose signature verifies with the enrolled
    key, each ``prev_hash`` naming the SHA-256 of the stored seq−1 (``null`` for seq 1); and the quarantine holds
    exactly ``quarantine`` (reason → count; nothing by default).
    """
    problems: list[str] = []
    with make_session_factory(court.engine)() as session:
        for device_id, last_seq in created.items():
            key = verify_key_from_b64(public_keys[device_id])
            rows = list(session.execute(select(Event.seq, Event.raw).where(Event.device_id == device_id)))
            counts = Counter(seq for seq, _ in rows)
            doubled = sorted(seq for seq, n in counts.items() if n > 1)
            stored = {seq: bytes(raw) for seq, raw in rows}
            missing = [seq for seq in range(1, last_seq + 1) if seq not in stored]
            extra = sorted(seq for seq in stored if not 1 <= seq <= last_seq)
            if last_seq < 1:
                problems.append(f"{device_id}: its outbox created no event at all")
            if missing:
                problems.append(f"{device_id}: {len(missing)} of {last_seq} events missing: {_ranges(missing)}")
            if doubled or extra:
                problems.append(f"{device_id}: stored twice {doubled}, beyond the outbox's last seq {extra}")
            for seq in sorted(stored):
                problem = _check_stored(stored[seq], seq, device_id, key, stored.get(seq - 1))
                if problem:
                    problems.append(f"{device_id} seq {seq}: {problem}")
        found = _quarantine_counts(session)
    expected = Counter(quarantine or {})
    if found != expected:
        problems.append(f"quarantine holds {dict(found)}, expected {dict(expected)}")
    assert not problems, "\n".join(problems[:40]) + f"\n--- server log ---\n{court.log_tail()}"
    log("check: %s all present once, chains valid, quarantine %s", dict(created), dict(found))


def _quarantine_counts(session: Session) -> Counter[str]:
    """Quarantined messages by reason; a row counts each copy of the same refused bytes it stands for, and the
    refusals counted without rows (past their account's ``quarantine_seal_rows``) count too."""
    found: Counter[str] = Counter()
    for reason, copies in session.execute(select(QuarantinedMessage.reason, QuarantinedMessage.copies)):
        found[reason] += copies
    for reason, count in session.execute(select(QuarantineCount.reason, QuarantineCount.count)):
        found[reason] += count
    return found


def _check_stored(raw: bytes, seq: int, device_id: str, key: VerifyKey, previous: bytes | None) -> str | None:
    try:
        envelope = decode_envelope(raw)
        verify_envelope(envelope, key)
    except (InvalidEnvelope, SignatureError) as exc:
        return f"stored but invalid: {exc}"
    if encode_envelope(envelope) != raw:
        return "stored bytes are not the canonical encoding of their envelope"
    if (envelope.seq, envelope.device_id) != (seq, device_id):
        return f"row says ({device_id}, {seq}), the envelope ({envelope.device_id}, {envelope.seq})"
    if seq == 1 and envelope.prev_hash is not None:
        return "seq 1 with a prev_hash"
    if previous is not None and envelope.prev_hash != hashlib.sha256(previous).hexdigest():
        return "prev_hash does not name the stored previous event"
    return None


def _ranges(seqs: list[int]) -> str:
    out: list[str] = []
    start = prev = seqs[0]
    for seq in [*seqs[1:], None]:
        if seq is not None and seq == prev + 1:
            prev = seq
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if seq is not None:
            start = prev = seq
    return ", ".join(out[:30]) + (" …" if len(out) > 30 else "")


def dump_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True))
