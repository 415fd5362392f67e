"""A simulated seal's events never enter a real seal's chain, and every event a simulated seal signs says so.

Found by a hostile review of the seal's install on a Pi: ``seal-agent simulate --config /etc/court-seal/agent.toml``
(the README offered it for trying without hardware) signed each 'm' as an ``intrusion`` with the enrolled
``device.key`` into the real outbox, indistinguishable from a real one; made before the broker password was there,
they waited in the outbox and reached the court later, never to be removed from the chain.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from seal_agent.config import load_config
from seal_agent.journal.outbox import Outbox
from seal_agent.state_checks import SIMULATED_MARK
from seal_dev.broker import PrivateBroker
from seal_protocol import EventType, decode_envelope
from seal_protocol.envelope import SIMULATED_FIELD
from tests.agent.helpers import SEAL_AGENT, RuntimeFactory, agent_env, start_agent, wait_until, write_config

TIMEOUT_S = 60


def seal_agent(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SEAL_AGENT), *args], input=stdin, capture_output=True, text=True, env=agent_env(), timeout=TIMEOUT_S
    )


def events(config: Path) -> list[tuple[EventType, dict[str, object]]]:
    with Outbox(load_config(config).outbox_path, create=False) as outbox:
        stored = outbox.pending(limit=1000)
    return [(envelope.type, envelope.payload) for envelope in (decode_envelope(event.data) for event in stored)]


def test_simulate_refuses_the_state_dir_of_a_real_seal(tmp_path: Path, broker: PrivateBroker) -> None:
    """A key made by ``keygen`` (install.sh's step: the key the clerk enrols) is a real seal's: simulate signs
    nothing with it, says why and what to do, and leaves the state directory as it was."""
    config = write_config(tmp_path, broker)
    public_key = seal_agent("keygen", "--config", str(config)).stdout
    state_dir = load_config(config).state_dir
    before = sorted(path.name for path in state_dir.iterdir())

    result = seal_agent("simulate", "--config", str(config), stdin="m\nq\n")

    assert result.returncode == 1, result.stderr
    assert "属于一台真实封条" in result.stderr and "belongs to a real seal" in result.stderr
    assert "throw-away configuration whose state_dir is a new, empty directory" in result.stderr
    assert sorted(path.name for path in state_dir.iterdir()) == before == ["device.key"]  # no outbox, no chain
    checked = seal_agent("check-config", "--simulate", "--config", str(config))  # says so beforehand, too
    assert checked.returncode == 2 and "belongs to a real seal" in checked.stderr, checked.stderr
    assert seal_agent("check-config", "--config", str(config)).returncode == 0  # right for run
    assert sorted(path.name for path in state_dir.iterdir()) == before  # nothing marked
    assert seal_agent("keygen", "--simulated", "--config", str(config)).returncode == 1  # not made one afterwards
    assert seal_agent("keygen", "--config", str(config)).stdout == public_key


def test_simulate_refuses_a_state_dir_a_real_seal_ran_in(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory
) -> None:
    config = write_config(tmp_path, broker)
    runtime = runtimes(config)  # the real seal (on mock pins here): its chain begins
    runtime.start()
    runtime.close()
    depth = len(events(config))

    result = seal_agent("simulate", "--config", str(config), stdin="m\nq\n")

    assert result.returncode == 1 and "belongs to a real seal" in result.stderr, result.stderr
    assert len(events(config)) == depth
    assert not (load_config(config).state_dir / SIMULATED_MARK).exists()


def test_every_event_a_simulated_seal_signs_says_so_and_a_real_seal_refuses_its_state_dir(
    tmp_path: Path, broker: PrivateBroker
) -> None:
    config = write_config(tmp_path, broker, tamper=True)
    log = tmp_path / "agent.log"
    agent = start_agent(["simulate", "--config", str(config), "--presence-s", "0.2"], agent_env(), log)
    try:
        assert agent.stdin is not None
        agent.stdin.write("m\nt\n")
        agent.stdin.flush()
        assert wait_until(lambda: " intrusion committed" in log.read_text(), TIMEOUT_S), log.read_text()
        assert wait_until(lambda: " tamper committed" in log.read_text(), TIMEOUT_S), log.read_text()
        agent.stdin.write("q\n")
        agent.stdin.flush()
        assert agent.wait(timeout=TIMEOUT_S) == 0, log.read_text()
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    signed = events(config)
    types = [type for type, _ in signed]
    assert {EventType.AGENT_STARTED, EventType.INTRUSION, EventType.TAMPER} <= set(types)
    assert all(payload.get(SIMULATED_FIELD) is True for _, payload in signed), signed
    assert (load_config(config).state_dir / SIMULATED_MARK).is_file()

    # Its chain is a simulated seal's: a real seal neither continues it nor takes its key; check-config says so.
    for command in ("run", "keygen"):
        refused = seal_agent(command, "--config", str(config))
        assert refused.returncode == 1, refused.stderr
        assert "由 seal-agent simulate 或 keygen --simulated 创建" in refused.stderr
        assert "was made by `seal-agent simulate`" in refused.stderr
        assert refused.stdout == ""  # keygen prints no key to enrol
    checked = seal_agent("check-config", "--config", str(config))
    assert checked.returncode == 2 and "was made by `seal-agent simulate`" in checked.stderr
    assert len(events(config)) == len(signed)

    # simulate itself carries on with its own chain
    again = seal_agent("simulate", "--config", str(config), stdin="q\n")
    assert again.returncode == 0, again.stderr
    assert all(payload.get(SIMULATED_FIELD) is True for _, payload in events(config))


def test_keygen_simulated_makes_the_key_of_a_simulated_seal(tmp_path: Path, broker: PrivateBroker) -> None:
    """What ``make demo`` and the end-to-end tests do: the key first (the court enrols it), then ``simulate``."""
    config = write_config(tmp_path, broker)
    public_key = seal_agent("keygen", "--simulated", "--config", str(config)).stdout
    assert (load_config(config).state_dir / SIMULATED_MARK).is_file()
    assert seal_agent("keygen", "--simulated", "--config", str(config)).stdout == public_key
    # check-config checks for `run` (which refuses it), saying that it is right for simulate; --simulate: OK.
    checked = seal_agent("check-config", "--config", str(config))
    assert checked.returncode == 2 and "or `keygen --simulated`" in checked.stderr, checked.stderr
    assert "This is a simulated seal's state_dir, right for `seal-agent simulate`" in checked.stderr
    assert "seal-agent check-config --simulate --config FILE" in checked.stderr
    checked = seal_agent("check-config", "--simulate", "--config", str(config))
    assert checked.returncode == 0 and checked.stdout == "OK (for seal-agent simulate)\n", checked.stderr
    assert seal_agent("simulate", "--config", str(config), stdin="q\n").returncode == 0
    assert [payload.get(SIMULATED_FIELD) for _, payload in events(config)] == [True]  # its agent_started


def test_a_real_seal_on_mock_pins_signs_no_simulated_field(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory
) -> None:
    """The tests' seal on mock pins is the real agent: nothing marks it, and its events carry no such field."""
    config = write_config(tmp_path, broker)
    runtime = runtimes(config)
    runtime.start()
    runtime.close()
    signed = events(config)
    assert signed and all(SIMULATED_FIELD not in payload for _, payload in signed)
    assert not (load_config(config).state_dir / SIMULATED_MARK).exists()
