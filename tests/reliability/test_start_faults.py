"""What stops ``seal-server run`` at its start, and what it waits out: a database another process holds locked (or a
PostgreSQL still starting) is waited for, bounded (:data:`~server.core.db.START_WAIT_S`), each wait logged with its
reason; an error that waiting cannot mend stops it at once with its message."""

from __future__ import annotations

import sqlite3
import subprocess
import threading
import time
from pathlib import Path

from server.core.db import SQLITE_BUSY_TIMEOUT_MS, START_WAIT_S
from tests.reliability.conftest import SealFactory
from tests.reliability.harness import SEAL_SERVER, Court, child_env, wait_for


def test_the_server_waits_at_start_for_a_database_another_process_holds(
    court: Court, make_seal: SealFactory, tmp_path: Path
) -> None:
    seal = make_seal("seal-start-locked")
    court.prepare({seal.device_id: seal.public_key})
    court.dispose_engine()
    holder = sqlite3.connect(tmp_path / "court.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # SQLite's write lock, held by another connection
    waiting = "the database is not available yet (SQLITE_BUSY: database is locked)"

    def release_once_waited() -> None:  # a try of the start failed (past the busy timeout): it is waiting now
        wait_for(lambda: court.log_path.exists() and waiting in court.log_path.read_text(), 60, 0.2)
        holder.execute("COMMIT")
        holder.close()

    releaser = threading.Thread(target=release_once_waited)
    started = time.monotonic()
    releaser.start()
    try:
        court.start(timeout=90)
    finally:
        releaser.join()
    assert time.monotonic() - started >= SQLITE_BUSY_TIMEOUT_MS / 1000  # it came up once the lock was released
    log = court.log_path.read_text()
    assert waiting in log and "database error" not in log, court.log_tail()
    seal.start(trigger_every=0.5)
    assert wait_for(lambda: court.event_count(seal.device_id) >= 3, 60, 0.2), court.log_tail()
    assert court.health() is not None


def test_a_database_that_waiting_cannot_mend_stops_the_start_at_once(court: Court, tmp_path: Path) -> None:
    (tmp_path / "court.db").write_bytes(b"not a SQLite database, nor locked " * 200)
    started = time.monotonic()
    with court.log_path.open("ab") as out:
        finished = subprocess.run(
            [str(SEAL_SERVER), "run", "--config", str(court.config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env(DATABASE_URL=court.database_url),
            timeout=60,
            check=False,
        )
    assert finished.returncode == 1
    assert time.monotonic() - started < START_WAIT_S / 3  # not waited for (a slow machine takes seconds to start)
    log = court.log_path.read_text()
    assert "ERROR server.cli: database error: (sqlite3.DatabaseError) file is not a database" in log
    assert "not available yet" not in log
