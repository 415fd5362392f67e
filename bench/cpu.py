"""CPU seconds of the bench's processes over a phase, read from ``/proc`` (Linux)."""

from __future__ import annotations

import os
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
WORKERS = "ingest workers"  # seal-server ingest --workers: a parent and its worker processes
#: Counted with their living children: the court's verifier process ([mqtt] verifier_process), the workers'.
WITH_CHILDREN = {"court", WORKERS}


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU seconds of process ``pid`` (and of its living children) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / TICK
    if not children:
        return own
    pids = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        pids += [int(child) for child in task.read_text().split()]
    return own + sum(cpu_seconds(child, children=True) for child in pids)


def postgres_cpu() -> dict[int, float]:
    """CPU seconds so far of every PostgreSQL server process on this machine, by pid (any client's backends)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended meanwhile
            continue
        if text.split("(", 1)[1].rsplit(")", 1)[0] == "postgres":
            fields = text.rsplit(")", 1)[1].split()
            found[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / TICK
    return found


class CpuMeter:
    """CPU seconds of some processes over a phase; with a PostgreSQL ``database_url``, also of the server's processes
    (of every client: keep other work off the server while measuring; a backend that ended meanwhile is not
    counted)."""

    def __init__(self, pids: dict[str, int], *, database_url: str = "") -> None:
        self.pids = pids
        self.start = {name: cpu_seconds(pid, children=name in WITH_CHILDREN) for name, pid in pids.items()}
        self.postgres = postgres_cpu() if database_url.startswith("postgresql") else None
        self.t0 = time.monotonic()

    def report(self) -> str:
        wall = time.monotonic() - self.t0
        used = {
            name: cpu_seconds(pid, children=name in WITH_CHILDREN) - self.start[name] for name, pid in self.pids.items()
        }
        parts = [f"{name} {seconds:.1f} s ({100 * seconds / wall:.0f} %)" for name, seconds in used.items()]
        if self.postgres is not None:
            now = postgres_cpu()
            if not now:  # another machine's, another namespace's, or /proc hides it
                parts.append("postgresql server not seen (not measured)")
            else:
                seconds = sum(_since(self.postgres.get(pid, 0.0), used_now) for pid, used_now in now.items())
                parts.append(f"postgresql server {seconds:.1f} s ({100 * seconds / wall:.0f} %)")
        load = os.getloadavg()[0]  # other work on the machine: the figures are ratios in one run for that reason
        return f"CPU over {wall:.1f} s: " + ", ".join(parts) + f"; load average {load:.1f}"


def _since(before: float, now: float) -> float:
    """A process's CPU seconds since ``before``; from 0 if it is a new process that took an ended one's pid."""
    return now - before if now >= before else now
