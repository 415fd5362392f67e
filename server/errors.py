"""Errors of the court server. Each also inherits the builtin it refines, so callers may catch either."""

from __future__ import annotations

import errno
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Self, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Said:
    """What a person is told, in the court's words: a key of the catalogue (:mod:`server.words`) and the values of
    its placeholders — a :class:`Said` among them in its own words, a list of them one after the other, a
    ``datetime`` on the court's clock (``Translator.say`` in :mod:`server.web.i18n`)."""

    key: str
    values: Mapping[str, object] = field(default_factory=dict)


class ServerError(Exception):
    """Base class of every error raised by ``server``. Its message is the API's (English, for whoever calls it);
    :attr:`said`, if set, is what a page tells a member of the public, Chinese first (:meth:`saying`)."""

    said: Said | None = None

    def saying(self, key: str, **values: object) -> Self:
        """This error, with what a person is told of it: ``raise Conflict("…").saying("refusal.no_seal")``."""
        self.said = Said(key, values)
        return self


class ConfigError(ServerError, ValueError):
    """The configuration file is missing, unreadable or invalid."""


class UsageError(ServerError, ValueError):
    """A command that cannot go on as it was called: options that contradict each other, no terminal to ask a
    password on, a directory it cannot write. The CLI's exit status 2, like a bad configuration."""


class SchemaMismatch(UsageError):
    """The database's schema is not the one this code was written for: ``init-db`` not run yet after an upgrade, or
    a newer version's. A command that would use it as it is refuses to start (exit status 2)."""


class NotFound(ServerError, LookupError):
    """A case, seal or other record that does not exist."""


def found(row: T | None, message: str) -> T:
    """``row``, or :class:`NotFound` with ``message`` if it is ``None`` (a lookup that must find something)."""
    if row is None:
        raise NotFound(message)
    return row


class Invalid(ServerError, ValueError):
    """A value that breaks a rule of the domain (a malformed case number, a court not named): 422 on the API."""


class AlreadyExists(ServerError, ValueError):
    """A record that would duplicate an existing one."""


class Conflict(ServerError, ValueError):
    """A request that contradicts the current state (e.g. a different key for a registered seal)."""


class StorageUnavailable(ServerError, RuntimeError):
    """The database cannot store even a quarantine row; messages stay unacknowledged and are retried.

    ``stored``: the outcomes of the messages that were committed before it went away, the first of those handed
    over, in order (a batch stored one by one); they are done, and must not be stored or counted again."""

    def __init__(self, message: str, *, stored: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.stored = list(stored)


class BrokerUnavailable(ServerError, ConnectionError):
    """The MQTT client could not be set up."""


class BrokerFilesNotWritten(ServerError, RuntimeError):
    """An account change is stored, but the broker's files could not be rewritten (nor the broker reloaded): it is not
    in force at the broker yet."""


class CommandsUnavailable(ServerError, RuntimeError):
    """Commands cannot be issued: the court's signing key is not configured or cannot be read."""


class ContentStoreError(ServerError, OSError):
    """The store of snapshots and proof files failed: the same path as a disk error of the directory store (the
    ingest quarantines the message unreceipted, so the seal sends it again; a filing is refused with 503)."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EIO, message)

    def __str__(self) -> str:
        return str(self.strerror)


class ContentStoreUnavailable(ContentStoreError):
    """The store as a whole cannot be used: it did not answer (connection refused, timed out), is busy or down (503),
    or refused our credentials. (An error about one object is a plain :class:`ContentStoreError`.)"""


class ContentMismatch(ContentStoreError):
    """An object stored under a SHA-256 holds other bytes: someone with the store's write access put them there
    first, or they were damaged. Never taken for the object we meant to store."""
