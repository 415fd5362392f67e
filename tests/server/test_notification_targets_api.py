"""The clerk manages a case's webhook targets over the API; a target's secret is never shown, its removal ends the
pending notifications to it, and both are audited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from seal_protocol import EventType
from server.app import create_app
from server.audit.models import AuditEntry
from server.auth.access import Role
from server.config import NotifySettings
from server.core.db import SessionFactory
from server.notify.models import Notification
from tests.server.auth_helpers import add_user, bearer, make_settings
from tests.server.ingest_world import Court, make_court

SECRET = "creditor-secret-0123456789"


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    return make_court(session_factory, tmp_path)


def app_with(database_url: str, tmp_path: Path, *, global_secret: bool) -> FastAPI:
    settings = make_settings(database_url, tmp_path)
    if global_secret:
        secret_file = tmp_path / "webhook-secret"
        secret_file.write_text("global-secret-0123456789\n")
        settings = settings.model_copy(update={"notify": NotifySettings(webhook_secret_file=secret_file)})
    return create_app(settings, with_ingest=False)


@pytest.fixture
def client(database_url: str, court: Court, tmp_path: Path) -> Iterator[TestClient]:
    """A clerk's client of an app with a global webhook secret."""
    add_user(court.session_factory, "clerk", Role.CLERK)
    with TestClient(app_with(database_url, tmp_path, global_secret=True)) as instance:
        instance.headers.update(bearer(court.session_factory, "clerk"))
        yield instance


def test_a_target_with_no_secret_to_sign_with_is_refused(database_url: str, court: Court, tmp_path: Path) -> None:
    add_user(court.session_factory, "clerk", Role.CLERK)
    url = f"/api/cases/{quote(court.a.case_no, safe='')}/notification-targets"
    with TestClient(app_with(database_url, tmp_path, global_secret=False)) as client:
        client.headers.update(bearer(court.session_factory, "clerk"))
        refused = client.post(url, json={"role": "judge", "url": "https://court.example/hook"})
        assert refused.status_code == 422 and "needs a secret" in refused.json()["detail"]
        bad_whsec = client.post(
            url, json={"role": "judge", "url": "https://court.example/hook", "secret": "whsec_!!!!!!!!!!!!!!!!"}
        )
        assert bad_whsec.status_code == 422 and "base64" in bad_whsec.json()["detail"]
        own = client.post(url, json={"role": "judge", "url": "https://court.example/hook", "secret": SECRET})
        assert own.status_code == 201 and own.json()["has_secret"] is True
        assert [t["role"] for t in client.get(url).json()] == ["judge"]


def test_targets_are_added_listed_without_secrets_and_removed(client: TestClient, court: Court) -> None:
    url = f"/api/cases/{quote(court.a.case_no, safe='')}/notification-targets"
    judge = client.post(url, json={"role": "judge", "url": "https://court.example/hook"})
    creditor = client.post(url, json={"role": "creditor", "url": "https://bank.example/hook", "secret": SECRET})
    assert (judge.status_code, creditor.status_code) == (201, 201)
    assert client.post(url, json={"role": "judge", "url": "https://court.example/hook"}).status_code == 409
    assert client.post(url, json={"role": "judge", "url": "ftp://x"}).status_code == 422
    metadata = client.post(url, json={"role": "judge", "url": "http://169.254.169.254/latest/meta-data/"})
    assert metadata.status_code == 422 and metadata.json()["detail"].startswith("通知目标 169.254.169.254 是链路本地")
    assert "A webhook must not go to 169.254.169.254" in metadata.json()["detail"]
    assert client.post(url, json={"role": "debtor", "url": "https://x.example"}).status_code == 422
    assert client.post(url, json={"role": "judge", "url": "https://x.example", "secret": "short"}).status_code == 422

    listed = client.get(url).json()
    assert [(t["role"], t["url"], t["has_secret"]) for t in listed] == [
        ("judge", "https://court.example/hook", False),
        ("creditor", "https://bank.example/hook", True),
    ]
    assert SECRET not in client.get(url).text + creditor.text + client.get("/api/audit").text

    court.send(court.a, court.a.event(EventType.TAMPER))  # an alarm: one pending notification per target
    assert client.delete(f"/api/notification-targets/{judge.json()['id']}").status_code == 204
    assert client.delete(f"/api/notification-targets/{judge.json()['id']}").status_code == 404
    assert [t["role"] for t in client.get(url).json()] == ["creditor"]
    with court.session_factory() as session:
        rows = session.scalars(select(Notification).order_by(Notification.id))
        assert [(n.role, n.state, n.target_id is None, n.last_error) for n in rows] == [
            ("judge", "failed", True, "target removed"),
            ("creditor", "pending", False, None),
        ]
        actions = session.scalars(select(AuditEntry.action).where(AuditEntry.action.like("notify.%")))
        assert sorted(actions) == ["notify.add_target", "notify.add_target", "notify.remove_target"]
