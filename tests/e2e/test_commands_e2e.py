"""Court → seal commands end to end, every part real and in its own process: ``seal-server run``, two
``seal-agent simulate`` seals pinning the key ``seal-server court-key`` printed, a private Mosquitto.

The case's judge logs in and disarms seal A: the command is pending until the seal's signed ``command_ack`` is stored,
then acknowledged, and the seal's next intrusion says ``warning: suppressed_disarmed`` — and, the case still sealed,
raises the judge's alarm all the same, marked ``disarmed_while_sealed``. Seal B's agent is stopped: its
command is accepted by the broker for B's session but stays pending — never shown delivered — and expires after
its ttl. When B comes back, the broker hands it the stale command, B refuses it as expired, and the court shows that.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from seal_agent.config import CommandsConfig
from seal_dev.broker import PrivateBroker, free_port
from server.seals.broker_files import SERVER_USERNAME
from tests.agent.helpers import agent_env, start_agent, wait_until
from tests.e2e.helpers import SEAL_AGENT, SEAL_SERVER, agent_config, run
from tests.prometheus import samples

CASE = "(2021)苏0214执1234号"
SEAL_A, SEAL_B = "seal-cmd-a", "seal-cmd-b"
JUDGE_PASSWORD = "a long enough judge password"
TTL_S = 8


class Court:
    """The running server's API, as the case's judge."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=10)
        self.headers: dict[str, str] = {}

    def login(self, username: str, password: str) -> None:
        response = self.http.post("/api/auth/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.text
        self.headers = {"Authorization": f"Bearer {response.json()['access_token']}"}

    def get(self, url: str) -> Any:
        response = self.http.get(url, headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()

    def command(self, device_id: str, action: str) -> dict[str, Any]:
        response = self.http.post(f"/api/seals/{device_id}/commands", json={"action": action}, headers=self.headers)
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()
        return body

    def events(self, device_id: str, type: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.get(f"/api/seals/{device_id}/events?type={type}")["events"]
        return events

    def watch(self, command_id: int, until: Callable[[dict[str, Any]], bool], timeout: float) -> list[dict[str, Any]]:
        """Every state the command shows until ``until`` holds; an acknowledged command must have its stored ack."""
        seen: list[dict[str, Any]] = []

        def check() -> bool:
            command = self.get(f"/api/commands/{command_id}")
            seen.append(command)
            if command["delivered"]:
                acks = self.events(command["device_id"], "command_ack")
                assert command["state"] == "acknowledged"
                assert [e["seq"] for e in acks if e["payload"]["command_id"] == command_id] == [command["answer_seq"]]
            return until(command)

        assert wait_until(check, timeout, interval=0.1), seen[-1:]
        return seen


@pytest.fixture
def stack(tmp_path: Path, broker: PrivateBroker, database_url: str) -> Iterator[tuple[Court, dict[str, Any]]]:
    """The server running with a court key, a case, its judge and two seals whose configs pin the key."""
    (tmp_path / "server-mqtt-password").write_text(broker.users[SERVER_USERNAME] + "\n")
    http_port = free_port()
    config = tmp_path / "server.toml"
    for store in ("snapshots", "removal-proofs"):  # the stores' directories, as `seal-server init` makes them
        (tmp_path / store).mkdir(parents=True, exist_ok=True)
    config.write_text(
        f"""database_url = "sqlite:///unused.db"
snapshot_dir = "{tmp_path / "snapshots"}"
[http]
host = "127.0.0.1"
port = {http_port}
[mqtt]
host = "127.0.0.1"
port = {broker.port}
username = "{SERVER_USERNAME}"
password_file = "{tmp_path / "server-mqtt-password"}"
[auth]
cookie_secure = false
[commands]
signing_key_file = "{tmp_path / "court" / "command.key"}"
ttl_s = {TTL_S}
retry_interval_s = 0.2
""",
        encoding="utf-8",
    )
    env = dict(agent_env(), DATABASE_URL=database_url)
    run(SEAL_SERVER, "init-db", "--config", config, env=env)
    run(SEAL_SERVER, "case", "add", CASE, "--court", "无锡市新吴区人民法院", "--config", config, env=env)
    run(
        SEAL_SERVER,
        "user",
        "add",
        "zhang",
        "--role",
        "judge",
        "--case",
        CASE,
        "--password-stdin",
        "--config",
        config,
        env=env,
        stdin=JUDGE_PASSWORD + "\n",
    )
    court_key = run(SEAL_SERVER, "court-key", "--config", config, env=env).strip()
    assert CommandsConfig(server_public_key=court_key).verify_key() is not None
    seals: dict[str, Any] = {}
    for device_id in (SEAL_A, SEAL_B):
        seal_config = agent_config(tmp_path / device_id, broker, device_id, CASE, court_key)
        key = run(SEAL_AGENT, "keygen", "--simulated", "--config", seal_config, env=agent_env()).strip()
        run(SEAL_SERVER, "seal", "add", device_id, "--case", CASE, "--public-key", key, "--config", config, env=env)
        seals[device_id] = seal_config
    log = tmp_path / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(SEAL_SERVER), "run", "--config", str(config)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    court = Court(f"http://127.0.0.1:{http_port}")
    try:
        assert wait_until(lambda: _healthy(court), 90), log.read_text()
        court.login("zhang", JUDGE_PASSWORD)
        yield court, {"seals": seals, "log": log}
    finally:
        court.http.close()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert server.returncode == 0, log.read_text()


def _healthy(court: Court) -> bool:
    try:
        return court.http.get("/api/health").json().get("broker") == "connected"
    except httpx.HTTPError:
        return False


def start(config: Path, tmp_path: Path, device_id: str) -> subprocess.Popen[str]:
    sink = tmp_path / device_id / "speaker.raw"
    return start_agent(
        ["simulate", "--config", str(config), "--presence-s", "0.3"],
        agent_env(sink),
        tmp_path / device_id / "agent.log",
    )


def stop(agent: subprocess.Popen[str]) -> None:
    if agent.poll() is None:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=15)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()


def test_disarm_is_acknowledged_and_an_offline_seal_s_command_expires(
    tmp_path: Path, stack: tuple[Court, dict[str, Any]]
) -> None:
    court, info = stack
    seals, log = info["seals"], info["log"]
    agents = {device_id: start(config, tmp_path, device_id) for device_id, config in seals.items()}
    try:
        # Both seals have spoken (their MQTT sessions exist); then B's agent is stopped.
        for device_id in seals:
            assert wait_until(lambda d=device_id: court.get(f"/api/seals/{d}")["last_event_at"] is not None, 90), (
                log.read_text()
            )
        stop(agents[SEAL_B])

        # A: disarm, pending until the seal's signed ack is stored, then acknowledged.
        issued = court.command(SEAL_A, "disarm")
        assert (issued["state"], issued["delivered"]) == ("pending", False)
        seen = court.watch(issued["command_id"], lambda c: c["state"] != "pending", 20)
        final = seen[-1]
        assert (final["state"], final["delivered"], final["result"]["result"]) == ("acknowledged", True, "disarmed")
        assert final["broker_accepted_at"] is not None
        disarmed = court.events(SEAL_A, "disarmed")
        assert [e["payload"]["by"] for e in disarmed] == [issued["command_id"]]

        # A's next intrusion: recorded, no warning; the judge's disarm is no removal (the case is sealed), so the
        # intrusion raises its alarm all the same, marked.
        assert agents[SEAL_A].stdin is not None
        agents[SEAL_A].stdin.write("m\n")
        agents[SEAL_A].stdin.flush()
        assert wait_until(lambda: court.events(SEAL_A, "intrusion"), 30), log.read_text()
        [intrusion] = court.events(SEAL_A, "intrusion")
        assert (intrusion["payload"]["warning"], intrusion["payload"]["armed"]) == ("suppressed_disarmed", False)
        alarms = [a for a in court.get("/api/alarms") if a["kind"] == "intrusion"]
        assert [(a["device_id"], a["details"]["armed"], a["details"]["disarmed_while_sealed"]) for a in alarms] == [
            (SEAL_A, False, True)
        ]

        # B is offline: the broker takes the command for B's session, yet it is never shown delivered.
        offline = court.command(SEAL_B, "test_warning")
        seen = court.watch(offline["command_id"], lambda c: c["state"] != "pending", TTL_S + 15)
        assert {c["state"] for c in seen} <= {"pending", "expired"} and seen[-1]["state"] == "expired"
        assert not any(c["delivered"] for c in seen)
        assert any(c["broker_accepted_at"] for c in seen)

        # B comes back: the court published the command with its lifetime as the message's expiry (MQTT v5), so the
        # broker dropped it from B's session once expired: B never sees it, signs no refusal, and it stays expired.
        started_before = len(court.events(SEAL_B, "agent_started"))
        agents[SEAL_B] = start(seals[SEAL_B], tmp_path, SEAL_B)
        assert wait_until(lambda: len(court.events(SEAL_B, "agent_started")) > started_before, 30), log.read_text()
        ping = court.command(SEAL_B, "ping")  # after the stale one in B's session, had the broker kept it
        court.watch(ping["command_id"], lambda c: c["state"] == "acknowledged", 30)
        assert court.get(f"/api/commands/{offline['command_id']}")["state"] == "expired"
        assert not [e for e in court.events(SEAL_B, "command_rejected") if e["payload"]["command_id"] is not None]
    finally:
        for agent in agents.values():
            stop(agent)
    metrics = court.http.get("/metrics").text
    assert samples(metrics)["seal_commands_expired_total"] == 1
    assert samples(metrics)['seal_command_answers_total{outcome="acknowledged"}'] == 2  # the disarm and the ping
