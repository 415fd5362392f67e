"""Errors of the seal agent. Each also inherits the builtin it refines, so callers may catch either."""

from __future__ import annotations

import errno
import os
from pathlib import Path


class SealAgentError(Exception):
    """Base class of every error raised by ``seal_agent``."""


class ConfigError(SealAgentError, ValueError):
    """The configuration file is unreadable or invalid. ``problems`` holds one ``"key: message"`` per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems) or "invalid configuration")


class OutboxError(SealAgentError, OSError):
    """The on-device outbox could not be opened or written: for an event, a condition of the disk or the database
    (full, an I/O error, locked) that a later try may not meet; the event is kept and tried again."""


class EventRefused(SealAgentError, ValueError):
    """The outbox refused one event with an error that is not a passing condition of the disk or the database (e.g.
    ``SQLITE_TOOBIG``): trying that event again would meet it again. The message is SQLite's; ``code`` its error
    name (e.g. ``SQLITE_TOOBIG``), or the exception's class where SQLite gave none."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class EventLost(SealAgentError, ValueError):
    """An event could never be recorded (refused by the outbox, or it cannot be built: oversized, a payload that
    is not wire JSON). A signed ``event_lost`` event saying so was committed in its place, with ``seq``."""

    def __init__(self, message: str, seq: int) -> None:
        super().__init__(message)
        self.seq = seq


class SealStopping(SealAgentError, RuntimeError):
    """The seal is stopping and takes no more court commands: one that arrives now is left unacknowledged, and the
    broker delivers it again when the seal is back (or the court sees it expire)."""


class OutboxLocked(OutboxError):
    """Another agent process already uses this outbox (the same ``state_dir``)."""


class StateReadOnly(OutboxError):
    """The state directory cannot be written: its filesystem is read-only (a failing SD card, which the kernel
    remounts read-only after an error) or refuses writes. The agent cannot keep an event, so it does not start; the
    message (zh first, then English) says what to do. ``seal-agent run`` exits with its own code for it."""

    def __init__(self, where: Path, reason: str) -> None:
        super().__init__(
            f"封条状态目录 {where} 无法写入（{reason}）：存储卡可能已损坏，文件系统已被内核改为只读。"
            f"封条无法保存任何事件，因此不启动。请检查存储卡（dmesg、fsck），修复或更换后重启封条 / the seal's state "
            f"directory {where} cannot be written ({reason}): the card is probably failing and the kernel remounted "
            f"its filesystem read-only. The seal cannot keep any event, so it does not start. Check the card (dmesg, "
            f"fsck), repair or replace it, then restart the seal"
        )
        self.errno = errno.EROFS
        self.where = where


def read_only(where: Path) -> bool:
    """Whether the filesystem of the directory ``where`` refuses writes as read-only (``EROFS``): mounted read-only,
    or remounted so by the kernel after an error. ext4's emergency read-only (Linux 6.x) still shows the mount ``rw``
    (``statvfs`` too), so an empty file is made and removed to find out."""
    try:
        if os.statvfs(where).f_flag & os.ST_RDONLY:
            return True
        probe = where / ".write-probe"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        probe.unlink()
    except OSError as exc:
        return exc.errno == errno.EROFS
    return False


def outbox_open_error(path: Path, exc: Exception) -> OutboxError:
    """The error to raise when the outbox at ``path`` cannot be opened (``exc``: the OS's or SQLite's):
    :class:`StateReadOnly` if its filesystem is read-only."""
    if read_only(path.parent) or getattr(exc, "errno", None) == errno.EROFS:
        return StateReadOnly(path.parent, str(exc))
    return OutboxError(f"cannot open outbox {path}: {exc}")


class OutboxMissing(OutboxError):
    """An outbox that must already exist (a seal with a history) is missing, empty, or holds no outbox tables."""


class SealStateError(SealAgentError, RuntimeError):
    """The state directory does not hold what this configuration's seal needs to carry on its chain: the outbox or
    the device key is lost, or they belong to another device id or key. The agent refuses to start rather than fork
    the chain or sign it with a key or id the court does not hold for it; the message says what to do."""


class AudioError(SealAgentError, RuntimeError):
    """A warning sound could not be loaded."""


class HardwareError(SealAgentError, RuntimeError):
    """A sensor could not be opened (wrong pin, pin in use, no GPIO access)."""


class PublishError(SealAgentError, ConnectionError):
    """The MQTT client refused to take a message."""


class SnapshotTooLarge(SealAgentError, ValueError):
    """A snapshot over the wire limit (:data:`seal_protocol.topics.MAX_SNAPSHOT_BYTES`): it is never queued."""


class InvalidSnapshotHash(SealAgentError, ValueError):
    """A snapshot name is not 64 lowercase hex digits."""


class SnapshotNotFound(SealAgentError, KeyError):
    """No stored snapshot has this hash."""


class SnapshotCorrupt(SealAgentError, ValueError):
    """A stored snapshot's bytes no longer hash to its name (the card corrupted it): it can never be receipted."""

    def __init__(self, sha: str, actual: str) -> None:
        super().__init__(f"stored snapshot {sha} is corrupt: its bytes hash to {actual}")
        self.sha = sha
        self.actual = actual


def failure_reason(exc: BaseException) -> str:
    """A short reason for a failure, as a signed event states it: ``ENOSPC: No space left on device`` for an
    ``OSError`` with an errno, else the exception's type and text."""
    code = exc.errno if isinstance(exc, OSError) else None
    if code is not None and code in errno.errorcode:
        return f"{errno.errorcode[code]}: {getattr(exc, 'strerror', None) or exc}"
    return f"{type(exc).__name__}: {exc}"[:200]
