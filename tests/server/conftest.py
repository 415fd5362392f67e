"""Fixtures of the server tests: a database per test (SQLite always, PostgreSQL when configured)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from server.core.db import SessionFactory, make_engine, make_session_factory
from server.migrations.run import init_db
from tests.server.pg_locks import named_engine

PG_ENV = "SEAL_TEST_DATABASE_URL"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: a SQLite file, or a fresh schema on the PostgreSQL of ``$SEAL_TEST_DATABASE_URL``."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'court.db'}"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL variant: set {PG_ENV}, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test")
    schema = f"test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file with the schema at the newest revision, made once per run: each test's database is a copy."""
    path = tmp_path_factory.mktemp("template") / "court.db"
    template = make_engine(f"sqlite:///{path}")
    init_db(template)
    template.dispose()  # the last connection's close folds the write-ahead log into the file
    return path


@pytest.fixture
def engine(database_url: str, migrated_sqlite: Path) -> Iterator[Engine]:
    """An engine on ``database_url`` with the tables created (on SQLite, a copy of a database migrated once)."""
    target = make_url(database_url)
    if target.get_backend_name() == "sqlite" and target.database and not Path(target.database).exists():
        shutil.copyfile(migrated_sqlite, target.database)
        instance = make_engine(database_url)
    else:
        instance = make_engine(database_url)
        init_db(instance)
    try:
        yield instance
    finally:
        instance.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> SessionFactory:
    return make_session_factory(engine)


@pytest.fixture
def pg_engine(database_url: str, engine: Engine) -> Iterator[Engine]:
    """Connections of their own name (:func:`~tests.server.pg_locks.named_engine`) on the test's PostgreSQL schema,
    after ``engine`` made the tables; the SQLite variant is skipped."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's row locks (SQLite's writers queue at BEGIN IMMEDIATE)")
    named = named_engine(database_url)
    try:
        yield named
    finally:
        named.dispose()
