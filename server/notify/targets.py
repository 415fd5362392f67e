"""Adding a webhook target — the one function the API and the CLI call: a target that could never be signed is
refused here, when it is added, instead of failing at every delivery."""

from __future__ import annotations

from sqlalchemy.orm import Session

from server.alarms.models import NotificationTarget
from server.alarms.service import add_notification_target
from server.config import NotifySettings
from server.notify.webhook import signing_key

NO_SECRET = (
    "a webhook target needs a secret to sign with: give it its own, or set notify.webhook_secret_file for the "
    "targets without one"
)


def add_target(
    session: Session, *, settings: NotifySettings, case_no: str, role: str, url: str, secret: str | None
) -> NotificationTarget:
    """Add the target (:func:`server.alarms.service.add_notification_target`); raise ``ValueError`` if it has no
    secret of its own and no global one is configured, or if its secret is unfit for a key."""
    if secret is None and settings.webhook_secret_file is None:
        raise ValueError(NO_SECRET)
    if secret is not None:
        signing_key(secret)
    return add_notification_target(session, case_no=case_no, role=role, url=url, secret=secret)
