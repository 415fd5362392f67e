"""A seal whose card the kernel remounted read-only (a failing SD card, ext4 ``errors=remount-ro``) says so at start,
in words an officer can act on, and exits with its own code — never a raw ``OSError`` from deep in the outbox.

A real ext4 filesystem on a loop device, mounted ``errors=remount-ro``, sent an error through the kernel's
``trigger_fs_error``: what a failing card does. Needs root (mount); skipped otherwise.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from seal_agent.cli import EXIT_CONFIG, EXIT_READ_ONLY, main
from seal_agent.errors import OutboxError, StateReadOnly, read_only
from seal_dev.broker import PrivateBroker
from tests.agent.helpers import RuntimeFactory, wait_until, write_config

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a loop device (needs root)")


def _device(mount: Path) -> str:
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if fields[1] == str(mount):
            return fields[0]
    raise AssertionError(f"{mount} is not mounted")


@pytest.fixture
def card(tmp_path: Path) -> Iterator[Path]:
    """A 32 MiB ext4 "card" mounted ``errors=remount-ro``; always unmounted."""
    image, mount = tmp_path / "card.img", tmp_path / "card"
    mount.mkdir()
    subprocess.run(["truncate", "-s", "32M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    made = subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(image), str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a loop device here: {made.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)]).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)


def _fail(card: Path) -> None:
    """The card meets an error: the kernel remounts it read-only, files open or not."""
    trigger = Path(f"/sys/fs/ext4/{Path(_device(card)).name}/trigger_fs_error")
    if not trigger.exists():
        pytest.skip(f"no {trigger} in this kernel")
    trigger.write_text("1")
    assert wait_until(lambda: read_only(card), 10), "the kernel did not remount the card read-only"


def test_a_seal_on_a_card_gone_read_only_refuses_to_start_saying_why(
    card: Path,
    broker: PrivateBroker,
    runtimes: RuntimeFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_config(card / "seal", broker)
    runtimes(config).close()  # a seal with a history on this card
    _fail(card)

    with pytest.raises(StateReadOnly) as raised:  # was a raw OSError(EROFS) from the outbox's lock file
        runtimes(config)
    assert isinstance(raised.value, OutboxError) and raised.value.errno == errno.EROFS
    assert "只读" in str(raised.value) and "read-only" in str(raised.value)

    capsys.readouterr()
    assert main(["run", "--config", str(config)]) == EXIT_READ_ONLY  # its own exit code, for the unit's log
    logged = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]
    assert len(logged) == 1 and "只读" in logged[0] and "read-only" in logged[0], logged

    assert main(["check-config", "--config", str(config)]) == EXIT_CONFIG  # not "chown": no chown helps
    problems = [line for line in capsys.readouterr().err.splitlines() if line.startswith("  state_dir:")]
    assert len(problems) == 1 and "read-only" in problems[0] and "chown" not in problems[0], problems
