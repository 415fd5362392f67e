"""What a ``seal-server`` command commits that an open page shows, told to the pages over the court's live feed.

A web route or an API call publishes a :class:`~server.core.live.Change` after its commit (``context.live.publish``),
and the court's live feed (:mod:`server.core.live_feed`) carries it to the pages every other court process serves. A
command of the command line (``seal add``, ``user assign``, ``case add``, …) is a process of its own that serves no
page: without this module its commits reached no open page until it was reloaded. So while a command runs
(:func:`telling_pages`), what each of its sessions writes of the things a page shows becomes the change a route
publishes for it (:func:`change_of`: a seal, a seal's binding — bound, unbound, moved —, a case, a user's assignment
to a case, an alarm, a command to a seal, a removal request), kept when its transaction commits and forgotten when
it is rolled back. When the command ends — done, or refused after a commit — they are sent as one message on the
feed (:class:`~server.core.live_feed.LiveFeed`, sending only) and the command waits, at most :data:`WAIT_S`, until
the broker has acknowledged it: the process must not exit with the message still in its memory. Each open page's
stream then reads what changed with its own user's access checks, as for a route's change (a change names a seal or
a case only, never what it holds).

With no broker reachable (or one that refuses the court's account or the feed's topic), the command's work is done
and stays done: it says on stderr that the open pages were not told (they show it when reloaded) and exits with its
own status. With ``[live] feed = false`` nothing is sent (no court process listens).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import chain
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from server.alarms.models import Alarm
from server.auth.models import CaseAssignment
from server.commands.models import CourtCommand
from server.config import Settings
from server.config_mqtt import plaintext_warning
from server.core.live import Change
from server.core.live_feed import LiveFeed
from server.core.metrics import IngestMetrics
from server.errors import ServerError
from server.removal.models import RemovalRequest
from server.seals.models import Case, Seal, SealBinding

logger = logging.getLogger("server.cli")

#: How long a command waits for the broker to take its message before it exits (and says the pages were not told).
WAIT_S = 5.0
NOT_TOLD = (
    "已打开的页面未获知此更改（实时推送未送达代理 %s:%d），刷新后可见；数据库中的更改已完成。 / "
    "open pages were not told of this change (the live feed could not reach the broker at %s:%d); they show it when "
    "reloaded. The change itself is stored."
)

#: What a page shows of each kind of row, as the change a route publishes when it commits one.
_CHANGES: dict[type, Callable[[Any], Change]] = {
    Seal: lambda seal: Change("seal", seal.device_id),
    SealBinding: lambda binding: Change("binding", binding.device_id, binding.case_no),
    Case: lambda case: Change("case", case_no=case.case_no),
    CaseAssignment: lambda assignment: Change("assignment", case_no=assignment.case_no),
    Alarm: lambda alarm: Change("alarm", alarm.device_id, alarm.case_no),
    CourtCommand: lambda command: Change("command", command.device_id, command.case_no),
    RemovalRequest: lambda request: Change("removal", case_no=request.case_no),
}


def change_of(row: object) -> Change | None:
    """The change an open page is told of when ``row`` is written (``None``: no page shows it)."""
    make = _CHANGES.get(type(row))
    return None if make is None else make(row)


class Committed:
    """The changes of what this thread's sessions commit, while :meth:`watch` listens."""

    def __init__(self) -> None:
        self.changes: dict[Change, None] = {}  # ordered, without repeats
        self._flushed: dict[Session, dict[Change, None]] = {}  # written, not committed yet
        self._thread = threading.get_ident()  # another thread's sessions (an app in a test's process) are not ours

    @contextmanager
    def watch(self) -> Iterator[Committed]:
        listeners = (
            ("after_flush", self._after_flush),
            ("after_commit", self._after_commit),
            ("after_soft_rollback", self._after_soft_rollback),
        )
        for name, listener in listeners:
            event.listen(Session, name, listener)
        try:
            yield self
        finally:
            for name, listener in listeners:
                event.remove(Session, name, listener)

    def _after_flush(self, session: Session, _context: object) -> None:
        if threading.get_ident() != self._thread:
            return
        written = self._flushed.setdefault(session, {})
        for row in chain(session.new, session.dirty, session.deleted):
            change = change_of(row)
            if change is not None and (row not in session.dirty or session.is_modified(row)):
                written[change] = None

    def _after_commit(self, session: Session) -> None:
        self.changes.update(self._flushed.pop(session, {}))

    def _after_soft_rollback(self, session: Session, previous: SessionTransaction) -> None:
        if previous.parent is None:  # the whole transaction (a savepoint's rollback keeps them: told for nothing)
            self._flushed.pop(session, None)


@contextmanager
def telling_pages(settings: Settings) -> Iterator[Committed]:
    """Run a command: what it commits that a page shows is told to the open pages when it ends (even by an error)."""
    committed = Committed()
    try:
        with committed.watch():
            yield committed
    finally:
        if committed.changes:
            try:
                tell_pages(settings, list(committed.changes))
            except Exception:  # the command's work is done: the feed never turns it into a failure
                logger.exception("live feed: the open pages could not be told")


def tell_pages(settings: Settings, changes: list[Change], *, wait_s: float = WAIT_S) -> bool:
    """Send ``changes`` (committed) on the court's live feed and wait until the broker took them: ``True``; else say
    on stderr that the open pages were not told, ``False``."""
    if not settings.live.feed:
        logger.info("[live] feed = false: open pages were not told of this change (they show it when reloaded)")
        return False
    mqtt = settings.mqtt
    if (warning := plaintext_warning(mqtt)) is not None:  # the court's password, as for run and ingest
        logger.warning("%s", warning)
    feed = LiveFeed(mqtt, metrics=IngestMetrics(seal_gauges=False), role="cli")
    try:
        feed.start()
    except ServerError as exc:  # an unreadable password or CA file: ConfigError, BrokerUnavailable
        logger.warning("%s", exc)
        logger.warning(NOT_TOLD, mqtt.host, mqtt.port, mqtt.host, mqtt.port)
        return False
    try:
        feed.send(changes)
        told = feed.flush(wait_s)
    finally:
        feed.stop()
    if told:
        logger.debug("live feed: %d changes told to the open pages", len(changes))
    else:
        logger.warning(NOT_TOLD, mqtt.host, mqtt.port, mqtt.host, mqtt.port)
    return told
