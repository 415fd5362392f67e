"""Migrations 0011–0013 on a database that holds a log: audit leaves, a signed checkpoint and its time stamp.
Downgrading past 0012 (which rebuilds the log from the events and drops its checkpoints) and upgrading again must
work on SQLite and PostgreSQL, and leave a whole log."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select, text

from server.audit.service import acting_as, record_audit
from server.core.base import utc_now
from server.core.db import make_engine, make_session_factory, session_scope
from server.evidence import log
from server.evidence.checkpoints import LogKey
from server.evidence.models import LogLeaf, LogTimestamp
from server.migrations.run import current_revision, downgrade, pending_differences, upgrade
from tests.server.auth_helpers import LOG_ORIGIN

#: 0011_log_timestamps: the revision before the audit entries became leaves.
BEFORE_AUDIT_LEAVES = "a3c7e1f5b920"


def test_downgrade_past_the_audit_leaves_with_a_stamped_checkpoint(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        head = current_revision(engine)
        factory = make_session_factory(engine)
        key = LogKey(tmp_path / "log.key", LOG_ORIGIN)
        with session_scope(factory) as session, acting_as("cli:alice"):
            for n in range(3):
                record_audit(session, actor=None, action="case.note", target=f"note {n}")
        with session_scope(factory) as session:
            checkpoint = log.make_checkpoint(session, key)
            assert checkpoint is not None
            session.flush()
            now = utc_now()
            session.add(
                LogTimestamp(
                    checkpoint_id=checkpoint.id,
                    response=b"\x30\x00",
                    chain_pem="",
                    gen_time=now,
                    tsa_url="http://127.0.0.1:1/tsa",
                    tsa_subject="CN=test TSA",
                    pinned=False,
                    obtained_at=now + timedelta(seconds=1),
                )
            )

        downgrade(engine, BEFORE_AUDIT_LEAVES)
        assert current_revision(engine) == BEFORE_AUDIT_LEAVES
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT COUNT(*) FROM log_checkpoints")) == 0
            assert conn.scalar(text("SELECT COUNT(*) FROM log_timestamps")) == 0
            assert conn.scalar(text("SELECT COUNT(*) FROM log_leaves")) == 0  # no events: an empty log

        upgrade(engine)
        assert current_revision(engine) == head
        assert pending_differences(engine) == []
        with factory() as session:  # the entries are leaves again, after the (no) events
            assert session.scalar(select(func.count()).select_from(LogLeaf)) == 3
            assert log.tree_size(session) == 3
            assert log.root_hash(session, 3) == checkpoint.root_hash
    finally:
        engine.dispose()
