"""Shared parts of the agent bench: percentiles, the machine, the FIFO sound card, the court, a seal configuration."""

from __future__ import annotations

import os
import platform
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# seal_dev (the throw-away Mosquitto) is not installed with the product: import it from this checkout, as
# scripts/demo.py does. Every bench script imports this module before seal_dev.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from seal_agent.interfaces import WarningPlayback  # noqa: E402
from seal_dev.broker import PrivateBroker  # noqa: E402
from seal_protocol.signing import load_or_create_signing_key, public_key_b64  # noqa: E402
from server.seals.broker_files import SERVER_USERNAME  # noqa: E402

DEVICE = "seal-bench-1"
PIR_PIN = 17
#: gpiozero ignores a second edge within the PIR's bounce window (0.05 s): edges are spaced by more than that.
EDGE_GAP_S = 0.06
#: Triggers (and plays) done first and not counted: the first ALSA open reads its configuration.
WARM_UP = 5


class SilentSpeaker:
    """A seal's speaker whose warning "plays" at once (the speaker's latency is bench/agent_latency.py's business)."""

    def play_warning(self) -> WarningPlayback | None:
        playback = WarningPlayback(("zh",))
        playback.finished("zh", "played")
        playback.end()
        return playback

    def stop(self) -> None:
        pass

    def is_playing(self) -> bool:
        return False


# -- statistics and output -----------------------------------------------------------------------------------------


@dataclass
class Series:
    name: str
    values: list[float] = field(default_factory=list)  # seconds

    def quantile(self, q: float) -> float:
        ordered = sorted(self.values)
        return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))]  # nearest rank

    def row(self, baseline: Series | None = None, target_ms: float | None = None) -> str:
        p50, p99, top = (1000 * v for v in (self.quantile(0.5), self.quantile(0.99), max(self.values)))
        text = f"{self.name:<58} n={len(self.values):<4} p50 {p50:8.3f}  p99 {p99:8.3f}  max {top:8.3f} ms"
        if baseline is not None:
            text += f"  p50 x{p50 / (1000 * baseline.quantile(0.5)):.1f} of baseline"
        if target_ms is not None:
            text += f"  target p99 <= {target_ms:g} ms: {'met' if p99 <= target_ms else 'MISSED'}"
        return text


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} logical CPUs, {platform.machine()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


# -- the FIFO sound card --------------------------------------------------------------------------------------------


class FifoSink:
    """Reads what ALSA writes to the FIFO; :meth:`arm` before a play, then :attr:`first` is when bytes came."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDWR)  # read-write: reads block (no EOF) between ALSA's opens
        self._lock = threading.Lock()
        self.first = threading.Event()
        self.first_at = 0.0
        self.bytes = 0
        threading.Thread(target=self._read, name="bench-fifo", daemon=True).start()

    def arm(self) -> None:
        with self._lock:
            self.first.clear()
            self.bytes = 0

    def wait_bytes(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.bytes >= count:
                    return True
            time.sleep(0.002)
        return False

    def _read(self) -> None:
        while True:
            data = os.read(self._fd, 1 << 16)
            now = time.perf_counter()
            with self._lock:
                if not self.first.is_set():
                    self.first_at = now
                    self.first.set()
                self.bytes += len(data)


# -- the court -----------------------------------------------------------------------------------------------------


class Court:
    """``bench/court.py`` in its own process: receipts, signed with a court key made for this run, every event and
    snapshot any bench seal sends (so that outboxes drain as they do with a court server that keeps up).

    Every config from :func:`write_config` pins :attr:`public_key`. :meth:`close` ends it and returns its last words.
    """

    def __init__(self, directory: Path, broker: PrivateBroker) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        key_file = directory / "court-signing.key"
        self.public_key = public_key_b64(load_or_create_signing_key(key_file)[0])  # a new key: a new directory
        password_file = directory / "court-mqtt-password"
        password_file.write_text(broker.users[SERVER_USERNAME] + "\n")
        self._log = (directory / "court.log").open("w")
        args = [sys.executable, str(Path(__file__).with_name("court.py")), "--port", str(broker.port)]
        args += ["--password-file", str(password_file), "--key-file", str(key_file)]
        self._process = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True
        )
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "ready":
            self.close()
            raise RuntimeError(f"the bench court did not start; see {directory / 'court.log'}")

    def close(self) -> str:
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        if process.poll() is None:
            process.stdin.close()
        try:
            words = process.stdout.read().strip()
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            words = "killed"
        self._log.close()
        return words


# -- seal configuration ---------------------------------------------------------------------------------------------


def write_config(
    directory: Path, broker: PrivateBroker, court: Court, *, device_id: str = DEVICE, camera: Path | None = None
) -> Path:
    """A seal that warns on every presence (no cool-down, no repeats) in Mandarin only; no tamper switch; it pins
    ``court``'s key (``[delivery]`` keeps its defaults: a receipt not come within 60 s would mean a re-send).

    ``camera``: a video file played as the camera (defaults, but post-trigger snapshots for 0.5 s only, so that the
    follow-ups of edges 0.12 s apart do not pile up); None: no camera.
    """
    directory.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    broker.add_user(device_id, password)
    broker.reload()
    (directory / "mqtt-password").write_text(password + "\n")
    path = directory / "seal.toml"
    path.write_text(
        f'device_id = "{device_id}"\ncase_no = "(2021)苏0214执1234号"\nstate_dir = "{directory / "state"}"\n'
        f'heartbeat_s = 3600\n[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n'
        f'password_file = "{directory / "mqtt-password"}"\n'
        '[pir]\npin = 17\n[warning]\nlanguages = ["zh"]\nrepeat_s = 3600\nmax_repeats = 0\ncooldown_s = 0\n'
        "[tamper]\nenabled = false\n"
        f'[commands]\nserver_public_key = "{court.public_key}"\n'
        + ("" if camera is None else f'[camera]\nsource = "{camera}"\nsnapshot_after_s = 0.5\n'),
        encoding="utf-8",
    )
    return path


class Stamp:
    def __init__(self) -> None:
        self.at = 0.0
        self.value = 0
        self.event = threading.Event()

    def mark(self, value: int = 0) -> None:
        self.at, self.value = time.perf_counter(), value
        self.event.set()
