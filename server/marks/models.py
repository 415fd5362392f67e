"""The caught-up marks' table: one row per ingest worker (:mod:`server.marks.marks`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from server.core.base import Base


class IngestMark(Base):
    """How far one ingest worker has caught up with what the broker held for it (:mod:`server.marks.marks`)."""

    __tablename__ = "ingest_marks"

    worker: Mapped[str] = mapped_column(String(128), primary_key=True, comment="The worker's MQTT client name.")
    caught_up_at: Mapped[datetime] = mapped_column(
        comment="Send time of the worker's newest marker it has processed: everything the broker held for it "
        "before then is stored."
    )
    marked_at: Mapped[datetime] = mapped_column(comment="When the worker last wrote this row (the court's clock).")
