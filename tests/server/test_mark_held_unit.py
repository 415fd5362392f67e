""":class:`server.ingest.held.HeldBack`: a marker passes only once every message held back when its batch settled has
an outcome, in order, and none is lost."""

from __future__ import annotations

from datetime import UTC, datetime

from server.ingest.held import HeldBack, Received
from server.ingest.results import Message


def _item(name: str) -> Received:
    return Received(1, 0, 1, Message(name, b"", datetime(2026, 1, 1, tzinfo=UTC)))


def test_markers_wait_for_the_messages_held_before_them_and_pass_in_order() -> None:
    held: HeldBack[Received] = HeldBack()
    a, b, c, d = (_item(name) for name in "abcd")
    first, second = _item("mark-1"), _item("mark-2")
    assert held.after([_item("mark-0")]) != []  # nothing held: a marker passes at once

    assert held.settled([c], [a, b]) == []
    assert held.after([first]) == []  # a and b were received before it and are held
    assert held.settled([a], [d]) == []  # b still held; d came after the first marker's batch
    assert held.after([second]) == []
    assert held.settled([b], [d]) == [first]  # held again, d holds back only the second
    assert held.settled([d], []) == [second]
    assert held.after([_item("mark-3")]) != []


def test_two_alike_messages_are_two() -> None:
    held: HeldBack[Received] = HeldBack()
    one, two = _item("a"), _item("a")
    held.settled([], [one, two])
    mark = _item("mark")
    assert held.after([mark]) == []
    assert held.settled([one], []) == []
    assert held.settled([two], []) == [mark]
