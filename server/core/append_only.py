"""Tables the database itself keeps append-only: a trigger refuses every UPDATE and DELETE of their rows.

:func:`append_only` installs the triggers when ``create_all`` creates the table; the migrations that create or
alter such a table run :func:`append_only_statements` (and :func:`drop_statements` around a backfill).
"""

from __future__ import annotations

from sqlalchemy import DDL, Table, event


def append_only_statements(table: str, dialect: str) -> list[str]:
    """The statements that make ``table`` append-only on ``dialect`` (``sqlite`` or ``postgresql``)."""
    message = f"{table} is append-only"
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} BEGIN SELECT RAISE(ABORT, '{message}'); END"
            for op in ("UPDATE", "DELETE")
        ]
    if dialect == "postgresql":
        return [
            f"CREATE FUNCTION {table}_refuse() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{message}'; END $$",
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {table}_refuse()",
        ]
    return []


def drop_statements(table: str, dialect: str) -> list[str]:
    """The statements that undo :func:`append_only_statements` (for a migration's backfill or downgrade)."""
    if dialect == "sqlite":
        return [f"DROP TRIGGER IF EXISTS {table}_no_{op}" for op in ("update", "delete")]
    if dialect == "postgresql":
        return [f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}", f"DROP FUNCTION IF EXISTS {table}_refuse()"]
    return []


def append_only(table: Table) -> None:
    """Have ``create_all`` make ``table`` append-only right after creating it."""
    for dialect in ("sqlite", "postgresql"):
        for statement in append_only_statements(table.name, dialect):
            event.listen(table, "after_create", DDL(statement).execute_if(dialect=dialect))
