"""The missing ranges of a seal's chain: seqs not stored below its highest (:mod:`server.ingest.chain`)."""

from __future__ import annotations

from collections.abc import Iterable

Range = tuple[int, int]
#: ``(first, last, count)``: ``count`` of the seqs ``first..last`` are missing; which ones is not tracked.
Untracked = tuple[int, int, int]

#: Most missing ranges a chain keeps one by one; gaps past them are only counted (:data:`Untracked`).
MAX_TRACKED_GAPS = 100


def ranges_of(seqs: Iterable[int], *, upto: int) -> list[Range]:
    """The ranges of seqs in ``1..upto`` not in ``seqs``."""
    missing: list[Range] = []
    expected = 1
    for seq in sorted(seqs):
        if seq > expected:
            missing.append((expected, seq - 1))
        expected = max(expected, seq + 1)
    if upto >= expected:
        missing.append((expected, upto))
    return missing


def without(missing: list[Range], seq: int) -> list[Range]:
    """``missing`` with ``seq`` taken out (a range may split in two)."""
    result: list[Range] = []
    for first, last in missing:
        if not first <= seq <= last:
            result.append((first, last))
            continue
        if first < seq:
            result.append((first, seq - 1))
        if seq < last:
            result.append((seq + 1, last))
    return result


def count_missing(missing: Iterable[Range]) -> int:
    return sum(last - first + 1 for first, last in missing)
