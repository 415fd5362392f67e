"""The newest checkpoint the log's key signed, kept in a file outside the database, so the key never signs a
checkpoint inconsistent with one it signed before (C2SP tlog-checkpoint: "A log MUST not sign any checkpoint which is
inconsistent with any checkpoint it previously signed").

The database can lose its last commits — a restored backup, a failover to an asynchronous replica (docs/deploy.md) —
and with them the checkpoints signed of them, some maybe already handed out in a bundle or served at
``/api/log/checkpoint``. Other leaves then take the lost indices, and a checkpoint of the new tree contradicts the
published one. So before each signature (:func:`server.evidence.log.make_checkpoint`) the tree in the database is
checked against this record: at least the recorded size, and the root at the recorded size (computed from the stored
nodes) the recorded root. If not, nothing is signed (:class:`~server.evidence.errors.CheckpointRefused`): the log has
forked and needs an operator (docs/evidence.md, "When the log has lost checkpoints it signed").

The record is ``<log_key_file>`` with the suffix ``.last-checkpoint`` (``evidence-log.last-checkpoint`` in a court's
directory: writable under the systemd unit's ``ReadWritePaths=``), JSON: origin, tree size, root hash (base64) and
the signed note. It is written before the note leaves the signer: temporary file, fsync, rename, fsync of the
directory, all before the checkpoint's row is added to the transaction that publishes it, so a crash leaves at worst
a record a checkpoint ahead of the database (never published, and consistent with the tree). Each reading, checking,
signing and writing holds an exclusive ``flock`` of the record's directory (opened read-only): the server's
checkpointer, its exports and a ``seal-server export`` of the same machine sign one after another. Neither the lock
nor the record is a file one account makes and another must then open for writing: a ``seal-server export`` run
as root first leaves nothing the server's account cannot lock, and a record root wrote (mode 0644) is read by the
server's account and replaced by its rename. What every signer needs is to read the directory and write in it.

The record is per machine (per key file). Each signer also records the newest checkpoint of the database when it is
newer than its record and consistent with it — at each checkpointer round, every ``checkpoint_interval_s`` — so a
missing record (a first run, a court upgraded from before it existed) starts from the newest checkpoint row, and a
server also holds the checkpoints other servers on the same PostgreSQL signed. What is guaranteed: no machine signs
a checkpoint inconsistent with one it signed, or one it saw in the database at its last round; a checkpoint another
machine signed and handed out that the database lost before this machine's next round is not known to it.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import logging
import os
import pwd
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from server.evidence.errors import CheckpointRefused

logger = logging.getLogger(__name__)

SUFFIX = ".last-checkpoint"


def record_path(key_file: Path) -> Path:
    """Where the record of the log key at ``key_file`` is kept."""
    return key_file.with_name(key_file.name + SUFFIX) if key_file.suffix == SUFFIX else key_file.with_suffix(SUFFIX)


@dataclass(frozen=True, slots=True)
class Signed:
    """A checkpoint the key signed: its origin, size, root hash and the signed note."""

    origin: str
    tree_size: int
    root_hash: bytes
    note: str


class SignedRecord:
    """The record file of one log key (see the module's docstring). :attr:`refused` is why this process last
    refused to sign (None once it signs again), for the health check."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.refused: str | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        """The record to this caller alone (an exclusive ``flock`` of its directory: threads and processes). The
        directory, not a lock file in it: a lock file made first by another account (root's ``seal-server export``)
        could not be opened by this one, and each signature would be refused."""
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise CheckpointRefused(
                "unwritable", f"cannot open the checkpoint record's directory {directory} as {_account()}: {exc}"
            ) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:  # a file system without flock of a directory (NFS): keep the record on a local one
                raise CheckpointRefused(
                    "unwritable", f"cannot lock the checkpoint record's directory {directory} (flock): {exc}"
                ) from None
            yield
        finally:
            os.close(fd)  # releases the lock

    def read(self) -> Signed | None:
        """The recorded checkpoint; None if there is no record yet. An unreadable record refuses
        (:class:`CheckpointRefused`): it cannot say what was signed."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise CheckpointRefused(
                "unreadable", f"the checkpoint record {self.path} is unreadable (as {_account()}): {exc}"
            ) from None
        try:
            data = json.loads(text)
            signed = Signed(
                origin=data["origin"],
                tree_size=data["tree_size"],
                root_hash=base64.b64decode(data["root_hash"], validate=True),
                note=data["note"],
            )
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise CheckpointRefused("unreadable", f"the checkpoint record {self.path} is damaged: {exc!r}") from None
        if (
            not isinstance(signed.origin, str)
            or not isinstance(signed.note, str)
            or type(signed.tree_size) is not int
            or signed.tree_size < 1
            or len(signed.root_hash) != 32
        ):
            raise CheckpointRefused("unreadable", f"the checkpoint record {self.path} is damaged")
        return signed

    def write(self, signed: Signed) -> None:
        """Replace the record with ``signed``, durably (temporary file, fsync, rename, fsync of the directory); an
        error refuses (:class:`CheckpointRefused`): what is not recorded must not be signed or published."""
        data = {
            "origin": signed.origin,
            "tree_size": signed.tree_size,
            "root_hash": base64.b64encode(signed.root_hash).decode("ascii"),
            "note": signed.note,
        }
        directory = self.path.parent
        try:
            fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.", suffix=".tmp")
            try:
                with open(fd, "w", encoding="utf-8") as fh:
                    os.fchmod(fh.fileno(), 0o644)
                    fh.write(json.dumps(data, indent=1, sort_keys=True) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(temp, self.path)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except PermissionError as exc:
            raise CheckpointRefused(
                "unwritable",
                f"cannot write the checkpoint record {self.path}: {_account()} may not write in {directory}, where the "
                f"record and its temporary file are made; give the account that signs (the server's) write access to "
                f"it ({exc})",
            ) from None
        except OSError as exc:
            raise CheckpointRefused("unwritable", f"cannot write the checkpoint record {self.path}: {exc}") from None


def _account() -> str:
    """This process's account, for a message about a file it may not use."""
    uid = os.geteuid()
    try:
        return f"the account {pwd.getpwuid(uid).pw_name!r}"
    except KeyError:
        return f"the account of uid {uid}"


_records: dict[Path, SignedRecord] = {}
_records_lock = threading.Lock()


def record_of(key_file: Path) -> SignedRecord:
    """The record of the log key at ``key_file`` (one object per path in a process: its :attr:`~SignedRecord.refused`
    is what the health check reads)."""
    path = record_path(key_file).absolute()
    with _records_lock:
        record = _records.get(path)
        if record is None:
            record = _records[path] = SignedRecord(path)
        return record
