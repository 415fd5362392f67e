"""A fleet of simulated seals spread over processes: paho's loop uses ``select()``, which cannot watch a descriptor
above 1023, so one process holds about 330 paho clients (three descriptors each). Each member process runs a
:class:`ingest_load.Fleet` of at most :data:`PER_PROCESS` seals and answers the parent's commands over a pipe."""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.connection import Connection
from typing import Any

from ingest_load import BenchSeal, Fleet

PER_PROCESS = 250


def _member(conn: Connection, seals: list[tuple[str, str, list[bytes], list[str]]], port: int, wave: int) -> None:
    fleet_seals = []
    for device_id, password, messages, hashes in seals:
        seal = BenchSeal(device_id, "", password=password)
        seal.messages, seal.hashes = messages, hashes
        fleet_seals.append(seal)
    fleet = Fleet(fleet_seals, port, wave=wave)
    fleet.wait_connected(1200)
    conn.send("connected")
    while True:
        command: Any = conn.recv()
        if command[0] == "publish":
            conn.send(fleet.publish(command[1], command[2]))
        elif command[0] == "receipts":
            first, last, timeout = command[1], command[2], command[3]
            wanted = {seal.hashes[i] for seal in fleet_seals for i in range(first - 1, last)}
            ok = fleet.wait_receipts(wanted, timeout)
            conn.send((ok, max((fleet.receipted.get(h, 0.0) for h in wanted), default=0.0)))
        else:
            fleet.close()
            conn.send("closed")
            return


class ProcessFleet:
    """The same seals as a :class:`Fleet`, in member processes; :meth:`publish` and :meth:`wait_receipts` act on
    every member at once."""

    def __init__(self, seals: list[BenchSeal], port: int, *, wave: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipes: list[Connection] = []
        self._members = []
        for start in range(0, len(seals), PER_PROCESS):
            chunk = [(s.device_id, s.password, s.messages, s.hashes) for s in seals[start : start + PER_PROCESS]]
            parent, child = context.Pipe()
            process = context.Process(target=_member, args=(child, chunk, port, wave), daemon=True)
            process.start()
            self._pipes.append(parent)
            self._members.append(process)

    def wait_connected(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for pipe in self._pipes:
            if not pipe.poll(max(0.0, deadline - time.monotonic())) or pipe.recv() != "connected":
                raise TimeoutError("not every bench seal connected")

    def publish(self, first: int, last: int) -> tuple[float, float]:
        for pipe in self._pipes:
            pipe.send(("publish", first, last))
        times = [pipe.recv() for pipe in self._pipes]
        return min(t[0] for t in times), max(t[1] for t in times)

    def wait_receipts(self, first: int, last: int, timeout: float) -> float | None:
        """The wall-clock time of the last receipt for events ``first``..``last`` of every seal; None on timeout."""
        for pipe in self._pipes:
            pipe.send(("receipts", first, last, timeout))
        answers = [pipe.recv() for pipe in self._pipes]
        return max(t for _, t in answers) if all(ok for ok, _ in answers) else None

    def close(self) -> None:
        for pipe in self._pipes:
            pipe.send(("close",))
        for pipe, process in zip(self._pipes, self._members, strict=True):
            pipe.poll(30) and pipe.recv()
            process.join(30)
