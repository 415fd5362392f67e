"""The repairs the agent's start-up refusals give work: followed to the letter, they lead to a seal that starts on a
chain the court can take. Real files, the real :class:`~seal_agent.runtime.SealRuntime` and the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from seal_agent.cli import main
from seal_agent.config import load_config
from seal_agent.errors import SealStateError
from seal_agent.journal.outbox import Outbox
from seal_dev.broker import PrivateBroker
from seal_protocol import EventType, decode_envelope
from seal_protocol.signing import load_signing_key, public_key_b64, verify_envelope
from tests.agent.helpers import RuntimeFactory, write_config


def _first_run_as(tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory, device_id: str) -> Path:
    """The seal ran once as ``device_id`` and committed events that never left it (not started: nothing sent)."""
    config = write_config(tmp_path, broker, device_id=device_id)
    runtime = runtimes(config)
    runtime.recorder.record(EventType.HEARTBEAT, {})
    runtime.close()
    return config


def test_a_seal_first_started_under_a_never_enrolled_id_is_told_how_to_keep_its_enrolled_key(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory
) -> None:
    """The installer's device_id was left as it was (never enrolled: the broker refused it); the key was enrolled for
    the right id. The refusal says that nothing reached the broker or the court and which files to remove; done so,
    the seal starts as the right id with the enrolled key."""
    config = _first_run_as(tmp_path, broker, runtimes, "seal-0001")
    settings = load_config(config)
    enrolled = public_key_b64(load_signing_key(settings.key_path))
    write_config(tmp_path, broker, device_id="seal-0042")
    with pytest.raises(SealStateError) as refusal:
        runtimes(config)
    message = str(refusal.value)
    assert "ever reached the broker or the court (no event or snapshot acknowledged" in message
    removed = [
        settings.outbox_path,
        Path(f"{settings.outbox_path}-wal"),
        Path(f"{settings.outbox_path}-shm"),
        settings.state_dir / "chain.json",
    ]
    for path in removed:
        assert str(path) in message
    assert f"keep {settings.key_path}" in message and enrolled in message
    for path in removed:
        path.unlink(missing_ok=True)

    runtime = runtimes(config)
    assert runtime.outbox.setting("chain_device_id") == "seal-0042"
    assert runtime.outbox.setting("chain_public_key") == enrolled
    envelope = decode_envelope(runtime.recorder.record(EventType.HEARTBEAT, {}).data)
    assert envelope.device_id == "seal-0042" and envelope.seq <= 2  # a new chain (agent_started at most before it)
    verify_envelope(envelope, load_signing_key(settings.key_path).verify_key)


def test_a_changed_device_id_whose_old_chain_reached_the_broker_says_its_events_matter(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory
) -> None:
    config = _first_run_as(tmp_path, broker, runtimes, "seal-a")
    with Outbox(load_config(config).outbox_path) as outbox:
        outbox.broker_acknowledged([1])  # the broker took its first event: seal-a was enrolled
    write_config(tmp_path, broker, device_id="seal-b")
    with pytest.raises(SealStateError, match="reached the broker or the court, so 'seal-a' was enrolled"):
        runtimes(config)


def test_keygen_after_a_first_start_killed_before_the_key_makes_the_key(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory
) -> None:
    """The first start made the outbox's tables, and was killed before it made the key."""
    config = write_config(tmp_path, broker)
    settings = load_config(config)
    Outbox(settings.outbox_path).close()
    assert main(["keygen", "--config", str(config)]) == 0
    made = public_key_b64(load_signing_key(settings.key_path))
    assert runtimes(config).outbox.setting("chain_public_key") == made
