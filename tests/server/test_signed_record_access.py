"""The checkpoint record (:mod:`server.evidence.signed_record`) when the accounts that sign differ: root running
``seal-server export`` before the server's account ever signed must not leave a file that account cannot open. The
lock is a ``flock`` of the record's directory (no lock file), the record is replaced by a rename in that directory.

The test with two accounts forks a child that becomes ``nobody``: it needs root (skipped otherwise)."""

from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.evidence import signed_record
from server.evidence.errors import CheckpointRefused
from server.evidence.signed_record import Signed, SignedRecord

FIRST = Signed("court.example/seal-log", 3, bytes(range(32)), "court.example/seal-log\n3\n...\n")
SECOND = Signed("court.example/seal-log", 5, bytes(range(1, 33)), "court.example/seal-log\n5\n...\n")


@pytest.fixture
def directory() -> Iterator[Path]:
    """A court's directory that another account may reach (``tmp_path`` is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="seal-record-", dir="/tmp"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_holding_the_record_makes_no_file(directory: Path) -> None:
    record = SignedRecord(directory / "evidence-log.last-checkpoint")
    with record.held():
        record.write(FIRST)
    assert sorted(p.name for p in directory.iterdir()) == ["evidence-log.last-checkpoint"]
    assert (directory / "evidence-log.last-checkpoint").stat().st_mode & 0o777 == 0o644


def test_the_record_is_held_by_one_signer_at_a_time(directory: Path) -> None:
    record = SignedRecord(directory / "evidence-log.last-checkpoint")
    other = os.open(directory, os.O_RDONLY)  # another signer's open directory (another process's, as for flock)
    try:
        with record.held():
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released
        entered = threading.Event()

        def sign() -> None:
            with record.held():
                entered.set()

        signer = threading.Thread(target=sign)
        signer.start()
        assert not entered.wait(0.2)  # waits for the lock
        fcntl.flock(other, fcntl.LOCK_UN)
        assert entered.wait(5)
        signer.join()
    finally:
        os.close(other)


def test_a_read_only_record_and_an_old_lock_file_of_another_account_do_not_stop_a_signer(directory: Path) -> None:
    path = directory / "evidence-log.last-checkpoint"
    record = SignedRecord(path)
    with record.held():
        record.write(FIRST)
    path.chmod(0o400)
    lock = directory / "evidence-log.last-checkpoint.lock"  # what the record's first version left
    lock.touch(mode=0o000)
    with record.held():
        assert record.read() == FIRST
        record.write(SECOND)
    assert SignedRecord(path).read() == SECOND


def test_a_directory_this_account_may_not_write_is_named_with_the_account(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(*_args: object, **_kwargs: object) -> tuple[int, str]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(signed_record.tempfile, "mkstemp", denied)
    record = SignedRecord(directory / "evidence-log.last-checkpoint")
    with record.held(), pytest.raises(CheckpointRefused) as refused:
        record.write(FIRST)
    assert refused.value.kind == "unwritable"
    account = pwd.getpwuid(os.geteuid()).pw_name
    assert f"the account {account!r} may not write in {directory}" in refused.value.reason


def _as_nobody(directory: Path) -> str:
    """In a child that became ``nobody``: hold the record, read it, write :data:`SECOND`; what failed, or ''."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest, no exceptions out of here
        os.close(read_end)
        problem = ""
        try:
            nobody = pwd.getpwnam("nobody")
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            record = SignedRecord(directory / "evidence-log.last-checkpoint")
            with record.held():
                if record.read() != FIRST:
                    problem = "the record root wrote was not read"
                else:
                    record.write(SECOND)
        except BaseException as exc:
            problem = repr(exc)
        os.write(write_end, problem.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        problem = answer.read().decode()
    os.waitpid(pid, 0)
    return problem


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file another account's needs root")
def test_the_service_account_signs_after_root_signed_first(directory: Path) -> None:
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no account 'nobody'")
    os.chown(directory, nobody.pw_uid, nobody.pw_gid)
    os.chmod(directory, 0o700)  # as init makes a court's directory, the service account's
    record = SignedRecord(directory / "evidence-log.last-checkpoint")
    with record.held():  # root's `seal-server export`, before the server ever signed
        record.write(FIRST)

    assert _as_nobody(directory) == ""  # before: PermissionError on <record>.lock, refused "unwritable"
    assert SignedRecord(directory / "evidence-log.last-checkpoint").read() == SECOND
