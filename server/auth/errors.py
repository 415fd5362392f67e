"""Errors of authentication and authorisation; the app maps them to 401, 403 and 429."""

from __future__ import annotations

from server.errors import ServerError


class NotAuthenticated(ServerError, PermissionError):
    """No valid session or token: the caller must log in (401)."""


class Forbidden(ServerError, PermissionError):
    """The caller may see the object but lacks the permission for this action (403)."""


class UnknownClient(Forbidden):
    """A sign-in whose client's address is unknown (a reverse proxy not configured as it must be): refused (403)."""


class TooManyAttempts(ServerError, RuntimeError):
    """Too many failed logins for a username or a client address (429)."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
