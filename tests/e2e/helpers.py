"""What the end-to-end tests share: running the two programs and writing a seal's configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from seal_dev.broker import PrivateBroker
from tests.agent.helpers import COURT_PUBLIC_KEY

SEAL_SERVER = Path(sys.executable).with_name("seal-server")
SEAL_AGENT = Path(sys.executable).with_name("seal-agent")


def run(*args: str | Path, env: dict[str, str], stdin: str | None = None) -> str:
    """Run a command to completion; fail the test with its stderr unless it exits 0."""
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, timeout=60, input=stdin)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result.stdout


def agent_config(
    directory: Path,
    broker: PrivateBroker,
    device_id: str,
    case_no: str,
    court_key: str = COURT_PUBLIC_KEY,
    *,
    receipt_timeout_s: float = 60,
) -> Path:
    """A seal's config in ``directory`` (Mandarin warning only), with a fresh broker account for it.

    ``court_key``: the court key the seal pins (``seal-server court-key`` prints it). The default is the agent tests'
    key, which no ``seal-server`` holds: such a seal's events reach the court but are never receipted, so it keeps
    them in its outbox."""
    directory.mkdir(parents=True)
    password = os.urandom(9).hex()
    broker.add_user(device_id, password)
    broker.reload()
    (directory / "mqtt-password").write_text(password + "\n")
    path = directory / "seal.toml"
    path.write_text(
        f"""device_id = "{device_id}"
case_no = "{case_no}"
state_dir = "{directory / "state"}"
heartbeat_s = 600
[mqtt]
host = "127.0.0.1"
port = {broker.port}
password_file = "{directory / "mqtt-password"}"
[pir]
pin = 17
[warning]
languages = ["zh"]
[commands]
server_public_key = "{court_key}"
[delivery]
receipt_timeout_s = {receipt_timeout_s}
""",
        encoding="utf-8",
    )
    return path
