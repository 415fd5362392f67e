"""``seal-server end-sessions`` on a real Mosquitto: a stopped worker's persistent session stops taking its share of
the shared group's messages once ended, and a worker that is still running is reported, not silently taken over."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from seal_dev.broker import PrivateBroker, free_port
from seal_protocol import EventType
from server.cli import main
from server.config import MqttSettings
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.core.mqtt import make_client
from server.ingest.ingestor import Ingestor
from server.ingest.models import ChainState
from server.ingest.mqtt import MqttIngest
from server.ingest.running_here import roles_running_here
from server.marks.marks import read_marks
from tests.agent.helpers import wait_until
from tests.server.helpers import CASE_A, SimulatedSeal, register
from tests.server.ingest_processes import WAIT_S, ProcessOutput, start_ingest, stopping, stored_seqs
from tests.server.mqtt_helpers import SealConnection, seal_connection, server_mqtt_settings
from tests.server.test_cli import write_config

FIRST, THEN = 20, 10


def _member(settings: MqttSettings, session_factory: SessionFactory, tmp_path: Path, index: int) -> MqttIngest:
    """Worker ``index`` of ``seal-server ingest --workers N`` (its client id), subscribed."""
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    member = MqttIngest(settings, ingestor, role=f"ingest-{index}")
    member.start()
    assert member.wait_subscribed(WAIT_S), f"worker {index} did not subscribe"
    return member


def _publish(conn: SealConnection, seal: SimulatedSeal, payloads: list[bytes]) -> None:
    for payload in payloads:
        conn.publish(seal.event_topic, payload)


def _session_kept(settings: MqttSettings, role: str) -> bool:
    """Whether the broker holds a session for ``role``'s client id (which this look ends: session expiry 0)."""
    client = make_client(settings, role=role)
    present: list[bool] = []
    client.on_connect = lambda _c, _u, flags, _rc, _p: present.append(flags.session_present)
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 0
    client.connect(settings.host, settings.port, clean_start=False, properties=properties)
    client.loop_start()
    try:
        assert wait_until(lambda: bool(present), WAIT_S), "no CONNACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return present[0]


def test_ending_a_stopped_workers_session_gives_the_group_every_message_again(
    broker: PrivateBroker,
    database_url: str,
    session_factory: SessionFactory,
    tmp_path: Path,
) -> None:
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    # gap_wait_s 0: the remaining worker stores what follows a gap at once rather than wait for the stopped one
    settings = server_mqtt_settings(broker, tmp_path).model_copy(update={"shared_group": "court-ingest"})
    config = write_config(tmp_path, database_url, mqtt_port=broker.port)
    payloads = {seq: seal.event(EventType.HEARTBEAT) for seq in range(1, FIRST + THEN + 1)}
    remaining = _member(settings, session_factory, tmp_path, 1)
    try:
        _member(settings, session_factory, tmp_path, 2).stop()  # worker 2 taken away: its session stays a member
        with seal_connection(broker, seal.device_id) as conn:
            _publish(conn, seal, [payloads[seq] for seq in range(1, FIRST + 1)])
            assert main(["end-sessions", "--worker", "2", "--config", str(config)]) == 0
            with session_factory() as session:  # its caught-up mark no longer holds the judging back
                assert f"{settings.client_id}-ingest-2" not in {mark.worker for mark in read_marks(session)}
            _publish(conn, seal, [payloads[seq] for seq in range(FIRST + 1, FIRST + THEN + 1)])
            later = set(range(FIRST + 1, FIRST + THEN + 1))
            assert wait_until(lambda: later <= set(stored_seqs(session_factory)), WAIT_S), stored_seqs(session_factory)
            # The broker sends one session's messages in order: what worker 1 got of the first ones is stored too.
            first = set(stored_seqs(session_factory)) - later
            assert 0 < len(first) < FIRST, f"the stopped worker's session took no share: {sorted(first)}"

            # The seal sends again what no receipt named: the gap fills, nothing is lost.
            _publish(conn, seal, [payloads[seq] for seq in sorted(set(range(1, FIRST + 1)) - first)])
            everything = sorted(payloads)
            assert wait_until(lambda: stored_seqs(session_factory) == everything, WAIT_S), stored_seqs(session_factory)
        with session_factory() as session:
            chain = session.get(ChainState, seal.device_id)
            assert chain is not None and (chain.max_seq, chain.missing) == (FIRST + THEN, [])

        assert not _session_kept(settings, "ingest-2"), "worker 2's session is still there"
    finally:
        remaining.stop()


def test_a_running_worker_is_reported_and_goes_on(
    broker: PrivateBroker,
    database_url: str,
    session_factory: SessionFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    settings = server_mqtt_settings(broker, tmp_path).model_copy(update={"shared_group": "court-ingest"})
    config = write_config(tmp_path, database_url, mqtt_port=broker.port)
    running = _member(settings, session_factory, tmp_path, 1)
    try:
        capsys.readouterr()
        assert main(["end-sessions", "--workers", "2", "--run", "--config", str(config)]) == 1
        lines = capsys.readouterr().out.splitlines()
        outcomes = [line.split(": ", 1)[1].split(":")[0] for line in lines]
        assert outcomes == ["session ended", "TAKEN BACK", "session ended"], lines
        names = [line.split(": ", 1)[0] for line in lines]
        assert names == [f"court-server-ingest{role}-…" for role in ("", "-ingest-1", "-ingest-2")], lines

        # It took its session back and subscribed again: it stores what the seal sends.
        assert running.wait_subscribed(WAIT_S)
        with seal_connection(broker, seal.device_id) as conn:
            _publish(conn, seal, [seal.event(EventType.HEARTBEAT) for _ in range(5)])
            five = [1, 2, 3, 4, 5]
            assert wait_until(lambda: stored_seqs(session_factory) == five, WAIT_S), stored_seqs(session_factory)
    finally:
        running.stop()


def test_a_worker_running_here_is_refused_before_its_session_is_touched(
    broker: PrivateBroker,
    database_url: str,
    session_factory: SessionFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server_mqtt_settings(broker, tmp_path)  # the court account's password, in the file the configuration names
    config = write_config(tmp_path, database_url, mqtt_port=broker.port)
    process = start_ingest(config, 1)
    output = ProcessOutput(process)
    with stopping(process):
        connected = "connected to the broker (session present"
        assert wait_until(lambda: output.count(connected) == 1 or process.poll() is not None, WAIT_S), output.lines
        capsys.readouterr()
        assert main(["end-sessions", "--workers", "2", "--config", str(config)]) == 1
        refusal = capsys.readouterr().err
        assert "refused" in refusal and f"court-server-ingest-ingest-1-… (process {process.pid})" in refusal, refusal
        assert main(["end-sessions", "--worker", "2", "--config", str(config)]) == 0  # not one of its workers
    text = output.text()
    assert process.returncode == 0, text
    assert output.count(connected) == 1 and "disconnected from the broker" not in text, text


def test_the_sessions_must_be_named(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)
    assert main(["end-sessions", "--config", str(config)]) == 2
    assert main(["end-sessions", "--worker", "0", "--config", str(config)]) == 2


def test_a_refused_login_or_an_unreachable_broker_ends_nothing_and_says_why(
    broker: PrivateBroker, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, database_url, mqtt_port=broker.port)  # a wrong password for the court account
    assert main(["end-sessions", "--worker", "1", "--config", str(config)]) == 1
    captured = capsys.readouterr()
    assert (
        captured.out
        == "court-server-ingest-ingest-1-…: not ended: the broker refused the connection or did not answer\n"
    )
    assert "session of ingest-1 (client id court-server-ingest-ingest-1-…): refused (Not authorized)" in captured.err, (
        captured.err
    )

    config = write_config(tmp_path, database_url, mqtt_port=free_port())
    assert main(["end-sessions", "--worker", "1", "--config", str(config)]) == 1
    assert "cannot reach the broker at 127.0.0.1:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options",
    [
        ["--conf", "{config}", "--worker", "3"],  # argparse takes a prefix of an option's name
        ["--config={config}", "--workers=3"],
    ],
    ids=["abbreviated", "equals"],
)
def test_a_worker_started_with_any_spelling_of_its_options_is_seen_running(options: list[str], tmp_path: Path) -> None:
    """The command lines of this machine's processes, as argparse would read them: a process whose argv is that of
    ``seal-server ingest … --workers 3`` (here a Python that sleeps, under that name) holds workers 1 to 3."""
    config = tmp_path / "server.toml"
    config.write_text("")
    argv = ["seal-server", "-c", "import time; time.sleep(60)", "ingest", *(o.format(config=config) for o in options)]
    process = subprocess.Popen(argv, executable=sys.executable, cwd=tmp_path)
    try:
        assert wait_until(lambda: roles_running_here(config).get("ingest-3") == process.pid, 10)
        assert {"ingest-1", "ingest-2"} <= roles_running_here(config).keys()
    finally:
        process.kill()
        process.wait()
