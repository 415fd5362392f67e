"""The court's clock: China Standard Time (UTC+8, no daylight saving), and a moment written as the court reads it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

#: The court's time zone: the days on a notice, the times on the pages and in the evidence report.
COURT_TIME = timezone(timedelta(hours=8), "CST")


#: What a time not (yet) known is written as: on the pages, in the evidence report, on the notice page.
NO_TIME = "—"


def court_clock(moment: datetime | None, *, seconds: bool = True, zone: str = "") -> str:
    """``moment`` on the court's clock, ``2026-12-04 14:35:07`` (``2026-12-04 14:35`` without ``seconds``), then
    ``zone``; :data:`NO_TIME` for none. A naive moment is taken as UTC, as the database keeps every time.

    A seal signs the time of its own clock, any moment of the years 0001–9999 (``docs/protocol.md``), and the court
    stores it as signed: a moment whose court time would be past the year 9999 — which no ``datetime`` holds — is
    written in UTC, as stored, and said so (``9999-12-31 23:59:59 UTC``), never an error on the page that shows it."""
    if moment is None:
        return NO_TIME
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        local = moment.astimezone(COURT_TIME)
    except OverflowError:
        local, zone = moment, " UTC"
    # Not strftime: glibc's %Y does not pad a year below 1000 to four digits.
    text = f"{local.year:04d}-{local.month:02d}-{local.day:02d} {local.hour:02d}:{local.minute:02d}"
    return (f"{text}:{local.second:02d}" if seconds else text) + zone
