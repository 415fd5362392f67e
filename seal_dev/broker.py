"""A private Mosquitto process for the demo, the tests and the benchmarks, configured as the court's broker is."""

from __future__ import annotations

import logging
import random
import resource
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.seals.broker_config import (
    MAX_INFLIGHT_BYTES,
    MAX_INFLIGHT_MESSAGES,
    BrokerFiles,
    MosquittoConfig,
    TlsListener,
)
from server.seals.broker_files import BrokerError, acl_text, write_password_file

logger = logging.getLogger(__name__)


def stop_process(process: subprocess.Popen[Any], timeout: float = 10) -> None:
    """SIGTERM, and SIGKILL if ``process`` has not ended within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now, taken below the kernel's ephemeral range: a port from that range
    (what binding port 0 gives) can be handed to any outgoing connection before our server binds it."""
    low = _ephemeral_low()
    for _attempt in range(200):
        port = random.randrange(10_000, low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # a crowded machine: fall back on what the kernel picks
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ephemeral_low() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return max(low, 10_001)


@dataclass
class PrivateBroker:
    """A Mosquitto of our own with the court's configuration (:mod:`server.seals.broker_config`) on a free port of
    127.0.0.1 (no TLS listener unless ``tls``); stop it with :meth:`stop`.

    Its files are named as in the court's directory (:class:`BrokerFiles`). Two deliberate differences from the
    court's broker: it saves its store every second (``autosave_interval_s``; tests kill it and count what
    survived), and it is not daemonised, so :meth:`start` writes the pid file Mosquitto writes only with ``-d``."""

    directory: Path
    users: dict[str, str] = field(default_factory=dict)
    port: int = 0
    persistence: bool = True
    #: False when the password and ACL files in ``directory`` are written by someone else (the provisioning).
    manage_accounts: bool = True
    tls: TlsListener | None = None
    autosave_interval_s: int = 1
    #: The court's window (1,000) unless a test needs one it can fill.
    max_inflight_messages: int = MAX_INFLIGHT_MESSAGES
    max_inflight_bytes: int = MAX_INFLIGHT_BYTES
    #: ACL lines written after the court's (:func:`acl_text`): the rules of a test's own accounts.
    extra_acl: str = ""
    #: The broker's limit of open files (soft and hard), as the court's unit sets it with ``LimitNOFILE=``; None:
    #: this process's.
    open_files: int | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()

    @property
    def files(self) -> BrokerFiles:
        return BrokerFiles(self.directory)

    @property
    def config(self) -> MosquittoConfig:
        return MosquittoConfig(
            self.files,
            local_port=self.port,
            tls=self.tls,
            persistence=self.persistence,
            autosave_interval_s=self.autosave_interval_s,
            max_inflight_messages=self.max_inflight_messages,
            max_inflight_bytes=self.max_inflight_bytes,
        )

    @property
    def conf_path(self) -> Path:
        return self.files.conf_file

    @property
    def log_path(self) -> Path:
        return self.files.log_file

    def add_user(self, name: str, password: str) -> None:
        """Add or change an account; takes effect at the next :meth:`start` or :meth:`reload`."""
        self.users[name] = password
        self.write_files()

    @property
    def password_file(self) -> Path:
        return self.files.password_file

    @property
    def acl_file(self) -> Path:
        return self.files.acl_file

    @property
    def pid_file(self) -> Path:
        """Written by us: Mosquitto writes its own pid file only when it daemonises."""
        return self.files.pid_file

    def write_files(self) -> None:
        if self.manage_accounts:
            write_password_file(self.password_file, self.users)
            self.acl_file.write_text(acl_text() + self.extra_acl)
        self.files.persistence_dir.mkdir(exist_ok=True)
        self.conf_path.write_text(self.config.render())

    def start(self, timeout: float = 10.0) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise BrokerError("mosquitto not found: install the 'mosquitto' package")
        self.write_files()
        self._process = subprocess.Popen(
            [exe, "-c", str(self.conf_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if self.open_files is not None:  # what LimitNOFILE= does; it bounds the descriptors opened from now on
            resource.prlimit(self._process.pid, resource.RLIMIT_NOFILE, (self.open_files, self.open_files))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                raise BrokerError(
                    f"mosquitto exited with {self._process.returncode}: {err.strip()} {self._log_tail()}".strip()
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    self.pid_file.write_text(f"{self._process.pid}\n")
                    logger.info("private mosquitto listening on 127.0.0.1:%d", self.port)
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on port {self.port} within {timeout} s")

    def _log_tail(self, lines: int = 5) -> str:
        """Mosquitto reports most start-up problems in its log file, not on stderr."""
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def reload(self) -> None:
        """Re-read password and ACL files (SIGHUP)."""
        self.write_files()
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(1)

    def stop(self) -> None:
        self.pid_file.unlink(missing_ok=True)
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        stop_process(process)
        if process.stderr:
            process.stderr.close()

    def __enter__(self) -> PrivateBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
