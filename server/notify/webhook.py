"""The :class:`Notifier` interface, and webhooks signed the Standard Webhooks way as its implementation.

A webhook is a ``POST`` of a JSON body (UTF-8, keys sorted) signed as the Standard Webhooks specification
(https://www.standardwebhooks.com/, v1 symmetric signatures) says, so any of its verifier libraries checks it:

- ``webhook-id``: the notification's id (also ``notification_id`` in the body). The same id may arrive twice
  (at-least-once delivery, a retry after a lost answer), so receivers drop repeats.
- ``webhook-timestamp``: when this attempt was sent, integer seconds since the Unix epoch. Receivers refuse one too
  far from their clock (the specification suggests 5 minutes), so a captured webhook cannot be replayed later.
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256>`` over the bytes ``<webhook-id>.<webhook-timestamp>.<body>``.

The HMAC key is the target's own secret or, if it has none, the global one (``notify.webhook_secret_file``). A
secret of the form ``whsec_<base64>`` (what Standard Webhooks tools generate) is the key those base64 bytes are;
any other secret is the key its UTF-8 bytes are. A target is refused when added if neither exists
(:mod:`server.notify.targets`); a target left without one (the global secret removed later) is not sent and its
notification is recorded failed.

Only a 2xx answer counts as delivered; a redirect is a failure (it would carry the alarm elsewhere). A request is
bounded by ``notify.timeout_s`` all told, and goes only to an address :mod:`server.notify.addresses` allows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import http.client
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from seal_protocol import canonical_json
from server.alarms.models import Alarm
from server.config import read_secret_file
from server.errors import ConfigError
from server.notify.addresses import DEFAULT_POLICY, AddressPolicy, RefusedAddress
from server.notify.http_post import DeadlinePassed, post

logger = logging.getLogger(__name__)

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_MIN_LENGTH = 16
#: Prefix of a Standard Webhooks secret: the key is the base64 that follows.
WHSEC_PREFIX = "whsec_"
#: A ``whsec_`` key has at least this many bytes (the specification asks for 24 to 64).
WHSEC_MIN_BYTES = 16


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


def signing_key(secret: str) -> bytes:
    """The HMAC key of ``secret``: the bytes of a ``whsec_<base64>`` secret, else its UTF-8 bytes. Raise
    ``ValueError`` for a secret that is too short or a ``whsec_`` one that is not valid base64."""
    if secret.startswith(WHSEC_PREFIX):
        try:
            key = base64.b64decode(secret[len(WHSEC_PREFIX) :], validate=True)
        except binascii.Error:
            raise ValueError("a whsec_ webhook secret must be followed by base64") from None
        if len(key) < WHSEC_MIN_BYTES:
            raise ValueError(f"a whsec_ webhook secret needs at least {WHSEC_MIN_BYTES} bytes of key")
        return key
    if len(secret) < SECRET_MIN_LENGTH:
        raise ValueError(f"a webhook secret needs at least {SECRET_MIN_LENGTH} characters")
    return secret.encode("utf-8")


def signature(secret: str, *, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The value of the ``webhook-signature`` header: ``v1,`` and the base64 HMAC-SHA256 of ``id.timestamp.body``."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(signing_key(secret), signed, hashlib.sha256).digest()).decode("ascii")


def read_secret(path: Path) -> str:
    """The webhook secret in ``path`` (:func:`server.config.read_secret_file`); refuse one unfit for a key."""
    secret = read_secret_file(path, what="webhook secret")
    try:
        signing_key(secret)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return secret


class WebhookNotifier:
    """POSTs signed JSON to each recipient's URL, one at a time, each within ``timeout_s`` all told
    (:func:`server.notify.http_post.post`), only to addresses ``policy`` allows."""

    def __init__(
        self,
        *,
        secret: str | None,
        timeout_s: float,
        policy: AddressPolicy = DEFAULT_POLICY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._timeout_s = timeout_s
        self._policy = policy
        self._clock = clock
        if secret is None:
            logger.warning("notify.webhook_secret_file is not set: webhooks without a secret of their own are disabled")

    def notify(self, alarm: Alarm, recipients: Sequence[Recipient]) -> list[Delivery]:
        return [self._send(alarm, recipient) for recipient in recipients]

    def _send(self, alarm: Alarm, recipient: Recipient) -> Delivery:
        secret = recipient.secret or self._secret
        if secret is None:
            return Delivery(recipient, False, "no signing key (set notify.webhook_secret_file)", retry=False)
        body = alarm_body(alarm, recipient)
        webhook_id, timestamp = str(recipient.notification_id), int(self._clock())
        try:
            signed = signature(secret, webhook_id=webhook_id, timestamp=timestamp, body=body)
        except ValueError as exc:  # a key stored before the rules were checked on adding
            return Delivery(recipient, False, f"unusable signing key: {exc}", retry=False)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            ID_HEADER: webhook_id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signed,
            "User-Agent": "court-seal-server",
        }
        try:
            status = post(recipient.url, body, headers, timeout_s=self._timeout_s, policy=self._policy)
        except RefusedAddress as exc:
            return Delivery(recipient, False, str(exc))  # retried: the name may point elsewhere later
        except DeadlinePassed as exc:
            return Delivery(recipient, False, f"{recipient.url} did not answer: {exc}")
        except (OSError, http.client.HTTPException) as exc:  # a certificate refused too (also a ValueError)
            return Delivery(recipient, False, f"cannot reach {recipient.url}: {exc or type(exc).__name__}")
        except ValueError as exc:  # not a URL we can use
            return Delivery(recipient, False, f"unusable URL {recipient.url!r}: {exc}", retry=False)
        if not 200 <= status < 300:
            return Delivery(recipient, False, f"HTTP {status}")
        return Delivery(recipient, True)


def _iso(moment: datetime) -> str:
    return moment.isoformat()
