"""The SQLite database and its -wal/-shm files are the court's alone (0600): they hold the users' password hashes and
every piece of evidence, and ``database_url`` may name a directory others can read (the documented example is
/srv/court/court.db). Found by a hostile review: after the README's steps they were 0644."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.core.db import make_engine
from server.migrations.run import init_db


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask of a login shell, whatever this test run's."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def modes(database: Path) -> dict[str, str]:
    return {
        path.name: oct(stat.S_IMODE(path.stat().st_mode))
        for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm"))
        if path.exists()
    }


@pytest.mark.usefixtures("umask_022")
def test_a_new_sqlite_database_and_its_wal_and_shm_are_0600(tmp_path: Path) -> None:
    database = tmp_path / "srv" / "court.db"
    url = f"sqlite:///{database}"
    engine = make_engine(url)
    try:
        init_db(engine)  # as `seal-server init-db` does
        with engine.begin() as conn:  # a writer holds the WAL and the shared memory open
            conn.exec_driver_sql("CREATE TABLE t (x)")
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
            found = modes(database)
    finally:
        engine.dispose()
    assert found == {"court.db": "0o600", "court.db-wal": "0o600", "court.db-shm": "0o600"}


@pytest.mark.usefixtures("umask_022")
def test_files_left_readable_by_an_older_version_are_narrowed(tmp_path: Path) -> None:
    database = tmp_path / "court.db"
    engine = make_engine(f"sqlite:///{database}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x)")
    engine.dispose()
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        path.touch()
        path.chmod(0o644)
    engine = make_engine(f"sqlite:///{database}")
    try:
        assert set(modes(database).values()) == {"0o600"}
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
    finally:
        engine.dispose()
