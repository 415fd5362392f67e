"""``seal-server ingest --workers 2``: two worker processes share one stream through the broker; SIGTERM stops
both cleanly, also one sent to every process while they start. Without ``[mqtt] shared_group`` several workers are
refused (each would take every message), and so are workers one of whose metrics ports is taken."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from seal_dev.broker import PrivateBroker, free_port
from server.core.db import SessionFactory
from server.ingest.models import QuarantinedMessage
from tests.server.helpers import CASE_A, SimulatedSeal, register
from tests.server.ingest_processes import (
    WAIT_S,
    ProcessOutput,
    child_pids,
    cmdline_of,
    first_event_stored,
    ingest_config,
    start_ingest,
    stopping,
    stored_seqs,
)
from tests.server.mqtt_helpers import seal_connection

EVENTS = 40


def test_two_worker_processes_share_the_stream(
    broker: PrivateBroker, database_url: str, session_factory: SessionFactory, tmp_path: Path
) -> None:
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    config = ingest_config(tmp_path / "server.toml", database_url, broker, group="court-ingest")
    process = start_ingest(config, 2)
    output = ProcessOutput(process)
    with stopping(process):
        deadline = time.monotonic() + WAIT_S
        # messages published before a subscription go nowhere; the ingest's own line (the live feed logs that it
        # connected too)
        while output.count("connected to the broker (session present") < 2:
            assert time.monotonic() < deadline and process.poll() is None, (
                f"the workers did not connect: {output.lines}"
            )
            time.sleep(0.05)
        with seal_connection(broker, seal.device_id) as conn:
            assert first_event_stored(conn, seal, session_factory, each_s=5, within_s=WAIT_S), output.text()
            sent = [conn.client.publish(seal.event_topic, seal.event(), qos=1) for _ in range(EVENTS - 1)]
            for info in sent:
                info.wait_for_publish(WAIT_S)
            deadline = time.monotonic() + WAIT_S
            while len(stored_seqs(session_factory)) < EVENTS:
                assert time.monotonic() < deadline, f"only {len(stored_seqs(session_factory))} of {EVENTS} stored"
                time.sleep(0.05)
    text = output.text()
    assert process.returncode == 0, text
    assert "ingest worker ingest-1 running" in text and "ingest worker ingest-2 running" in text
    # Each says which session is its own (the broker's client id, but for its secret suffix).
    assert all(f"(client id court-server-ingest-ingest-{i}-…)" in text for i in (1, 2)), text
    assert stored_seqs(session_factory) == list(range(1, EVENTS + 1))
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(QuarantinedMessage)) == 0


def test_several_workers_need_a_shared_group(broker: PrivateBroker, tmp_path: Path) -> None:
    config = ingest_config(tmp_path / "server.toml", f"sqlite:///{tmp_path / 'c.db'}", broker, group="")
    process = start_ingest(config, 2)
    output = process.communicate(timeout=60)[0].decode(errors="replace")
    assert process.returncode == 2
    assert "[mqtt] shared_group" in output


@pytest.mark.parametrize("busy", [1, 2])
def test_workers_one_of_whose_metrics_ports_is_taken_are_refused_before_any_starts(
    busy: int, broker: PrivateBroker, tmp_path: Path
) -> None:
    """Worker ``busy``'s port (``metrics_port + busy - 1``) is held by another process: the command says which, exits
    with a configuration error, and starts no worker. Before, the workers started, the one with the busy port failed,
    and the others were stopped (exit status 1)."""
    metrics_port, taken = port_after_a_taken_one() if busy == 2 else taken_port()
    with taken:
        config = ingest_config(tmp_path / "server.toml", f"sqlite:///{tmp_path / 'c.db'}", broker, group="court")
        with config.open("a", encoding="utf-8") as toml:
            toml.write(f"[ingest]\nmetrics_port = {metrics_port}\n")
        process = start_ingest(config, 2)
        output = process.communicate(timeout=60)[0].decode(errors="replace")
    assert process.returncode == 2, output
    busy_port = metrics_port + busy - 1
    said = f"ingest worker {busy} cannot listen on its metrics port, no worker started"
    assert said in output, output
    assert f"cannot listen on 127.0.0.1:{busy_port}: Address already in use (另一个进程占用了该端口？" in output, output
    assert "ingest worker" not in output.replace(said, ""), output  # none ran


def taken_port() -> tuple[int, socket.socket]:
    """A port of 127.0.0.1 and the listening socket that holds it."""
    taken = socket.create_server(("127.0.0.1", 0))
    return taken.getsockname()[1], taken


def port_after_a_taken_one() -> tuple[int, socket.socket]:
    """A free port of 127.0.0.1 and a listening socket holding the next one."""
    for _ in range(50):
        port = free_port()
        try:
            return port, socket.create_server(("127.0.0.1", port + 1))
        except OSError:  # the next one is someone else's: try another
            continue
    raise AssertionError("no free port followed by a free one")


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "systemd-stop"])
def test_a_stop_sent_to_every_process_while_the_workers_start_ends_them_cleanly(
    broker: PrivateBroker,
    database_url: str,
    session_factory: SessionFactory,
    tmp_path: Path,
    stop: signal.Signals,
) -> None:
    """A Ctrl-C (every process of the terminal's group) or systemd's stop (every process of the unit) while the
    workers import their modules, before they can stop: each stops once it can, without a KeyboardInterrupt
    traceback and without dying of the signal (the parent, which sends them SIGTERM as well, would exit 1)."""
    config = ingest_config(tmp_path / "server.toml", database_url, broker, group="court-ingest")
    process = start_ingest(config, 2)
    try:
        deadline = time.monotonic() + WAIT_S
        while sum(b"spawn_main" in cmdline_of(pid) for pid in child_pids(process.pid)) < 2:
            assert time.monotonic() < deadline and process.poll() is None, "the workers did not start"
            time.sleep(0.01)
        os.killpg(process.pid, stop)
        output = process.communicate(timeout=60)[0].decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Traceback" not in output, output
    assert process.returncode == 0, output
