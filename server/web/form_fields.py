"""The text fields of the pages' forms, one type each, so that every form refuses what the API refuses the same way
(``422``, the error page in the reader's language): a NUL (which PostgreSQL cannot store) in a note or in reasons, a
control character in what is one line (a username, a case number, an access code: looked up in the database, where a
NUL was a 500 on PostgreSQL), or text longer than the API takes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form

from server.alarms.service import NOTE_MAX
from server.api.schemas import CASE_NO_MAX, NO_NUL, ONE_LINE, USERNAME_MAX

#: A note: acknowledging or closing an alarm, a step of a removal request, withdrawing one, closing a case.
Note = Annotated[str, Form(max_length=NOTE_MAX, pattern=NO_NUL)]
#: A judge's reasons for approving or rejecting a removal request (required).
Reasons = Annotated[str, Form(min_length=1, max_length=4000, pattern=NO_NUL)]
#: A username as typed at sign-in (the API's ``Username``).
Username = Annotated[str, Form(min_length=1, max_length=USERNAME_MAX, pattern=ONE_LINE)]
#: A case number as typed (the portal's sign-in; empty is told as missing there).
CaseNoText = Annotated[str, Form(max_length=CASE_NO_MAX, pattern=ONE_LINE)]
#: A case's access code as typed (the API's ``AccessCodeLogin.code``; empty is told as missing).
AccessCodeText = Annotated[str, Form(max_length=64, pattern=ONE_LINE)]
