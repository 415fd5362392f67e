"""Errors of the notices: what keeps a notice from being issued, printed or checked."""

from __future__ import annotations

from server.errors import ServerError


class NoticesUnavailable(ServerError, RuntimeError):
    """No notice can be issued or checked now: the notice key, the public address or the CJK font is not configured
    or cannot be read (503: the court's set-up, not the request, is at fault)."""
