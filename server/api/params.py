"""Path and query parameters shared by the routes, each bounded: a value out of bounds is a 422 naming the parameter.

Ids and cursors fit a signed 64-bit column; strings have the lengths and characters of the columns they are looked
up in (:mod:`server.schemas`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from seal_protocol.topics import DEVICE_ID_PATTERN
from server.api.schemas import CASE_NO_MAX, MAX_ROW_ID, ONE_LINE, USERNAME_MAX, Moment

CaseNoPath = Annotated[
    str, Path(min_length=1, max_length=CASE_NO_MAX, pattern=ONE_LINE, description="案号, percent-encoded.")
]
DeviceIdPath = Annotated[
    str, Path(min_length=1, max_length=64, pattern=DEVICE_ID_PATTERN.pattern, description="The seal's id.")
]
UsernamePath = Annotated[str, Path(min_length=1, max_length=USERNAME_MAX, pattern=ONE_LINE)]
RowIdPath = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]


Before = Annotated[
    int | None, Query(ge=1, le=MAX_ROW_ID, description="Only rows with an id below this (the paging cursor).")
]
CaseNoQuery = Annotated[
    str | None, Query(min_length=1, max_length=CASE_NO_MAX, pattern=ONE_LINE, description="Only this case's.")
]
DeviceIdQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=64, pattern=DEVICE_ID_PATTERN.pattern, description="Only this seal's."),
]
Since = Annotated[Moment | None, Query(description="Only what happened at or after this time.")]
Until = Annotated[Moment | None, Query(description="Only what happened before this time.")]
