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


class ExportsBusy(ExportError, RuntimeError):
    """As many exports as the server runs at once are running (:mod:`server.export.slots`): none is begun (503 with
    ``Retry-After`` on the API), rather than each hold a worker and the memory of its case at once."""

    def __init__(self, running: int, retry_after_s: int) -> None:
        super().__init__(
            f"正在导出的证据包已达上限（{running} 个），请 {retry_after_s} 秒后再试。 / "
            f"{running} evidence export(s) already running, the most the server runs at once: "
            f"try again in {retry_after_s} s."
        )
        self.retry_after_s = retry_after_s
