"""Every table of the court server, collected for Alembic and for the tests that compare models and migrations.

Each package keeps its tables beside its code (``<package>/models.py``); this module imports them all so that
:data:`metadata` knows every table, as the FastAPI template's ``alembic/env.py`` does. Nothing imports it back.
"""

from __future__ import annotations

from server.alarms import models as alarms
from server.audit import models as audit
from server.auth import models as auth
from server.commands import models as commands
from server.core.base import Base
from server.evidence import models as evidence
from server.export import models as export
from server.ingest import models as ingest
from server.marks import models as marks
from server.notices import models as notices
from server.notify import models as notify
from server.removal import models as removal
from server.seals import models as seals

#: The schema the migrations build: every package's tables.
metadata = Base.metadata

__all__ = [
    "alarms",
    "audit",
    "auth",
    "commands",
    "evidence",
    "export",
    "ingest",
    "marks",
    "metadata",
    "notices",
    "notify",
    "removal",
    "seals",
]
