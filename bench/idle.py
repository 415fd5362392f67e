"""Idle cost of a ``seal-agent simulate`` process: CPU (% of one core) and memory, read from /proc/<pid>."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench_support import Court, write_config

from seal_dev.broker import PrivateBroker

SEAL_AGENT = Path(sys.executable).with_name("seal-agent")


@dataclass
class IdleFigures:
    label: str
    cpu_percent: float
    rss_mb: float
    peak_rss_mb: float
    threads: int


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, all threads


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def write_clip(path: Path, frames: int = 100, fps: float = 10.0) -> Path:
    """A 640x480 MJPG clip of a still, textured room with sensor noise (what a Pi camera at VGA would see)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(7)
    coarse = rng.integers(30, 220, (30, 40, 3), dtype=np.uint8)
    room = np.asarray(cv2.resize(coarse, (640, 480), interpolation=cv2.INTER_CUBIC), dtype=np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (640, 480))
    for _ in range(frames):
        noise = rng.normal(0, 2, room.shape).astype(np.int16)
        writer.write(np.asarray(np.clip(room.astype(np.int16) + noise, 0, 255), dtype=np.uint8))
    writer.release()
    return path


def measure_idle(
    work: Path, broker: PrivateBroker, court: Court, label: str, seconds: float, camera: Path | None
) -> IdleFigures:
    """One ``seal-agent simulate`` pinning ``court``'s key (which receipts its ``agent_started``), measured idle."""
    directory = work / f"idle-{label}"
    config = write_config(directory, broker, court, device_id=f"seal-bench-idle-{label}")
    sink_conf = directory / "alsa-file.conf"
    sink_conf.write_text(f'pcm.!default {{ type file; slave.pcm {{ type null }}; file "{directory}/out.raw"; '
                         'format "raw" }\n')  # fmt: skip
    env = dict(os.environ, ALSA_CONFIG_PATH=str(sink_conf), PYTHONUNBUFFERED="1")
    args = [str(SEAL_AGENT), "simulate", "--config", str(config)]
    if camera is not None:
        args += ["--camera-file", str(camera)]
    log = directory / "agent.log"
    with log.open("w") as err:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env)
    try:
        deadline = time.monotonic() + 15
        while "connected to mqtt" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        time.sleep(5.0)  # settle: start-up, the camera's background learning
        cpu0, wall0 = proc_cpu_s(process.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, wall1 = proc_cpu_s(process.pid), time.monotonic()
        status = proc_status(process.pid)
    finally:
        process.terminate()
        process.wait(15)
    return IdleFigures(
        label=label,
        cpu_percent=100 * (cpu1 - cpu0) / (wall1 - wall0),
        rss_mb=int(status["VmRSS"].split()[0]) / 1024,
        peak_rss_mb=int(status["VmHWM"].split()[0]) / 1024,
        threads=int(status["Threads"]),
    )
