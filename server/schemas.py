"""Response models of the REST API, one family per resource."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded", "error"] = Field(
        description="ok: database and broker fine; degraded: no broker connection; error: no database."
    )
    broker: Literal["connected", "disconnected"]
    db: Literal["ok", "error"]


class EventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="Row id, increasing in the order the court received events; the paging cursor.")
    device_id: str
    case_no: str
    seq: int
    event_id: str
    type: str
    ts: datetime = Field(description="When it happened, by the seal's clock.")
    received_at: datetime
    prev_hash: str | None
    sig: str
    payload: dict[str, Any]
    envelope: str = Field(description="The signed envelope exactly as received (verify it with the seal's key).")


class EventPage(BaseModel):
    case_no: str
    events: list[EventPublic] = Field(description="Newest (last received) first.")
    next_before: int | None = Field(description="Pass as ?before= for the next (older) page; null on the last page.")


class SealPublic(BaseModel):
    device_id: str
    case_no: str | None
    location: str
    registered_at: datetime
    status: str | None = Field(description="The seal's last reported status (online/offline), if any.")
    status_changed_at: datetime | None
    last_seen_at: datetime | None
    last_event_at: datetime | None
    online: bool = Field(description="Reported online and heard from within offline_after_s.")
