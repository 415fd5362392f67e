"""The secrets a configuration names, read as the server will read them: ``check-config`` reads them all, ``run``
those it needs at start, so that a missing, empty or unreadable file is one line naming its key — not ``ok`` from
``check-config`` and then a traceback from ``run``."""

from __future__ import annotations

import binascii
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from seal_protocol.errors import SignatureError
from seal_protocol.signing import load_signing_key
from server.config import Settings, read_password
from server.errors import CommandsUnavailable, ConfigError
from server.notices.errors import NoticesUnavailable


def check_start_secrets(settings: Settings) -> None:
    """What ``run`` needs before it starts: the MQTT password and the broker's CA file. :class:`ConfigError` naming
    the key."""
    _named("[mqtt] password_file", lambda: read_password(settings.mqtt.password_file))
    if (ca := settings.mqtt.tls_ca_file) is not None:
        _named("[mqtt] tls_ca_file", lambda: _readable(ca, "CA certificate"))


def check_secrets(settings: Settings, env: Mapping[str, str] | None = None) -> None:
    """Every secret the settings name, as the server reads it; :class:`ConfigError` naming the key of the first that
    cannot be used. The evidence log's key may be absent (the server creates it), not unreadable."""
    from server.commands.keys import read_court_key
    from server.notices.keys import read_notice_key
    from server.notify.webhook import read_secret
    from server.stores import s3_secret

    check_start_secrets(settings)
    if (court_key := settings.commands.signing_key_file) is not None:
        _named("[commands] signing_key_file", lambda: read_court_key(court_key))
    if (log_key := settings.evidence.log_key_file) is not None and log_key.exists():
        _named("[evidence] log_key_file", lambda: _signing_key(log_key))
    if (notice_key := settings.notices.key_file) is not None:
        _named("[notices] key_file", lambda: read_notice_key(notice_key))
    if (webhook := settings.notify.webhook_secret_file) is not None:
        _named("[notify] webhook_secret_file", lambda: read_secret(webhook))
    if settings.storage.backend == "s3":
        _named(
            "[storage] secret_access_key_file", lambda: s3_secret(settings.storage, os.environ if env is None else env)
        )


def _named(key: str, read: Callable[[], object]) -> None:
    try:
        read()
    except (ConfigError, CommandsUnavailable, NoticesUnavailable) as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _readable(path: Path, what: str) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror}") from None


def _signing_key(path: Path) -> None:
    try:
        load_signing_key(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the log signing key: {exc.strerror}") from None
    except (SignatureError, binascii.Error, ValueError) as exc:
        raise ConfigError(f"{path} is not a log signing key: {exc}") from None
