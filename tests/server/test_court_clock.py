"""One way of writing a moment on the court's clock, and nothing as a dash: on the pages, in the evidence report and
on the notice page alike."""

from __future__ import annotations

from datetime import UTC, datetime

from server.core.court_clock import NO_TIME, court_clock
from server.notices.page import _environment
from server.web.i18n import Translator

MOMENT = datetime(2026, 12, 4, 6, 35, 7, tzinfo=UTC)


def test_a_moment_and_nothing_on_the_court_s_clock() -> None:
    assert court_clock(MOMENT) == "2026-12-04 14:35:07"
    assert court_clock(MOMENT.replace(tzinfo=None), seconds=False) == "2026-12-04 14:35"  # naive: UTC
    assert court_clock(None) == NO_TIME == "—"
    when = Translator("zh-CN").when
    assert (when(MOMENT), when(None)) == ("2026-12-04 14:35:07", "—")
    notice_time = _environment().filters["court_time"]
    assert (notice_time(MOMENT), notice_time(None)) == ("2026-12-04 14:35 (UTC+8)", "—")
