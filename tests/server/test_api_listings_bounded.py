"""Every list the API answers with is bounded: a listing whose rows grow with a case (events, snapshots, alarms,
commands, removal requests, audit entries, inbox, quarantine) takes a ``limit`` with a maximum, so a big case is read
a page at a time, never whole. The lists that grow with the court instead (its cases, seals, users, courts) or with
a handful of rows per case are named here with why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.core.db import SessionFactory
from tests.server.auth_helpers import make_settings

#: Lists that do not grow with a case's history: operation -> why.
NOT_PAGED = {
    ("get", "/api/cases"): "the court's cases (the clerk's register), not a case's history",
    ("get", "/api/cases/{case_no}/assignments"): "the judges and clerks assigned to a case: a handful",
    ("get", "/api/cases/{case_no}/notification-targets"): "a case's notification addresses: a handful",
    ("get", "/api/courts"): "the courts the server serves",
    ("get", "/api/users"): "the court's accounts",
    ("get", "/api/seals"): "the court's seals (each case's a handful)",
    ("get", "/api/seals/{device_id}/bindings"): "a seal's cases, one per installation",
    ("get", "/api/removal-grounds"): "the fixed list of grounds",
}


@pytest.fixture
def document(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[dict[str, Any]]:
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False)) as client:
        yield client.get("/openapi.json").json()


def _is_list(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "array" or any(_is_list(s) for s in schema.get("anyOf", []))


def test_every_listing_of_the_api_takes_a_bounded_limit(document: dict[str, Any]) -> None:
    lists = {}
    for path, item in document["paths"].items():
        operation = item.get("get")
        content = (operation or {}).get("responses", {}).get("200", {}).get("content", {})
        schema = content.get("application/json", {}).get("schema", {})
        if _is_list(schema):
            lists[("get", path)] = operation
    assert ("get", "/api/cases/{case_no}/snapshots") in lists
    assert NOT_PAGED.keys() <= lists.keys(), "a route named here is gone: update NOT_PAGED"
    unbounded = []
    for key, operation in lists.items():
        if key in NOT_PAGED:
            continue
        limit = [p for p in operation.get("parameters", []) if p["name"] == "limit" and p["in"] == "query"]
        if not limit or "maximum" not in limit[0]["schema"] or limit[0].get("required", False):
            unbounded.append(key)
    assert unbounded == [], f"listings without a bounded limit: {unbounded}"
