"""Is the court receiving from its seals now? What every live page says while it is not.

While the court's ingest has lost its broker, cannot store what it receives, or has not stored what the broker held
for it (its caught-up mark lags), nothing the seals say reaches the screens: no change is published, and the liveness
check holds back its offline alarms on purpose (a court that hears nothing must not declare every seal offline:
:mod:`server.marks.marks`). An open page would go on saying "online" as if it were live. So :class:`CourtReceiving`
looks every :data:`CHECK_EVERY_S` at what ``/api/health`` reads (its ``look``: :func:`server.api.health.receiving`,
wired by the composition root), and when the answer changes tells the pages' live streams at once
(``on_change``: :meth:`server.core.live.LiveHub.nudge`); each stream says it in its heartbeats
(:mod:`server.web.live`), and the page shows its banner while it lasts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from server.core.rounds import RoundLoop

logger = logging.getLogger(__name__)

#: ``ok``: receiving and storing; ``disconnected``: no broker connection; ``retrying``: storing fails;
#: ``stalled``: a message waits too long to be stored; ``behind``: the ingest has not stored what the broker held;
#: ``database``: the database does not answer.
Receiving = Literal["ok", "disconnected", "retrying", "stalled", "behind", "database"]
#: How often the state is looked at (a page hears of a change within about this long, plus a round trip).
CHECK_EVERY_S = 1.0


class CourtReceiving:
    """The court's receiving state (:attr:`state`), looked at by ``look`` every ``interval_s`` on a thread of its
    own once started; ``on_change`` is called with the new state when it changes. Without ``look`` (a process that
    does not watch), always ``ok``."""

    def __init__(
        self,
        look: Callable[[], Receiving] | None = None,
        *,
        on_change: Callable[[Receiving], None] | None = None,
        interval_s: float = CHECK_EVERY_S,
    ) -> None:
        self.state: Receiving = "ok"
        self._look = look
        self._on_change = on_change
        self._loop = RoundLoop("court-receiving", self.check, interval_s)

    def check(self) -> Receiving:
        """Look now; tell ``on_change`` if the state changed."""
        if self._look is None:
            return self.state
        state = self._look()
        if state != self.state:
            if state == "ok":
                logger.info("the court receives from its seals again: live pages say so")
            else:
                logger.warning("the court is not receiving from its seals (%s): live pages say so", state)
            self.state = state
            if self._on_change is not None:
                self._on_change(state)
        return state

    def start(self) -> None:
        if self._look is not None:
            self._loop.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._loop.stop(timeout)
