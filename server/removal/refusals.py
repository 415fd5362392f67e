"""How many proof files of a case were refused lately: a refused filing files nothing, so the daily filing limit
(``[removal] max_filings_per_day``) never counts it; this does, so that a debtor cannot have the server check
hostile files in a loop. Each check is bounded (:mod:`~server.removal.pdf_content`), and at most
:data:`MAX_REFUSED_PER_DAY` filings of a case refused for their files are checked in 24 hours; after that the case's
filings are turned away before any file is read, saying when the next may be sent.

Kept in the process's memory, per proof store (one per app), not in the database: a restart forgets the count (the
worst it allows is one more day's budget), and no refusal writes a row. Keyed by the case's stored number, so that
every spelling of the case counts once.
"""

from __future__ import annotations

import threading
from collections import deque
from datetime import datetime, timedelta

from server.errors import Conflict, ServerError

#: Filings refused for their files a case may have in :data:`PERIOD` (a debtor who picks a wrong file a few times
#: is far from it).
MAX_REFUSED_PER_DAY = 20
PERIOD = timedelta(hours=24)
#: The refusals whose check cost the server work (a PDF's content scanned, a picture decoded or cleaned): only these
#: count. A file too large, empty, of the wrong type or misnamed is refused from its first bytes.
COSTLY = frozenset(
    {
        "refusal.proof_pdf_too_complex",
        "refusal.proof_pdf_unreadable",
        "refusal.proof_active_pdf",
        "refusal.proof_broken_picture",
        "refusal.proof_too_many_pixels",
        "refusal.proof_uncleanable",
    }
)


def costly(refusal: ServerError) -> bool:
    """Whether ``refusal`` came from a check that costs work (:data:`COSTLY`; one saying nothing counts too)."""
    said = getattr(refusal, "said", None)
    return said is None or said.key in COSTLY


class RefusedProofs:
    """The times of each case's filings refused for their files, the last :data:`MAX_REFUSED_PER_DAY` of them."""

    def __init__(self, limit: int = MAX_REFUSED_PER_DAY) -> None:
        self.limit = limit
        self._times: dict[str, deque[datetime]] = {}
        self._lock = threading.Lock()

    def check(self, case_no: str, now: datetime) -> None:
        """:class:`Conflict` if the case has had :attr:`limit` refused filings in the 24 hours before ``now``."""
        with self._lock:
            times = self._times.get(case_no)
            while times and times[0] <= now - PERIOD:
                times.popleft()
            if times is not None and not times:
                del self._times[case_no]
            if times is None or len(times) < self.limit:
                return
            after = times[0] + PERIOD
        raise Conflict(
            f"case {case_no!r} has had {self.limit} filings refused for their files in 24 hours: "
            f"the next may be sent after {after:%Y-%m-%d %H:%M}Z"
        ).saying("refusal.too_many_refused_proofs", n=self.limit, after=after)

    def charge(self, case_no: str, now: datetime, refusal: ServerError | None = None) -> None:
        """Count a filing of the case refused for its files at ``now`` — unless ``refusal``, the reason, is a cheap
        one (:func:`costly`)."""
        if refusal is not None and not costly(refusal):
            return
        with self._lock:
            self._times.setdefault(case_no, deque(maxlen=self.limit)).append(now)
