"""A warning cut short by a SIGKILL of ``seal-agent simulate`` (the clips playing through the real clip player into the
tests' paced ALSA file sink): the restarted agent signs the ``warning_result`` its intrusion promised, once; a warning
that was over before the kill gets no second one; the clip player does not outlive the agent, nor leave a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import pytest

from seal_agent.behaviour.owed_results import CUT_SHORT
from seal_dev.broker import PrivateBroker
from seal_protocol import Envelope, SealStatus
from seal_protocol.signing import VerifyKey, verify_key_from_b64
from tests.agent.helpers import (
    SEAL_AGENT,
    CourtSubscriber,
    agent_env,
    check_chain,
    start_agent,
    wait_until,
    write_config,
)

DEVICE = "seal-test-1"


def _players(parent: int) -> set[int]:
    """The clip player processes whose parent is ``parent``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"clip_player" in cmdline:
            found.add(int(entry.name))
    return found


def _gone(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _intrusion(
    court: CourtSubscriber,
    agent: subprocess.Popen[str],
    log: Path,
    after: int,
    *,
    key: str = "m",
    kind: str = "intrusion",
) -> Envelope:
    """A presence by 'm' on the agent's stdin (or the lid opened by 't': ``kind`` tamper); its event, the first after
    seq ``after``."""
    assert court.wait_for(lambda c: c.last_status(DEVICE) is SealStatus.ONLINE, timeout=60), log.read_text()
    assert agent.stdin is not None
    agent.stdin.write(f"{key}\n")
    agent.stdin.flush()

    def found() -> list[Envelope]:
        return [r.envelope for r in court.of(DEVICE) if r.envelope.type.value == kind and r.envelope.seq > after]

    assert court.wait_for(lambda c: bool(found()), timeout=30), log.read_text()
    return found()[0]


def _results(court: CourtSubscriber, seq: int) -> dict[int, dict[str, object]]:
    """The distinct warning_results naming ``seq``, by their own seq (a redelivered one is the same event)."""
    return {
        r.envelope.seq: r.envelope.payload
        for r in court.of(DEVICE)
        if r.envelope.type.value == "warning_result" and r.envelope.payload.get("trigger_seq") == seq
    }


def _simulated_seal(tmp_path: Path, broker: PrivateBroker, *, tamper: bool = False) -> tuple[Path, VerifyKey]:
    """A simulated seal's configuration (warnings in zh and en, no cool-down) and its new key."""
    config = write_config(tmp_path, broker, languages=("zh", "en"), cooldown_s=0, tamper=tamper)
    keygen = subprocess.run(
        [str(SEAL_AGENT), "keygen", "--simulated", "--config", str(config)],
        capture_output=True,
        text=True,
        env=agent_env(),
    )
    assert keygen.returncode == 0, keygen.stderr
    return config, verify_key_from_b64(keygen.stdout)


def _kill(agent: subprocess.Popen[str]) -> None:
    os.kill(agent.pid, signal.SIGKILL)
    agent.wait()


@pytest.mark.timeout(300)  # three agent processes, one after the other
def test_a_warning_cut_short_by_a_kill_gets_one_warning_result_from_the_next_start(
    tmp_path: Path, broker: PrivateBroker
) -> None:
    config, key = _simulated_seal(tmp_path, broker)
    env = agent_env(tmp_path / "alsa-out.raw")  # paced: the zh clip plays for about 3.4 s
    log = tmp_path / "agent.log"
    simulate = ["simulate", "--config", str(config), "--presence-s", "0.2"]
    court = CourtSubscriber(broker, persistent=True).start()
    try:
        # 1. A warning that is over before the kill: its warning_result came, and no second one will.
        agent = start_agent(simulate, env, log)
        try:
            over = _intrusion(court, agent, log, 0)
            assert over.payload["warning"] == "started"
            assert court.wait_for(lambda c: bool(_results(c, over.seq)), timeout=30), log.read_text()
        finally:
            _kill(agent)

        # 2. Killed while its first clip plays: the player goes with it, quietly.
        agent = start_agent(simulate, env, log)
        try:
            cut = _intrusion(court, agent, log, over.seq)
            assert cut.payload["warning"] == "started"
            assert cut.payload["warning_languages"][0]["result"] == "playing"
            players = _players(agent.pid)
            assert players, "no clip player while the warning plays"
            time.sleep(0.5)
        finally:
            _kill(agent)
        assert wait_until(lambda: all(_gone(pid) for pid in players), timeout=2.0), "the clip player outlived the agent"
        assert not _results(court, cut.seq)

        # 3. The next start signs the outcome the killed one owed, once.
        agent = start_agent(simulate, env, log)
        try:
            assert court.wait_for(lambda c: bool(_results(c, cut.seq)), timeout=60), log.read_text()
            assert court.wait_for(lambda c: c.last_status(DEVICE) is SealStatus.ONLINE, timeout=60)
            time.sleep(1.0)  # anything else it would sign at start arrives meanwhile
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(timeout=60) == 0, log.read_text()
        finally:
            if agent.poll() is None:
                _kill(agent)
        assert court.wait_for(lambda c: c.last_status(DEVICE) is SealStatus.OFFLINE, timeout=30)
    finally:
        court.close()

    received = court.of(DEVICE)
    check_chain(received, key)
    events = {r.envelope.seq: r.envelope for r in received}
    assert sorted(events) == list(range(1, max(events) + 1))
    intrusions = [e for e in events.values() if e.type.value == "intrusion"]
    assert [e.seq for e in intrusions] == [over.seq, cut.seq]
    for intrusion in intrusions:  # exactly one outcome each
        assert len(_results(court, intrusion.seq)) == 1, intrusion.seq
    [(result_seq, result)] = _results(court, cut.seq).items()
    starts = [seq for seq, e in events.items() if e.type.value == "agent_started"]
    assert len(starts) == 3 and starts[-1] < result_seq  # signed by the restarted agent, after its agent_started
    assert result == {
        "trigger": "intrusion",
        "trigger_seq": cut.seq,
        "warning": "failed",
        "warning_languages": [
            {"language": "zh", "result": "failed", "reason": CUT_SHORT},
            {"language": "en", "result": "failed", "reason": CUT_SHORT},
        ],
    } | ({"simulated": True} if "simulated" in result else {})
    assert events[result_seq].ts >= events[starts[-1]].ts  # stamped when signed, not at the crash
    assert "Traceback" not in log.read_text()


@pytest.mark.timeout(240)  # two agent processes
def test_a_tamper_warning_cut_short_by_a_kill_gets_its_warning_result_from_the_next_start(
    tmp_path: Path, broker: PrivateBroker
) -> None:
    """The lid's warning makes the same promise as a presence's: a kill while it plays leaves it to the next start."""
    config, _key = _simulated_seal(tmp_path, broker, tamper=True)
    env = agent_env(tmp_path / "alsa-out.raw")  # paced: the zh clip plays for about 3.4 s
    log = tmp_path / "agent.log"
    simulate = ["simulate", "--config", str(config), "--presence-s", "0.2"]
    court = CourtSubscriber(broker, persistent=True).start()
    try:
        agent = start_agent(simulate, env, log)
        try:
            tamper = _intrusion(court, agent, log, 0, key="t", kind="tamper")
            assert tamper.payload["warning"] == "started", tamper.payload
            assert tamper.payload["warning_languages"][0]["result"] == "playing"
            time.sleep(0.5)
        finally:
            _kill(agent)
        assert not _results(court, tamper.seq)
        agent = start_agent(simulate, env, log)
        try:
            assert court.wait_for(lambda c: bool(_results(c, tamper.seq)), timeout=60), log.read_text()
        finally:
            _kill(agent)
    finally:
        court.close()
    [result] = _results(court, tamper.seq).values()
    assert result["trigger"] == "tamper"
    assert result["warning"] == "failed"
    assert [item["reason"] for item in result["warning_languages"]] == [CUT_SHORT, CUT_SHORT]  # type: ignore[union-attr]


_PARENT = """
import sys, time
from pathlib import Path
from seal_agent.devices.clip_process import ClipProcess
player = ClipProcess([Path(sys.argv[1])])
player.play(1, 0)
print(player.read_line(time.monotonic() + 10), flush=True)
time.sleep(60)
"""


def test_the_clip_player_of_a_killed_agent_ends_at_once_and_quietly(tmp_path: Path) -> None:
    wav = tmp_path / "long.wav"
    with wave.open(str(wav), "wb") as out:  # 10 s: far longer than the test waits
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(22050)
        out.writeframes(b"\x01\x02" * 22050 * 10)
    err = tmp_path / "stderr.log"
    with err.open("w") as stderr:
        parent = subprocess.Popen(
            [sys.executable, "-c", _PARENT, str(wav)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=agent_env(tmp_path / "alsa-out.raw"),
        )
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "playing", err.read_text()
        players = _players(parent.pid)
        assert len(players) == 1
    finally:
        _kill(parent)
    assert wait_until(lambda: all(_gone(pid) for pid in players), timeout=2.0), "the clip player outlived its parent"
    assert err.read_text() == ""
