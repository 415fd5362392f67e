"""The README's "Run a court server", run as written: its shell blocks, in a fresh directory, as one script.

Only what cannot run here is substituted, each substitution checked to apply: the lines that install packages
and stop Debian's own broker (``sudo …``; this machine has them, and its Mosquitto must keep running), the virtual
environment (this one), free ports for ``init`` (1883, 8883 and 8080 may be taken), the passwords ``user add`` asks
for (``--password-stdin``), and ``<key from the Pi>`` (a simulated seal's key). The broker is the one the README
starts, with the ``mosquitto.conf`` that ``init`` wrote; the script ends in ``seal-server run``. Then the seal logs
in over TLS with the password ``seal add`` printed, publishes a signed event, and the clerk reads it from the API.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from seal_dev.broker import free_port
from tests.agent.helpers import REPO, agent_env, wait_until
from tests.server.helpers import SimulatedSeal
from tests.server.mqtt_helpers import seal_login

BIN = Path(sys.executable).parent
SECTION = "## Run a court server"


def readme_commands() -> list[str]:
    """The command lines of the section's ``sh`` blocks, continuation lines joined, comments dropped."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n{SECTION}\n")
    end = re.compile(r"^#{2,3} ", re.MULTILINE).search(text, start + len(SECTION) + 2)  # next (sub)section: the upgrade
    section = text[start : end.start() if end else len(text)]
    blocks = re.findall(r"^```sh\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)
    assert blocks, f"no sh block in {SECTION!r}"
    joined = "\n".join(blocks).replace("\\\n", " ")
    lines = [re.sub(r"\s+#\s.*$", "", line).strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


@dataclass
class Substitution:
    """Change every command matching ``pattern`` by ``change``; it must match at least once."""

    pattern: str
    change: str  # "drop", or a replacement for the matched text (re.sub syntax)
    count: int = 0


def substitute(commands: list[str], substitutions: list[Substitution]) -> list[str]:
    result = []
    for command in commands:
        for sub in substitutions:
            if re.search(sub.pattern, command):
                sub.count += 1
                command = "" if sub.change == "drop" else re.sub(sub.pattern, sub.change, command)
            if not command:
                break
        if command:
            result.append(command)
    unused = [sub.pattern for sub in substitutions if not sub.count]
    assert not unused, f"the README no longer has {unused}: update this test with it"
    return result


@dataclass
class Court:
    directory: Path
    script: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    http_port: int
    mqtt_tls_port: int
    seal: SimulatedSeal
    clerk: tuple[str, str]

    def output(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")


@pytest.fixture
def court(tmp_path: Path) -> Iterator[Court]:
    commands = readme_commands()
    assert commands[-1].endswith("seal-server run $S"), commands[-1]
    seal_add = shlex.split(next(c for c in commands if " seal add " in c))
    seal = SimulatedSeal(seal_add[seal_add.index("add") + 1], seal_add[seal_add.index("--case") + 1])
    clerk_add = shlex.split(next(c for c in commands if " user add " in c and "--role clerk" in c))
    clerk = (clerk_add[clerk_add.index("add") + 1], "a long enough clerk password")
    http_port, mqtt_port, mqtt_tls_port = free_port(), free_port(), free_port()
    script = substitute(
        commands,
        [
            Substitution(r"^sudo ", "drop"),
            Substitution(r"^python3 -m venv \.venv", "drop"),
            Substitution(r"^\.venv/bin/", f"{BIN}/"),
            Substitution(
                r"seal-server init (\S+)(.*)$",
                rf"seal-server init \1\2 --http-port {http_port} --mqtt-port {mqtt_port} "
                rf"--mqtt-tls-port {mqtt_tls_port}",
            ),
            Substitution(r"(seal-server user add .*)$", rf"\1 --password-stdin <<< {shlex.quote(clerk[1])}"),
            Substitution(r"<key from the Pi>", seal.public_key),
            Substitution(r"^(\S*seal-server run .*)$", r"exec \1"),
        ],
    )
    env = {k: v for k, v in agent_env().items() if k != "DATABASE_URL"}
    stdout, stderr = tmp_path / "script.out", tmp_path / "script.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            ["bash", "-c", "\n".join(["set -eu", *script])], cwd=tmp_path, env=env, stdout=out, stderr=err
        )
    directory = tmp_path / "court"
    try:
        yield Court(directory, process, stdout, stderr, http_port, mqtt_tls_port, seal, clerk)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        pid_file = directory / "mosquitto.pid"
        if pid_file.exists():  # the broker the README started (as a daemon): stop it by its pid
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
            assert wait_until(lambda: not pid_file.exists(), 30), "the README's mosquitto did not stop"


def test_the_readme_sets_up_a_court_server_that_stores_a_seals_event(court: Court) -> None:
    http = httpx.Client(base_url=f"http://127.0.0.1:{court.http_port}", timeout=5)
    health: dict[str, object] = {}

    def healthy() -> bool:
        nonlocal health
        assert court.script.poll() is None, f"the README's commands stopped:\n{court.output()}"
        try:
            health = http.get("/api/health").json()
        except httpx.HTTPError:
            return False
        return health.get("status") == "ok"

    assert wait_until(healthy, 90, interval=0.2), f"{health}\n{court.output()}"
    assert (health["db"], health["broker"], health["ingest"]) == ("ok", "connected", "ok"), health

    seal = court.seal
    [password] = re.findall(rf"^MQTT password of {seal.device_id} \(shown once;.*\): (\S+)$", court.output(), re.M)
    event = seal.event()
    with seal_login(
        court.mqtt_tls_port, seal.device_id, password, host="localhost", ca_file=court.directory / "tls" / "ca.crt"
    ) as connection:
        connection.publish(seal.event_topic, event)

    token = http.post("/api/auth/login", json={"username": court.clerk[0], "password": court.clerk[1]})
    assert token.status_code == 200, token.text
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

    def stored() -> list[dict[str, object]]:
        page = http.get(f"/api/seals/{seal.device_id}/events", headers=headers)
        assert page.status_code == 200, page.text
        events: list[dict[str, object]] = page.json()["events"]
        return events

    assert wait_until(lambda: bool(stored()), 30), court.output()
    [row] = stored()
    assert (row["seq"], row["case_no"], row["envelope"]) == (1, seal.case_no, event.decode())
