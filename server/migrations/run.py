"""Database migrations (Alembic), run programmatically on an engine: ``upgrade`` at start-up and by ``init-db``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine

from server.errors import SchemaMismatch
from server.migrations.metadata import metadata
from server.seals.seal_keys import complete_key_index

logger = logging.getLogger(__name__)


def _config(connection: object | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "server:migrations")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction to migrate on. SQLite alters a table by copying it and dropping the original,
    which its foreign-key enforcement refuses while other tables' rows refer to it; so on SQLite enforcement is off
    while migrating (it can only be switched outside a transaction) and every reference is checked before the
    commit: a migration that would leave a dangling one is rolled back."""
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        raw = connection.connection.dbapi_connection  # outside SQLAlchemy's transaction, which would begin one
        if sqlite and raw is not None:
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                yield connection
                if sqlite:
                    dangling = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if dangling:
                        raise RuntimeError(f"the migration would leave dangling references: {dangling[:5]}")
        finally:
            if sqlite and raw is not None:
                raw.execute("PRAGMA foreign_keys=ON")


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema to ``revision`` (default: the newest); nothing is migrated (nor checked) if it is
    there already. At the newest, what a migration had to leave out is completed once it can be
    (:func:`~server.seals.seal_keys.complete_key_index`). A schema of a revision this code does not know (a newer
    version's) raises :class:`~server.errors.SchemaMismatch`."""
    script = ScriptDirectory.from_config(_config())
    current = current_revision(engine)
    _refuse_newer(script, current)
    if revision != "head" or current != script.get_current_head():
        with _migrating(engine) as connection:
            command.upgrade(_config(connection), revision)
        logger.info("database schema at %s on %s", revision, engine.url.render_as_string(hide_password=True))
    if revision == "head":
        complete_key_index(engine)


def init_db(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (creating it in an empty database)."""
    upgrade(engine)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def check_schema(engine: Engine) -> None:
    """Raise :class:`~server.errors.SchemaMismatch`, in one line saying what to do, unless the database's schema is
    at this code's newest revision: for a command that uses the database without migrating it (an ingest worker).
    Such a process against another schema fails every statement that names what the schema lacks."""
    script = ScriptDirectory.from_config(_config())
    head, current = script.get_current_head(), current_revision(engine)
    if current == head:
        return
    _refuse_newer(script, current)
    raise SchemaMismatch(
        f"数据库结构落后于本版本（{current or '无'}，本版本需要 {head}）：请先运行 seal-server init-db / the "
        f"database's schema is behind this code (at {current or 'none'}, this code needs {head}): run "
        "`seal-server init-db` first"
    )


def _refuse_newer(script: ScriptDirectory, current: str | None) -> None:
    """Raise :class:`~server.errors.SchemaMismatch` if ``current`` is a revision this code does not know (a newer
    version migrated the database)."""
    if current is None or _known(script, current):
        return
    head = script.get_current_head()
    raise SchemaMismatch(
        f"数据库结构比本版本新（{current}，本版本只到 {head}），请升级本机的法院服务器 / the database is newer "
        f"than this code (schema {current}, this code knows up to {head}: migrated by a newer version): upgrade this "
        "machine's court server"
    )


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


def pending_differences(engine: Engine) -> list[object]:
    """What the models have that the database's schema lacks (empty when the migrations are complete)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def autogenerate(engine: Engine, message: str) -> None:
    """Write a new revision from the difference between the models and ``engine``'s schema (for developers)."""
    with engine.begin() as connection:
        command.revision(_config(connection), message=message, autogenerate=True)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema back to ``revision`` (``"base"``: no tables at all)."""
    with _migrating(engine) as connection:
        command.downgrade(_config(connection), revision)
