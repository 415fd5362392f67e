"""Adding and removing a webhook target — the functions the API and the CLI call, each recording its own audit entry
(``notify.add_target``, ``notify.remove_target``) with its ``actor`` (a user, or ``None`` for the command line). A
target that could never be signed is refused here, when it is added, instead of failing at every delivery."""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from server.audit.service import Actor, record_audit
from server.config import NotifySettings
from server.core.unique import unique_or
from server.errors import AlreadyExists, ConfigError, found
from server.notify.addresses import DEFAULT_POLICY, AddressPolicy, check_target_host
from server.notify.models import Notification, NotificationTarget
from server.notify.outbox import DeliveryState, Role
from server.notify.webhook import SECRET_MIN_LENGTH, read_secret, signing_key
from server.seals.case_numbers import case_no_spellings
from server.seals.cases import get_case

NO_SECRET = (
    "a webhook target needs a secret to sign with: give it its own, or set notify.webhook_secret_file for the "
    "targets without one"
)


def add_target(
    session: Session,
    *,
    actor: Actor | None,
    settings: NotifySettings,
    case_no: str,
    role: str,
    url: str,
    secret: str | None,
) -> NotificationTarget:
    """Add the target (:func:`add_notification_target`); raise ``ValueError`` if it has no secret of its own and no
    global one it could be signed with (none configured, or the file cannot be read or holds no usable key), or if
    its own secret is unfit for a key."""
    if secret is None:
        if settings.webhook_secret_file is None:
            raise ValueError(NO_SECRET)
        try:
            read_secret(settings.webhook_secret_file)
        except ConfigError as exc:
            raise ValueError(f"{NO_SECRET} (notify.webhook_secret_file: {exc})") from None
    else:
        signing_key(secret)
    policy = AddressPolicy.from_settings(settings)
    target = add_notification_target(session, case_no=case_no, role=role, url=url, secret=secret, policy=policy)
    details = target_audit_details(target)
    record_audit(
        session, actor=actor, action="notify.add_target", target=str(target.id), case_no=target.case_no, details=details
    )
    return target


def target_audit_details(target: NotificationTarget) -> dict[str, object]:
    """What the audit log says of a target: never its secret, only whether it has one."""
    return {"case_no": target.case_no, "role": target.role, "url": target.url, "has_secret": target.secret is not None}


def add_notification_target(
    session: Session,
    *,
    case_no: str,
    role: str,
    url: str,
    secret: str | None = None,
    policy: AddressPolicy = DEFAULT_POLICY,
) -> NotificationTarget:
    """Send the alarms of ``case_no`` to the webhook ``url`` on behalf of ``role`` (judge or creditor).

    ``secret`` is this target's HMAC key; without one the global ``notify.webhook_secret_file`` signs. A URL whose
    host is an address ``policy`` refuses (loopback, link-local, …: :mod:`server.notify.addresses`) is refused.
    """
    case_no = get_case(session, case_no=case_no).case_no
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"a webhook URL must be http(s)://host/…, got {url!r}")
    check_target_host(parts.hostname or "", policy)
    if secret is not None and len(secret) < SECRET_MIN_LENGTH:
        raise ValueError(f"a webhook secret needs at least {SECRET_MIN_LENGTH} characters")
    role = Role(role).value
    same = select(NotificationTarget.id).where(
        NotificationTarget.case_no == case_no, NotificationTarget.role == role, NotificationTarget.url == url
    )

    def known() -> AlreadyExists:
        return AlreadyExists(f"case {case_no!r} already notifies the {role} at {url}")

    if session.scalar(same) is not None:
        raise known()
    target = NotificationTarget(case_no=case_no, role=role, url=url, secret=secret)
    with unique_or(session, known):  # the same target added at once: one goes through
        session.add(target)
        session.flush()
    return target


def list_notification_targets(session: Session, *, case_no: str | None = None) -> list[NotificationTarget]:
    """The webhook targets of ``case_no`` (``None``: of every case), oldest first."""
    query = select(NotificationTarget)
    if case_no is not None:
        query = query.where(NotificationTarget.case_no.in_(case_no_spellings(case_no)))
    return list(session.scalars(query.order_by(NotificationTarget.id)))


def get_notification_target(session: Session, *, target_id: int) -> NotificationTarget:
    return found(session.get(NotificationTarget, target_id), f"unknown notification target {target_id}")


def remove_notification_target(session: Session, *, actor: Actor | None, target_id: int) -> NotificationTarget:
    """Stop sending alarms to a target: its pending notifications are recorded failed, and the notifications already
    written keep their role and URL but no longer refer to it."""
    target = get_notification_target(session, target_id=target_id)
    details, case_no = target_audit_details(target), target.case_no
    session.execute(
        update(Notification)
        .where(Notification.target_id == target_id, Notification.state == DeliveryState.PENDING.value)
        .values(state=DeliveryState.FAILED.value, last_error="target removed")
    )
    session.execute(update(Notification).where(Notification.target_id == target_id).values(target_id=None))
    session.delete(target)
    session.flush()
    record_audit(
        session, actor=actor, action="notify.remove_target", target=str(target_id), case_no=case_no, details=details
    )
    return target
