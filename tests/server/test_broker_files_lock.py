"""Rewrites of the broker's files at once (API requests in the thread pool, the CLI): one at a time, under a lock,
each reading the accounts after it is granted, so the last file written holds every committed password."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from server.config import BrokerFilesSettings
from server.core.db import SessionFactory, session_scope
from server.seals.broker_files import write_private_file
from server.seals.models import AccountKind, MqttAccount
from server.seals.provisioning import apply_broker_files, create_account, rotate_password


def _files(tmp_path: Path) -> BrokerFilesSettings:
    return BrokerFilesSettings(password_file=tmp_path / "broker" / "passwd", acl_file=tmp_path / "broker" / "acl")


def _stored(session_factory: SessionFactory) -> dict[str, str]:
    with session_scope(session_factory) as session:
        return dict(session.execute(select(MqttAccount.username, MqttAccount.password_hash)).all())


def _written(password_file: Path) -> dict[str, str]:
    return dict(line.split(":", 1) for line in password_file.read_text().splitlines())


def test_a_writer_waits_for_the_lock_and_reads_the_accounts_after_it(
    tmp_path: Path, session_factory: SessionFactory
) -> None:
    files = _files(tmp_path)
    assert files.password_file is not None
    with session_scope(session_factory) as session:
        for name in ("seal-a", "seal-b"):
            create_account(session, username=name, kind=AccountKind.SEAL)
    files.password_file.parent.mkdir(parents=True)
    holder = os.open(files.password_file.parent, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another writer (a process or a thread) is rewriting the files
    done = threading.Event()
    outcome: list[str] = []

    def rewrite() -> None:
        with session_factory() as session:
            outcome.append(apply_broker_files(session, files))
        done.set()

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        assert not done.wait(0.5), "the rewrite did not wait for the lock"
        assert not files.password_file.exists()
        with session_scope(session_factory) as session:  # committed while the writer waits
            rotate_password(session, username="seal-b")
    finally:
        os.close(holder)
        writer.join(20)
    assert done.is_set() and "2 accounts" in outcome[0]
    assert _written(files.password_file) == _stored(session_factory)  # seal-b's new hash: read after the lock


def test_concurrent_rotations_leave_every_latest_password_in_the_file(
    tmp_path: Path, session_factory: SessionFactory
) -> None:
    files = _files(tmp_path)
    assert files.password_file is not None
    names = [f"seal-{n}" for n in range(6)]
    with session_scope(session_factory) as session:
        for name in names:
            create_account(session, username=name, kind=AccountKind.SEAL)
    failures: list[BaseException] = []
    start = threading.Barrier(len(names))

    def rotate(name: str) -> None:
        try:
            start.wait(10)
            for _ in range(4):  # as the API does: commit, then rewrite from a session after the commit
                with session_factory() as session:
                    rotate_password(session, username=name)
                    session.commit()
                    apply_broker_files(session, files)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failures.append(exc)

    threads = [threading.Thread(target=rotate, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert _written(files.password_file) == _stored(session_factory)
    # no temporary file left, and no lock file (the directory is locked: a lock file made by root, running the CLI,
    # would be one the server's account could not open)
    assert sorted(p.name for p in files.password_file.parent.iterdir()) == ["acl", "passwd"]


def test_writers_of_one_file_at_once_each_use_a_temporary_file_of_their_own(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    failures: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(100):
                write_private_file(path, f"writer {n} {i}\n", 0o640)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert path.read_text().startswith("writer ") and path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["passwd"]  # no temporary file left behind


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the files root (the CLI run with sudo) writes")
def test_files_root_writes_belong_to_the_directory_s_owner(tmp_path: Path) -> None:
    """The broker runs as the account that ran ``init`` and reads its files on each reload: a password file written
    by root, 0600 and root's, would lock it out of them until the server wrote them again."""
    court = tmp_path / "court"
    court.mkdir(mode=0o700)
    os.chown(court, 65534, 65534)
    write_private_file(court / "passwd", "seal-a:hash\n", 0o640)
    written = (court / "passwd").stat()
    assert (written.st_uid, written.st_gid, written.st_mode & 0o777) == (65534, 65534, 0o640)
