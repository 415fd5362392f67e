"""What the agent finds in its state directory at start: its own chain, or a refusal that says what was lost.

Each test builds the real :class:`~seal_agent.runtime.SealRuntime` on real files (the outbox in real SQLite, the key
file), damages or changes the state directory or the configuration as an SD card, an operator or an installer may,
and starts again. A seal must never fork its chain (a second seq 1), sign it with a key the court never enrolled, or
send another device id's chain under its own; and a seal whose outbox needs nothing written must start even when
nothing can be written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from seal_agent.cli import main
from seal_agent.config import load_config
from seal_agent.errors import SealStateError
from seal_agent.runtime import SealRuntime
from seal_dev.broker import PrivateBroker
from seal_protocol import EventType
from seal_protocol.signing import generate_signing_key, public_key_b64
from tests.agent.helpers import RuntimeFactory, write_config


def _seal_with_history(tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory, **kwargs: str) -> Path:
    """A seal that ran once and committed three events nobody receipted; its config."""
    config = write_config(tmp_path, broker, **kwargs)  # type: ignore[arg-type]
    runtime = runtimes(config)
    for _ in range(3):
        runtime.recorder.record(EventType.HEARTBEAT, {})
    runtime.close()
    return config


def _last_seq(outbox: Path) -> int:
    with sqlite3.connect(outbox) as db:
        return int(db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0])


def test_a_seal_whose_outbox_needs_no_migration_starts_while_nothing_can_be_written(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory
) -> None:
    """Another connection holds the outbox's write lock for the whole start: a start that writes anything (the old
    ``PRAGMA user_version`` on every start) meets ``database is locked``, as it met ``SQLITE_FULL`` on a full disk."""
    config = _seal_with_history(tmp_path, broker, runtimes)
    outbox = load_config(config).outbox_path
    blocker = sqlite3.connect(outbox, isolation_level=None, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        runtime = runtimes(config)
        assert runtime.outbox.last_seq == 3
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def test_a_changed_device_id_is_refused_and_the_old_chain_is_kept(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory
) -> None:
    config = _seal_with_history(tmp_path, broker, runtimes, device_id="seal-a")
    outbox = load_config(config).outbox_path
    write_config(tmp_path, broker, device_id="seal-b")
    with pytest.raises(SealStateError, match="chain of device 'seal-a'.*device_id = 'seal-b'"):
        runtimes(config)
    assert _last_seq(outbox) == 3
    # Back as seal-a, and moved to another case: a rebinding the protocol allows; the chain carries on.
    write_config(tmp_path, broker, device_id="seal-a")
    text = config.read_text("utf-8")
    config.write_text(text.replace("case_no = ", 'case_no = "(2026)苏0214执9号"\n# was: ', 1), "utf-8")
    assert runtimes(config).recorder.record(EventType.HEARTBEAT, {}).seq == 4


def test_an_older_agents_outbox_of_another_device_id_is_refused(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory
) -> None:
    """An outbox an older agent began records no identity: its events say whose chain it is."""
    config = _seal_with_history(tmp_path, broker, runtimes, device_id="seal-a")
    settings = load_config(config)
    with sqlite3.connect(settings.outbox_path) as db:
        db.execute("DELETE FROM meta WHERE key LIKE 'chain_%'")
    (settings.state_dir / "chain.json").unlink()
    write_config(tmp_path, broker, device_id="seal-b")
    with pytest.raises(SealStateError, match="chain of device 'seal-a'"):
        runtimes(config)


def _empty(outbox: Path) -> None:
    outbox.write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        outbox.with_name(outbox.name + suffix).unlink(missing_ok=True)


def _missing(outbox: Path) -> None:
    outbox.unlink()


def _without_its_wal(outbox: Path) -> None:
    """A seal killed before SQLite copied its -wal into the main file, and the -wal lost: no tables."""
    _missing(outbox)
    for suffix in ("-wal", "-shm"):
        outbox.with_name(outbox.name + suffix).unlink(missing_ok=True)
    with sqlite3.connect(outbox) as db:
        db.execute("PRAGMA journal_mode=WAL")


@pytest.mark.parametrize("damage", [_empty, _missing, _without_its_wal], ids=["empty", "missing", "no-tables"])
def test_a_lost_outbox_is_refused_loudly_never_replaced_by_a_new_chain(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory, damage: Callable[[Path], None]
) -> None:
    config = _seal_with_history(tmp_path, broker, runtimes)
    outbox = load_config(config).outbox_path
    damage(outbox)
    with pytest.raises(SealStateError, match="the outbox is lost.*second seq 1"):
        runtimes(config)
    with pytest.raises(SealStateError):  # and again: the refusal wrote no new outbox
        runtimes(config)


def test_a_lost_device_key_is_refused_never_replaced(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory
) -> None:
    config = _seal_with_history(tmp_path, broker, runtimes)
    key_path = load_config(config).key_path
    key_path.unlink()
    with pytest.raises(SealStateError, match="device key .* is missing"):
        runtimes(config)
    assert main(["keygen", "--config", str(config)]) == 1  # keygen does not make one either
    assert not key_path.exists()


def test_a_key_other_than_the_chains_is_refused(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory
) -> None:
    config = _seal_with_history(tmp_path, broker, runtimes)
    key_path = load_config(config).key_path
    key_path.write_text(public_key_b64(generate_signing_key()) + "\n")  # any 32 bytes in base64 are a private key
    with pytest.raises(SealStateError, match="not the key that signed the chain"):
        runtimes(config)


def test_the_first_start_creates_the_key_and_records_the_chain(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory
) -> None:
    config = write_config(tmp_path, broker)
    settings = load_config(config)
    runtime: SealRuntime = runtimes(config)
    assert settings.key_path.exists() and (settings.state_dir / "chain.json").exists()
    assert runtime.outbox.setting("chain_device_id") == settings.device_id
