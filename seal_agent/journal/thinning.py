"""Which snapshots a thinning takes, and how its ``outbox_full`` events name them
(:mod:`seal_agent.journal.snapshot_spool` has the rules)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

#: At most this many thinned hashes are listed in one ``outbox_full`` event (the envelope limit is 64 KiB); a thinning
#: of more is reported in several.
MAX_LISTED = 200


def choose(
    entries: Sequence[tuple[str, int]], total: int, passes: Sequence[Collection[str]], target: int, limit: int
) -> tuple[list[list[str]], int]:
    """Which snapshots to thin, oldest first, in passes sparing fewer and fewer: each pass takes what it does not spare
    until ``total`` is down to ``target``; a pass after the first runs only while ``total`` is over ``limit``. The
    snapshots each pass took, and the bytes left."""
    taken: set[str] = set()
    chosen: list[list[str]] = []
    for number, spared in enumerate(passes):
        this: list[str] = []
        if number == 0 or total > limit:
            for sha, size in entries:
                if total <= target:
                    break
                if sha not in spared and sha not in taken:
                    this.append(sha)
                    taken.add(sha)
                    total -= size
        chosen.append(this)
    return chosen, total


def reports(quota: int, stored: int, gone: list[str], lost: set[str], cause: str) -> list[dict[str, Any]]:
    """One thinning as ``outbox_full`` payloads naming every snapshot that went, at most :data:`MAX_LISTED` each;
    each one's counts are of the snapshots it names, so they add up over the parts."""
    parts = [gone[start : start + MAX_LISTED] for start in range(0, len(gone), MAX_LISTED)]
    payloads = []
    for number, part in enumerate(parts, 1):
        unsent = [sha for sha in part if sha in lost]
        payloads.append(
            {
                "quota_bytes": quota,
                "stored_bytes": stored,
                "thinned": len(part),
                "thinned_unsent": len(unsent),
                "snapshots": part,
                "unsent_lost": unsent,
                "part": number,
                "parts": len(parts),
                "cause": cause,
            }
        )
    return payloads
