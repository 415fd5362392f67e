"""The spine, end to end, with every part real and in its own process.

Two ``seal-agent simulate`` processes (gpiozero mock pins, ALSA into a file) on two cases → a private Mosquitto with
authentication and the seal ACL → ``seal-server run`` → rows in the database, each case holding only its own seal's
events, every one verifying against the seal's enrolled key.
"""

from __future__ import annotations

import signal
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from seal_agent.config import DEFAULT_SOUNDS_DIR
from seal_dev.broker import PrivateBroker, free_port
from seal_protocol import decode_envelope
from seal_protocol.signing import verify_envelope, verify_key_from_b64
from server.core.db import make_engine, make_session_factory
from server.evidence.models import Event
from server.seals.broker_files import SERVER_USERNAME
from tests.agent.helpers import agent_env, start_agent, wait_until
from tests.e2e.helpers import SEAL_AGENT, SEAL_SERVER, agent_config, run

CASES = {"seal-e2e-a": "(2021)苏0214执1234号", "seal-e2e-b": "(2022)苏0214执567号"}


@pytest.fixture
def court_server(tmp_path: Path, broker: PrivateBroker, database_url: str) -> Iterator[tuple[Path, dict[str, str]]]:
    """A server config on ``broker`` and ``database_url``, the cases created; yields (config, env)."""
    (tmp_path / "server-mqtt-password").write_text(broker.users[SERVER_USERNAME] + "\n")
    config = tmp_path / "server.toml"
    for store in ("snapshots", "removal-proofs"):  # the stores' directories, as `seal-server init` makes them
        (tmp_path / store).mkdir(parents=True, exist_ok=True)
    config.write_text(
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
""",
        encoding="utf-8",
    )
    env = dict(agent_env(), DATABASE_URL=database_url)
    run(SEAL_SERVER, "init-db", "--config", config, env=env)
    for case_no in CASES.values():
        run(SEAL_SERVER, "case", "add", case_no, "--court", "无锡市新吴区人民法院", "--config", config, env=env)
    yield config, env


def test_pir_edges_on_two_seals_reach_their_own_cases(
    tmp_path: Path, broker: PrivateBroker, court_server: tuple[Path, dict[str, str]], database_url: str
) -> None:
    server_config, server_env = court_server
    agents: dict[str, subprocess.Popen[str]] = {}
    keys = {}
    sinks = {}
    server_log = tmp_path / "server.log"
    with server_log.open("w") as log:
        server = subprocess.Popen(
            [str(SEAL_SERVER), "run", "--config", str(server_config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env,
        )
    try:
        for device_id, case_no in CASES.items():
            config = agent_config(tmp_path / device_id, broker, device_id, case_no)
            keys[device_id] = run(SEAL_AGENT, "keygen", "--simulated", "--config", config, env=agent_env()).strip()
            run(
                SEAL_SERVER,
                "seal",
                "add",
                device_id,
                "--case",
                case_no,
                "--public-key",
                keys[device_id],
                "--config",
                server_config,
                env=server_env,
            )
            sinks[device_id] = tmp_path / device_id / "speaker.raw"
            agents[device_id] = start_agent(
                ["simulate", "--config", str(config), "--presence-s", "0.3"],
                agent_env(sinks[device_id]),
                tmp_path / device_id / "agent.log",
            )

        engine = make_engine(database_url)
        factory = make_session_factory(engine)

        def rows() -> list[Event]:
            with factory() as session:
                return list(session.scalars(select(Event).order_by(Event.device_id, Event.seq)))

        # Wait for each seal's start-up event so the pin is being watched, then walk into the room.
        assert wait_until(lambda: {e.device_id for e in rows()} == set(CASES), 90), server_log.read_text()
        for agent in agents.values():
            assert agent.stdin is not None
            agent.stdin.write("m\n")
            agent.stdin.flush()

        def intrusions() -> dict[str, list[Event]]:
            found: dict[str, list[Event]] = {d: [] for d in CASES}
            for event in rows():
                if event.type == "intrusion":
                    found[event.device_id].append(event)
            return found

        assert wait_until(lambda: all(intrusions().values()), 90), server_log.read_text()
        with wave.open(str(DEFAULT_SOUNDS_DIR / "warning_zh.wav")) as wav:
            pcm = wav.readframes(wav.getnframes())
        for device_id, sink in sinks.items():
            assert wait_until(lambda s=sink: s.exists() and s.read_bytes() == pcm, 30), f"{device_id}: no warning"

        for event in rows():
            assert event.case_no == CASES[event.device_id]
            envelope = decode_envelope(event.raw)
            verify_envelope(envelope, verify_key_from_b64(keys[event.device_id]))
            assert envelope.case_no == event.case_no
        by_case = {case_no: {e.device_id for e in rows() if e.case_no == case_no} for case_no in CASES.values()}
        assert by_case == {case_no: {device_id} for device_id, case_no in CASES.items()}
        engine.dispose()
    finally:
        for agent in agents.values():
            agent.send_signal(signal.SIGTERM)
        server.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        for process in [*agents.values(), server]:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    assert server.returncode == 0, server_log.read_text()
