"""The declarative base of every table, its naming convention, and the column types they share.

Every timestamp is a timezone-aware UTC ``datetime`` in Python (:class:`UTCDateTime`), on SQLite and PostgreSQL
alike. Constraint names follow one naming convention so that Alembic migrations can refer to them. Each table lives
in the package whose code owns it; :mod:`server.migrations.metadata` collects them all for Alembic.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Integer,
    MetaData,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: A 64-bit id on PostgreSQL; SQLite only auto-increments a column declared exactly ``INTEGER PRIMARY KEY``.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime; naive values are refused rather than guessed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: store timezone-aware UTC datetimes only")
        value = value.astimezone(UTC)
        # SQLite has no time zones: store naive UTC there.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        """On SQLite, one function from the aware datetime to the text SQLAlchemy's ``DATETIME`` stores
        (``YYYY-MM-DD HH:MM:SS.ffffff``, naive UTC): what :meth:`process_bind_param` and that type's own processor make
        together, at a fraction of the cost (the ingest binds several times per event): the aware UTC time's
        ISO text less its ``+00:00``, without making a naive copy first."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is not UTC:
                if value.tzinfo is None:
                    raise ValueError("naive datetime: store timezone-aware UTC datetimes only")
                value = value.astimezone(UTC)
            return value.isoformat(" ", "microseconds")[:-6]  # "+00:00": its offset, always zero here

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON().with_variant(JSONB(), "postgresql")}
