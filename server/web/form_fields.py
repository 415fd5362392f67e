"""The free-text fields of the pages' forms, one type each, so that every form refuses what the API refuses the same
way (``422``): a NUL (which PostgreSQL cannot store) in a note or in reasons, or text longer than the API takes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form

from server.alarms.service import NOTE_MAX
from server.api.schemas import NO_NUL

#: A note: acknowledging or closing an alarm, a step of a removal request, withdrawing one, closing a case.
Note = Annotated[str, Form(max_length=NOTE_MAX, pattern=NO_NUL)]
#: A judge's reasons for approving or rejecting a removal request (required).
Reasons = Annotated[str, Form(min_length=1, max_length=4000, pattern=NO_NUL)]
