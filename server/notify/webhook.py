"""The :class:`Notifier` interface, and webhooks signed with HMAC-SHA256 as its implementation.

A webhook is a ``POST`` of a JSON body (UTF-8, keys sorted) with these headers:

- ``X-Seal-Signature-256: sha256=<hex>``: HMAC-SHA256 of the exact body bytes, keyed with the target's secret or,
  if it has none, the global one (``notify.webhook_secret_file``). There is no default key: without one, the
  webhook is not sent and the notification is recorded failed.
- ``X-Seal-Notification-Id``: the notification's id; the same id may arrive twice (at-least-once), so receivers
  drop repeats.

Only a 2xx answer counts as delivered; a redirect is a failure (it would carry the alarm elsewhere).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from seal_protocol import canonical_json
from server.alarms.models import Alarm
from server.config import read_secret_file
from server.errors import ConfigError

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Seal-Signature-256"
NOTIFICATION_ID_HEADER = "X-Seal-Notification-Id"
SECRET_MIN_LENGTH = 16


@dataclass(frozen=True, slots=True)
class Recipient:
    """Where one notification of an alarm goes."""

    notification_id: int
    role: str
    url: str
    secret: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    recipient: Recipient
    delivered: bool
    error: str | None = None
    retry: bool = True  # False: no later attempt can succeed either (e.g. no signing key)


class Notifier(Protocol):
    """Tells people about an alarm; one :class:`Delivery` per recipient, in order. Must not raise."""

    def notify(self, alarm: Alarm, recipients: Sequence[Recipient]) -> list[Delivery]: ...


def alarm_body(alarm: Alarm, recipient: Recipient) -> bytes:
    """The JSON body of a webhook about ``alarm``."""
    body: dict[str, Any] = {
        "notification_id": recipient.notification_id,
        "role": recipient.role,
        "alarm": {
            "id": alarm.id,
            "case_no": alarm.case_no,
            "device_id": alarm.device_id,
            "kind": alarm.kind,
            "severity": alarm.severity,
            "state": alarm.state,
            "opened_at": _iso(alarm.opened_at),
            "last_seen_at": _iso(alarm.last_seen_at),
            "count": alarm.count,
            "details": alarm.details,
        },
    }
    return canonical_json(body)


def signature(secret: str, body: bytes) -> str:
    """The value of the signature header: ``sha256=`` and the HMAC-SHA256 of ``body`` in hex."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def read_secret(path: Path) -> str:
    """The webhook secret in ``path`` (:func:`server.config.read_secret_file`); refuse a short one."""
    secret = read_secret_file(path, what="webhook secret")
    if len(secret) < SECRET_MIN_LENGTH:
        raise ConfigError(f"{path}: the webhook secret needs at least {SECRET_MIN_LENGTH} characters")
    return secret


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None  # the 3xx then surfaces as an HTTPError


class WebhookNotifier:
    """POSTs signed JSON to each recipient's URL."""

    def __init__(self, *, secret: str | None, timeout_s: float) -> None:
        self._secret = secret
        self._timeout_s = timeout_s
        self._opener = urllib.request.build_opener(_NoRedirect())
        if secret is None:
            logger.warning("notify.webhook_secret_file is not set: webhooks without a secret of their own are disabled")

    def notify(self, alarm: Alarm, recipients: Sequence[Recipient]) -> list[Delivery]:
        return [self._send(alarm, recipient) for recipient in recipients]

    def _send(self, alarm: Alarm, recipient: Recipient) -> Delivery:
        secret = recipient.secret or self._secret
        if secret is None:
            return Delivery(recipient, False, "no signing key (set notify.webhook_secret_file)", retry=False)
        body = alarm_body(alarm, recipient)
        request = urllib.request.Request(
            recipient.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                SIGNATURE_HEADER: signature(secret, body),
                NOTIFICATION_ID_HEADER: str(recipient.notification_id),
                "User-Agent": "court-seal-server",
            },
        )
        try:
            with self._opener.open(request, timeout=self._timeout_s) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            return Delivery(recipient, False, f"HTTP {exc.code}")
        except ValueError as exc:  # not a URL urllib can use
            return Delivery(recipient, False, f"unusable URL {recipient.url!r}: {exc}", retry=False)
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            return Delivery(recipient, False, f"cannot reach {recipient.url}: {reason}")
        if not 200 <= status < 300:
            return Delivery(recipient, False, f"HTTP {status}")
        return Delivery(recipient, True)


def _iso(moment: datetime) -> str:
    return moment.isoformat()
