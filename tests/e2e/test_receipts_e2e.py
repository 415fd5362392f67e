"""Issue #7's loss, end to end: seals publish while the court server is down, the broker acknowledges and holds their
events for the server's session, and is then SIGKILLed with nothing on disk. Seals that deleted on the broker's
PUBACK lost those events for good; seals that wait for the court's signed receipt still hold them, send them again
after the reconnect, and the court ends with every event exactly once, every chain intact.

Every part is real and in its own process: two ``seal-agent simulate``, ``seal-server run`` (twice), and a private
Mosquitto with persistence off (what it holds lives in memory only, like a broker killed before its autosave).
"""

from __future__ import annotations

import os
import secrets
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from seal_dev.broker import PrivateBroker, free_port
from seal_protocol import decode_envelope, envelope_hash
from seal_protocol.signing import verify_envelope, verify_key_from_b64
from server.core.db import make_engine, make_session_factory
from server.evidence.models import Event
from server.ingest.models import QuarantinedMessage
from server.seals.broker_files import SERVER_USERNAME
from tests.agent.helpers import agent_env, start_agent, wait_until
from tests.e2e.helpers import SEAL_AGENT, SEAL_SERVER, agent_config, run

CASE = "(2021)苏0214执1234号"
SEALS = ("seal-rcpt-a", "seal-rcpt-b")
BURST = 15  # presences per seal while the court server is down


@pytest.fixture
def memory_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    """A Mosquitto that keeps nothing on disk: a SIGKILL loses every message it holds."""
    broker = PrivateBroker(tmp_path / "broker", {SERVER_USERNAME: secrets.token_urlsafe(16)}, persistence=False)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def outbox_rows(state_dir: Path, where: str = "") -> int:
    db = sqlite3.connect(f"file:{state_dir / 'outbox.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        return int(db.execute(f"SELECT COUNT(*) FROM outbox {where}").fetchone()[0])
    finally:
        db.close()


def last_seq(state_dir: Path) -> int:
    db = sqlite3.connect(f"file:{state_dir / 'outbox.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        return int(row[0]) if row else 0
    finally:
        db.close()


def test_events_the_broker_acknowledged_survive_its_sigkill_while_the_court_was_down(
    tmp_path: Path, memory_broker: PrivateBroker, database_url: str
) -> None:
    broker = memory_broker
    (tmp_path / "server-mqtt-password").write_text(broker.users[SERVER_USERNAME] + "\n")
    server_config = tmp_path / "server.toml"
    for store in ("snapshots", "removal-proofs"):  # the stores' directories, as `seal-server init` makes them
        (tmp_path / store).mkdir(parents=True, exist_ok=True)
    server_config.write_text(
        f"""database_url = "sqlite:///unused.db"
snapshot_dir = "{tmp_path / "snapshots"}"
[http]
host = "127.0.0.1"
port = {free_port()}
[mqtt]
host = "127.0.0.1"
port = {broker.port}
username = "{SERVER_USERNAME}"
password_file = "{tmp_path / "server-mqtt-password"}"
keepalive_s = 5
[commands]
signing_key_file = "{tmp_path / "court" / "command.key"}"
""",
        encoding="utf-8",
    )
    env = dict(agent_env(), DATABASE_URL=database_url)
    run(SEAL_SERVER, "init-db", "--config", server_config, env=env)
    run(SEAL_SERVER, "case", "add", CASE, "--court", "无锡市新吴区人民法院", "--config", server_config, env=env)
    court_key = run(SEAL_SERVER, "court-key", "--config", server_config, env=env).strip()
    keys: dict[str, str] = {}
    state: dict[str, Path] = {}
    agents: dict[str, subprocess.Popen[str]] = {}
    for device_id in SEALS:
        config = agent_config(tmp_path / device_id, broker, device_id, CASE, court_key, receipt_timeout_s=2)
        keys[device_id] = run(SEAL_AGENT, "keygen", "--simulated", "--config", config, env=agent_env()).strip()
        run(SEAL_SERVER, "seal", "add", device_id, "--case", CASE, "--public-key", keys[device_id],
            "--config", server_config, env=env)  # fmt: skip
        state[device_id] = tmp_path / device_id / "state"
        agents[device_id] = start_agent(
            ["simulate", "--config", str(config), "--presence-s", "0.05"],
            agent_env(tmp_path / device_id / "speaker.raw"),
            tmp_path / device_id / "agent.log",
        )

    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    server_log = tmp_path / "server.log"
    servers: list[subprocess.Popen[bytes]] = []

    def start_server() -> None:
        with server_log.open("ab") as log:
            servers.append(
                subprocess.Popen([str(SEAL_SERVER), "run", "--config", str(server_config)], stdout=log,
                                 stderr=subprocess.STDOUT, env=env)
            )  # fmt: skip

    def stored(device_id: str) -> list[int]:
        with factory() as session:
            query = select(Event.seq).where(Event.device_id == device_id).order_by(Event.seq)
            return list(session.scalars(query))

    def logs() -> str:
        agent_logs = "\n".join((tmp_path / d / "agent.log").read_text(errors="replace")[-3000:] for d in SEALS)
        return server_log.read_text(errors="replace")[-4000:] + "\n" + agent_logs

    try:
        start_server()
        assert wait_until(lambda: all(stored(d) for d in SEALS), 90), logs()  # agent_started of each
        assert wait_until(lambda: all(outbox_rows(state[d]) == 0 for d in SEALS), 30), logs()  # receipted

        servers[-1].send_signal(signal.SIGTERM)  # the court goes away; the broker keeps its session's messages
        assert servers[-1].wait(15) == 0, logs()
        for agent in agents.values():
            assert agent.stdin is not None
            agent.stdin.write("m\n" * BURST)
            agent.stdin.flush()
        # Each seal has the broker's PUBACK for its burst (the old agent would now have an empty outbox) …
        assert wait_until(
            lambda: all(outbox_rows(state[d], "WHERE acked_at IS NOT NULL") >= BURST for d in SEALS), 20
        ), logs()
        held = {d: outbox_rows(state[d]) for d in SEALS}
        os.kill(int(broker.pid_file.read_text()), signal.SIGKILL)  # … and the broker loses all of it
        broker.stop()  # reaps it
        broker.start()
        start_server()

        def complete() -> bool:
            return all(stored(d) == list(range(1, last_seq(state[d]) + 1)) and not outbox_rows(state[d]) for d in SEALS)

        assert wait_until(complete, 40, interval=0.2), logs()
        for device_id in SEALS:
            assert held[device_id] >= BURST
            assert last_seq(state[device_id]) >= 1 + BURST
        with factory() as session:
            for device_id in SEALS:
                rows = session.scalars(select(Event).where(Event.device_id == device_id).order_by(Event.seq)).all()
                key = verify_key_from_b64(keys[device_id])
                previous = None
                for row in rows:
                    envelope = decode_envelope(row.raw)
                    verify_envelope(envelope, key)
                    assert envelope.prev_hash == previous, f"{device_id}: chain broken at seq {row.seq}"
                    previous = envelope_hash(row.raw)
            assert session.scalar(select(func.count()).select_from(QuarantinedMessage)) == 0
    finally:
        for agent in agents.values():
            agent.send_signal(signal.SIGTERM)
        for server in servers:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
        for process in [*agents.values(), *servers]:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        engine.dispose()
