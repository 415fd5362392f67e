"""The court server as its own process (``seal-server run``) on a private broker and a SQLite database, for the page
tests and the dashboard bench: stopped and started again on the same port and database, as an operator would.

:class:`CourtProcess` writes the server's settings (with a command key, so that seals get receipts), creates the
tables, and runs this checkout's code (``PYTHONPATH`` first). :func:`seal_config` writes a seal's configuration on
the same broker, pinning that court's key, optionally with a video file as its camera.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from seal_dev.broker import PrivateBroker, free_port
from seal_protocol.signing import load_or_create_signing_key, public_key_b64
from server.config import load_settings
from server.core.db import READ_ONLY, SessionFactory, make_engine, make_session_factory
from server.migrations.run import init_db
from server.seals.broker_files import SERVER_USERNAME
from server.stores import make_store_roots

ROOT = Path(__file__).resolve().parent.parent
SEAL_SERVER = Path(sys.executable).with_name("seal-server")


@dataclass
class CourtProcess:
    """``seal-server run`` with its files in ``directory``; :meth:`start`, :meth:`stop`, and start again."""

    directory: Path
    broker: PrivateBroker
    #: More TOML, appended to the settings (e.g. ``"[web]\\nheartbeat_s = 1\\n"``).
    extra_settings: str = ""
    #: More keys of ``[http]`` (e.g. ``"limit_concurrency = 16\\n"``), which the settings already open.
    http_settings: str = ""
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    #: Another database than the SQLite file in ``directory`` (e.g. a PostgreSQL URL for a bench).
    database: str | None = None

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        key, _created = load_or_create_signing_key(self.directory / "command.key")
        self.court_public_key = public_key_b64(key)
        load_or_create_signing_key(self.directory / "notice.key")
        (self.directory / "server-mqtt-password").write_text(self.broker.users[SERVER_USERNAME] + "\n")
        self.database_url = self.database or f"sqlite:///{self.directory / 'court.sqlite'}"
        self.config_path.write_text(self._settings(), encoding="utf-8")
        engine = make_engine(self.database_url)
        try:
            init_db(engine)
        finally:
            engine.dispose()
        make_store_roots(load_settings(self.config_path))  # as `seal-server init-db` does: never made by a write
        self._engine = make_engine(self.database_url)
        self.session_factory: SessionFactory = make_session_factory(self._engine)
        #: Sessions that only read: on SQLite they begin DEFERRED, so that polling the court's database while it is
        #: measured takes no write lock (a poll that does waits in SQLite's busy handler, up to 100 ms a sleep).
        self.reader: SessionFactory = make_session_factory(self._engine.execution_options(**READ_ONLY))

    @property
    def config_path(self) -> Path:
        return self.directory / "server.toml"

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _settings(self) -> str:
        d = self.directory
        return f"""database_url = "{self.database_url}"
snapshot_dir = "{d / "snapshots"}"
[http]
host = "127.0.0.1"
port = {self.port}
{self.http_settings}
[mqtt]
host = "127.0.0.1"
port = {self.broker.port}
username = "{SERVER_USERNAME}"
password_file = "{d / "server-mqtt-password"}"
batch_size = 200
[auth]
cookie_secure = false
[commands]
signing_key_file = "{d / "command.key"}"
[notices]
key_file = "{d / "notice.key"}"
public_base_url = "https://seal.court.example"
{self.extra_settings}"""

    def start(self, timeout: float = 90.0) -> None:
        """Start the server and wait until it answers with its broker connected."""
        assert self.process is None or self.process.poll() is not None, "already running"
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        with self.log_path.open("ab") as log:
            command = [str(SEAL_SERVER), "run", "--config", str(self.config_path)]
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"seal-server exited with {self.process.returncode}: {self.log_tail()}")
            if self.health().get("broker") == "connected":
                return
            time.sleep(0.1)
        raise TimeoutError(f"seal-server not ready in {timeout} s: {self.log_tail()}")

    def stop(self, timeout: float = 60.0) -> int:
        """Stop the server as systemd would (SIGTERM); return its exit status."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return process.returncode if process is not None else 0
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self._engine.dispose()

    def health(self) -> dict[str, object]:
        try:
            with urllib.request.urlopen(f"{self.url}/api/health", timeout=2) as response:
                answer: dict[str, object] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as exc:
            answer = json.loads(exc.read() or b"{}")
            return answer
        except (OSError, ValueError):
            return {}

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def seal_config(
    directory: Path,
    broker: PrivateBroker,
    *,
    device_id: str,
    case_no: str,
    court_public_key: str,
    camera_file: Path | None = None,
    heartbeat_s: float = 600,
    warning: str = "",
    sensors: str = "",
) -> Path:
    """A seal's configuration in ``directory`` (Mandarin warning, PIR on pin 17, no lid switch), with a broker account
    for it and, given ``camera_file``, that video as its camera (snapshots on every trigger). ``warning``: more
    lines of its ``[warning]`` section (e.g. ``"cooldown_s = 0"``); ``sensors``: lines of its ``[sensors]`` (e.g. a
    ``trigger_burst`` above the edges a bench fires, which a real PIR's bound would merge as flapping)."""
    directory.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    broker.add_user(device_id, password)
    broker.reload()
    (directory / "mqtt-password").write_text(password + "\n")
    camera = ""
    if camera_file is not None:
        camera = f"""[camera]
source = "{camera_file}"
fps = 10.0
ring_seconds = 1.0
motion_learning_frames = 3
snapshot_before_s = 0.3
snapshot_after_s = 0.5
snapshot_max_frames = 2
motion_window_s = 0.5
"""
    path = directory / "seal.toml"
    path.write_text(
        f"""device_id = "{device_id}"
case_no = "{case_no}"
state_dir = "{directory / "state"}"
heartbeat_s = {heartbeat_s}
[mqtt]
host = "127.0.0.1"
port = {broker.port}
password_file = "{directory / "mqtt-password"}"
keepalive_s = 10
[pir]
pin = 17
[warning]
languages = ["zh"]
{warning}
[tamper]
enabled = false
[commands]
server_public_key = "{court_public_key}"
[delivery]
receipt_timeout_s = 30
[sensors]
{sensors}
{camera}""",
        encoding="utf-8",
    )
    return path
