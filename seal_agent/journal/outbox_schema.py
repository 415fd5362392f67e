"""The outbox's SQLite schema, and the migration that brings an older agent's file up to it.

Schema versions (``PRAGMA user_version``): 1 deleted on PUBACK and recorded PUBACKed snapshots as ``snapshot_sent``;
2 (this one) keeps events and queued snapshots until the court's receipt. Opening a version-1 file migrates it in one
transaction: its events are kept (they were never acknowledged) and its ``snapshot_sent`` snapshots, only
broker-acknowledged under the old rule, are queued again (unreceipted until the court's receipt names them; the
snapshot spool forgets those whose file is gone).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from seal_agent.errors import OutboxError, OutboxMissing
from seal_protocol import envelope_hash

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2
#: The current schema, for a new file.
_SCHEMA = (
    """CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY,
        data BLOB NOT NULL,
        sha TEXT NOT NULL DEFAULT '',  -- SHA-256 (hex) of data, i.e. its envelope_hash: what a receipt names
        created_at REAL NOT NULL,
        acked_at REAL  -- when the broker acknowledged it; NULL: not (yet) in this process or an earlier one
    )""",
    "CREATE UNIQUE INDEX outbox_sha ON outbox (sha)",
    """CREATE TABLE snapshot_queue (
        qid INTEGER PRIMARY KEY AUTOINCREMENT,
        sha TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        acked_at REAL
    )""",
    "CREATE TABLE snapshot_receipted (sha TEXT PRIMARY KEY)  -- stored snapshots the court holds",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
#: Version 1, as that agent created it (a file it made may lack nothing of it, but older files may).
_SCHEMA_V1 = (
    "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, data BLOB NOT NULL, created_at REAL NOT NULL)",
    """CREATE TABLE IF NOT EXISTS snapshot_queue (
        qid INTEGER PRIMARY KEY AUTOINCREMENT, sha TEXT NOT NULL UNIQUE, created_at REAL NOT NULL
    )""",
    "CREATE TABLE IF NOT EXISTS snapshot_sent (sha TEXT PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
_V1_TO_V2 = (
    "ALTER TABLE outbox ADD COLUMN sha TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE outbox ADD COLUMN acked_at REAL",
    "ALTER TABLE snapshot_queue ADD COLUMN acked_at REAL",
)
_V1_TO_V2_SNAPSHOTS = (
    "CREATE TABLE snapshot_receipted (sha TEXT PRIMARY KEY)",
    # Sent under the old rule meant only that the broker took it (it may have lost it): queued again, unreceipted.
    "INSERT OR IGNORE INTO snapshot_queue (sha, created_at) SELECT sha, strftime('%s', 'now') FROM snapshot_sent",
    "DROP TABLE snapshot_sent",
)


def migrate(db: sqlite3.Connection, path: Path, *, create: bool = True) -> None:
    """Create the schema in a new file (only if ``create``: else :class:`OutboxMissing`), or bring an older file's
    up to :data:`SCHEMA_VERSION` (one transaction). A file already at it is only read: a seal whose disk is full
    still opens its outbox."""
    if _current(db, path, create=create):
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if not _current(db, path, create=create):  # another process may have migrated it meanwhile
            tables = _tables(db)
            if "outbox" not in tables:
                for statement in _SCHEMA:
                    db.execute(statement)
            elif "snapshot_receipted" not in tables:
                _migrate_from_v1(db, path)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        # SQLite may have rolled back already (a full disk, an I/O error): a ROLLBACK would then fail, and its error
        # would hide the one that says what happened.
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _tables(db: sqlite3.Connection) -> set[str]:
    return {str(name) for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _current(db: sqlite3.Connection, path: Path, *, create: bool) -> bool:
    """Whether the file is at :data:`SCHEMA_VERSION` already; raise if it is newer, or holds no outbox and
    ``create`` is false."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise OutboxError(f"{path} has outbox schema {version}, newer than this agent's {SCHEMA_VERSION}")
    tables = _tables(db)
    if "outbox" not in tables and not create:
        raise OutboxMissing(f"{path} holds no outbox")
    return version == SCHEMA_VERSION and {"outbox", "snapshot_receipted", "meta"} <= tables


def _migrate_from_v1(db: sqlite3.Connection, path: Path) -> None:
    for statement in (*_SCHEMA_V1, *_V1_TO_V2):
        db.execute(statement)
    requeued = int(db.execute("SELECT COUNT(*) FROM snapshot_sent").fetchone()[0])
    for statement in _V1_TO_V2_SNAPSHOTS:
        db.execute(statement)
    rows = db.execute("SELECT seq, data FROM outbox").fetchall()
    db.executemany("UPDATE outbox SET sha = ? WHERE seq = ?", [(envelope_hash(data), seq) for seq, data in rows])
    db.execute("CREATE UNIQUE INDEX outbox_sha ON outbox (sha)")
    logger.warning(
        "outbox %s migrated to schema %d: its %d event(s) stay until the court receipts them, and its %d "
        "snapshot(s) the broker had acknowledged are queued again for the court's receipt",
        path,
        SCHEMA_VERSION,
        len(rows),
        requeued,
    )
