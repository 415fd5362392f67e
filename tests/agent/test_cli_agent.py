"""``seal-agent`` as a process: keygen, simulate with a real ALSA file sink, SIGTERM and SIGKILL."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import time
import wave
from pathlib import Path

import pytest

from seal_agent.config import DEFAULT_SOUNDS_DIR, load_config
from seal_agent.journal.outbox import Outbox
from seal_dev.broker import PrivateBroker
from seal_protocol import EventType, SealStatus, envelope_hash
from seal_protocol.signing import verify_key_from_b64
from tests.agent.helpers import (
    SEAL_AGENT,
    CourtSubscriber,
    agent_env,
    check_chain,
    start_agent,
    wait_until,
    warning_outcome,
    write_config,
)

DEVICE = "seal-test-1"


def keygen(config: Path, *, simulated: bool = True) -> str:
    """``seal-agent keygen``, by default ``--simulated`` (the key of a seal ``simulate`` runs)."""
    flags = ["--simulated"] if simulated else []
    result = subprocess.run(
        [str(SEAL_AGENT), "keygen", *flags, "--config", str(config)], capture_output=True, text=True, env=agent_env()
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def stop(process: subprocess.Popen[str], log: Path) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        assert process.wait(timeout=60) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_keygen_creates_a_private_key_once_and_prints_only_the_public_key(
    tmp_path: Path, broker: PrivateBroker
) -> None:
    config = write_config(tmp_path, broker, register=False)
    first = keygen(config, simulated=False)
    assert first.endswith("\n") and first.count("\n") == 1
    verify_key_from_b64(first)  # 32 raw bytes, base64
    key_path = load_config(config).key_path
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert keygen(config, simulated=False) == first


def test_pir_edge_plays_the_warning_into_an_alsa_file_and_the_court_receives_the_signed_intrusion(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber
) -> None:
    config = write_config(tmp_path, broker, languages=("zh",))
    public_key = verify_key_from_b64(keygen(config))
    sink = tmp_path / "alsa-out.raw"
    with wave.open(str(DEFAULT_SOUNDS_DIR / "warning_zh.wav")) as wav:
        expected_pcm = wav.readframes(wav.getnframes())
    log = tmp_path / "agent.log"
    agent = start_agent(["simulate", "--config", str(config), "--presence-s", "0.5"], agent_env(sink), log)
    try:
        assert court.wait_for(lambda c: c.last_status(DEVICE) is SealStatus.ONLINE, timeout=60), log.read_text()
        assert agent.stdin is not None
        agent.stdin.write("m\n")
        agent.stdin.flush()
        assert court.wait_for(lambda c: "intrusion" in c.types(DEVICE)), log.read_text()
        assert wait_until(lambda: sink.exists() and sink.read_bytes() == expected_pcm, timeout=30), log.read_text()
        intrusion = next(r.envelope for r in court.of(DEVICE) if r.envelope.type is EventType.INTRUSION)
        # The clip's end is reported while the agent runs (stopping it at once could cut the report short, and a
        # warning cut short by a stop is truly "stopped").
        outcome = warning_outcome(court, DEVICE, intrusion)
        stop(agent, log)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    assert court.wait_for(lambda c: c.last_status(DEVICE) is SealStatus.OFFLINE)

    received = court.of(DEVICE)
    assert check_chain(received, public_key)[:2] == [1, 2]
    assert received[1].envelope == intrusion
    # Committed at once, while the clip was still playing (or already over): the outcome is true either way.
    assert intrusion.payload["warning"] in ("started", "played")
    assert outcome == {
        "warning": "played",
        "warning_languages": [{"language": "zh", "result": "played", "reason": None}],
    }
    assert intrusion.prev_hash == envelope_hash(received[0].data)
    assert "no sound card" in log.read_text() or Path("/proc/asound/cards").exists()


def committed_seq(log: Path) -> int:
    """The highest seq the agent's log says it committed (the outbox is locked while the agent runs)."""
    found = re.findall(r"event seq=(\d+) ", log.read_text())
    return max(map(int, found), default=0)


def kill(process: subprocess.Popen[str]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.timeout(300)  # three agent processes started one after the other
def test_agents_killed_mid_burst_lose_no_seq(tmp_path: Path, broker: PrivateBroker) -> None:
    # a presence every 0.02 s: a flapping line past any bound; here each must be a full trigger
    config = write_config(tmp_path, broker, cooldown_s=0, sensors="trigger_burst = 100\ntrigger_refill_s = 1")
    public_key = verify_key_from_b64(keygen(config))
    env = agent_env(tmp_path / "alsa-out.raw")
    log = tmp_path / "agent.log"
    burst = ["simulate", "--config", str(config), "--trigger-every", "0.02", "--presence-s", "0.005"]
    court = CourtSubscriber(broker, persistent=True).start()
    try:
        # 1. Killed while connected: the Last Will says offline at once.
        agent = start_agent(burst, env, log)
        try:
            assert court.wait_for(lambda c: len(c.seqs(DEVICE)) >= 20, timeout=60), log.read_text()
        finally:
            kill(agent)
        assert court.wait_for(lambda c: c.last_status(DEVICE) is SealStatus.OFFLINE)

        # 2. Killed while the broker is down, with events committed but certainly not acknowledged.
        agent = start_agent(burst, env, log)
        try:
            assert court.wait_for(lambda c: c.last_status(DEVICE) is SealStatus.ONLINE, timeout=60), log.read_text()
            broker.stop()
            target = committed_seq(log) + 20
            assert wait_until(lambda: committed_seq(log) >= target, timeout=30), log.read_text()[-2000:]
        finally:
            kill(agent)
        broker.start()
        with Outbox(load_config(config).outbox_path) as outbox:
            last_before_kill = outbox.last_seq
            assert outbox.depth() >= 20

        # 3. Restarted: every seq arrives, the chain is unbroken, nothing was reused.
        again = start_agent(["simulate", "--config", str(config)], env, log)
        try:
            everything = set(range(1, last_before_kill + 2))  # + the restarted agent's agent_started
            assert court.wait_for(lambda c: everything <= c.seqs(DEVICE), timeout=60), (
                sorted(everything - court.seqs(DEVICE)),
                log.read_text()[-3000:],
            )
            stop(again, log)
        finally:
            if again.poll() is None:
                kill(again)
        check_chain(court.of(DEVICE), public_key)
        restarted = [r.envelope for r in court.of(DEVICE) if r.envelope.seq == last_before_kill + 1]
        assert restarted[0].type is EventType.AGENT_STARTED
    finally:
        court.close()


def test_simulate_with_a_camera_file_sends_snapshots_and_t_opens_the_lid(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber
) -> None:
    from tests.agent_camera.clips import moving_rectangle_frames, write_clip

    video = write_clip(tmp_path / "walk.avi", moving_rectangle_frames(60))
    config = write_config(tmp_path, broker, languages=("zh",), tamper=True)
    log = tmp_path / "agent.log"
    args = ["simulate", "--config", str(config), "--presence-s", "0.2", "--camera-file", str(video)]
    agent = start_agent(args, agent_env(tmp_path / "alsa-out.raw"), log)
    try:
        assert court.wait_for(lambda c: c.last_status(DEVICE) is SealStatus.ONLINE, timeout=60), log.read_text()
        assert agent.stdin is not None
        assert wait_until(lambda: "type 'm' + Enter" in log.read_text(), timeout=60)  # the simulator reads stdin
        agent.stdin.write("t\nm\n")
        agent.stdin.flush()
        assert court.wait_for(lambda c: {"tamper", "intrusion"} <= set(c.types(DEVICE)), timeout=30), log.read_text()
        tamper = court.payloads(DEVICE, "tamper")[0]
        assert tamper["at_start"] is False  # the simulated lid starts shut

        def named() -> set[str]:
            payloads = court.payloads(DEVICE, "tamper") + court.payloads(DEVICE, "intrusion")
            return {sha for payload in payloads for sha in payload["snapshots"]}

        # Nothing tells when the video's first frames are in: a trigger before them names no picture (truly: none
        # was taken). Shut and open the lid again until one does.
        deadline = time.monotonic() + 30
        while not (shas := named()) and time.monotonic() < deadline:
            tampers = len(court.payloads(DEVICE, "tamper"))
            agent.stdin.write("c\nt\n")
            agent.stdin.flush()
            more = lambda c, n=tampers: len(c.payloads(DEVICE, "tamper")) > n  # noqa: E731
            assert court.wait_for(more, timeout=30), log.read_text()
        assert shas and court.wait_for(lambda c: shas <= c.snapshot_hashes(DEVICE), timeout=30), log.read_text()
        stop(agent, log)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
