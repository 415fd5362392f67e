"""Errors of the evidence export."""

from __future__ import annotations

from server.errors import Conflict, ServerError


class ExportError(ServerError):
    """Base class of the export's errors."""


class ExportFailed(ExportError, RuntimeError):
    """The bundle cannot be made truthfully (an event outside the log, a file that cannot be read or written)."""


class StoreAway(ExportFailed):
    """A store of the evidence (snapshots, removal proofs) does not answer — its disk not mounted, its bucket down: no
    bundle is made (503 on the API), rather than one that calls every picture lost."""


class NothingLogged(ExportError, Conflict):
    """The log has no leaf yet, so no checkpoint can be signed for the bundle (409)."""


class BundleTooLarge(ExportError, Conflict):
    """The bundle would pass a size bound of seal-verify, which would refuse it unread (409): export shorter time
    ranges (:mod:`server.export.limits`)."""
