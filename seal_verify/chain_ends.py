"""The check ``chain_ends``: does each seal still bound to the case speak up to the end of the export?

A seal signs a ``heartbeat`` every ``heartbeat_s`` (60 s by default; ``docs/protocol.md``), each an event of its
hash chain. Whoever holds the log key can leave a seal's **last** events out of a bundle, or all its events, and
re-sign it: no signature, chain or proof sees what is not there (``docs/evidence.md``, "Who can forge what"). The
bundle still shows it: a seal whose binding to the case is open (``seals/<id>.json`` ``bindings``) whose last event
came long before the end of the export (``exported_at``, or the range's ``to`` if earlier), or that has no event at
all, though the court would have recorded it offline (a live ``offline`` alarm in ``alarms.jsonl``) had it fallen
silent. Such a seal is a *warning*, not a failure: a genuine bundle can show one too (the court's server was down, a
seal never installed). Not warned: a seal unbound from the case (its binding closed), a case lifting, lifted or
closed, a seal the court records offline since its last event (stated as a note: that record is the server's, not
signed by any seal).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from seal_protocol import EventType
from seal_verify.bundle import Bundle, load_object, object_lines
from seal_verify.event_checks import EventLine, moment
from seal_verify.verdict import Check, cut

#: A seal silent for less than this before the end of the export is never warned of (60 heartbeats by default).
MIN_SILENCE = timedelta(hours=1)
#: ... nor one silent for less than this many of its own heartbeat intervals (the median between its heartbeats in
#: the bundle: a seal may be configured with ``heartbeat_s`` up to a day).
INTERVALS = 10
#: A case in one of these states has its seals being removed or removed: they need not speak up to the export.
ENDED = frozenset({"lifting", "lifted", "closed"})
#: A seal's heartbeat interval when the bundle holds fewer than two of its heartbeats (``heartbeat_s``'s default).
DEFAULT_INTERVAL = timedelta(seconds=60)


def check_chain_ends(
    check: Check,
    bundle: Bundle,
    events: Iterable[EventLine],
    seals: dict[str, dict[str, Any]],
    manifest: dict[str, Any],
    received: dict[int, datetime],
) -> None:
    """Warns of each seal bound to the case until the export whose chain ends long before it (see the module)."""
    exported_at = moment(manifest.get("exported_at"))
    given = manifest.get("range")
    bounds: dict[str, Any] = given if isinstance(given, dict) else {}
    start, to = moment(bounds.get("from")), moment(bounds.get("to"))
    if exported_at is None:
        check.absent("the manifest names no export time / 清单未载明导出时间")
        return
    end = exported_at if to is None or to > exported_at else to
    what = ("导出时间", "the export") if end == exported_at else ("导出范围的结束时间", "the end of the export's range")
    status = _case_status(bundle)
    ended = isinstance(status, str) and status in ENDED
    watched = 0 if ended else _check_seals(check, bundle, events, seals, received, (start, end, what))
    events_file = bundle.jsonl("events.jsonl")
    # read, and empty (unreadable fails elsewhere)
    if events_file is not None and events_file.size == 0 and not check.warnings:
        bound = sorted(cut(d) for d, record in seals.items() if _overlaps(_bindings(record), start, end))
        if bound:
            check.warn(
                f"证据包没有任何事件，但封条 {', '.join(bound)} 在导出范围内曾绑定于本案：事件可能被全部删除 / the "
                f"bundle holds no event at all, though seal(s) {', '.join(bound)} were bound to the case within the "
                "export's range: the events may all have been left out"
            )
    if check.warnings:
        return
    if ended:
        check.absent(f"the case is {cut(str(status))}: its seals need not speak up to the export / 案件已解封或结案")
    elif not watched:
        check.absent("no seal is bound to the case at the end of the export / 导出时无绑定中的封条")
    else:
        check.summary = f"{watched} seal(s) bound until {what[1]}, each heard from / {watched} 个封条均有近期事件"


def _check_seals(
    check: Check,
    bundle: Bundle,
    events: Iterable[EventLine],
    seals: dict[str, dict[str, Any]],
    received: dict[int, datetime],
    window: tuple[datetime | None, datetime, tuple[str, str]],
) -> int:
    """Warns of (or notes, when the court records it offline) each seal bound at the window's end and silent long
    before it; how many seals are bound then."""
    start, end, what = window
    heard, intervals = _last_heard(events, received), _intervals(events)
    offline = _offline_alarms(bundle)
    watched = 0
    for device_id, record in sorted(seals.items()):
        open_since = _open_since(_bindings(record), end)
        if open_since is None:
            continue  # unbound from the case (or bound only after the end): its chain may end anywhere
        watched += 1
        since = max(open_since, start) if start is not None else open_since
        last = heard.get(device_id)
        silence = end - (max(last[0], since) if last is not None else since)
        if silence <= max(MIN_SILENCE, INTERVALS * intervals.get(device_id, DEFAULT_INTERVAL)):
            continue
        hours, name = f"{silence.total_seconds() / 3600:.1f}", cut(device_id)
        alarm = _offline_since(offline.get(device_id, []), last[1] if last is not None else None)
        if alarm is not None:
            opened, number = cut(str(alarm.get("opened_at"))), cut(str(alarm.get("id")))
            check.note(
                f"封条 {name} 自 {opened} 起离线（法院记录，告警 #{number}），其最后事件早于{what[0]} {hours} 小时 / "
                f"seal {name} offline since {opened} by the court's record (alarm #{number}, not signed by the seal): "
                f"its last event is {hours} h before {what[1]}; nothing after it is evidenced"
            )
        elif last is None:
            check.warn(
                f"封条 {name} 在{what[0]}前已绑定于本案 {hours} 小时，证据包中却没有它的任何事件：事件可能被删除，或"
                f"封条从未上线 / seal {name} was bound to the case for {hours} h before {what[1]} and the bundle holds "
                "none of its events: they may have been left out, or the seal never came online"
            )
        else:
            check.warn(
                f"封条 {name} 的最后事件（seq {last[2]}）早于{what[0]} {hours} 小时，封条仍绑定于本案，证据包也未记录"
                f"它离线：证据可能被截断 / seal {name}'s last event (seq {last[2]}) is {hours} h before {what[1]}, "
                "though it is still bound to the case and the bundle does not record it offline: the chain may be "
                "truncated"
            )
    return watched


def _last_heard(
    events: Iterable[EventLine], received: dict[int, datetime]
) -> dict[str, tuple[datetime, datetime, int]]:
    """Per seal: the latest moment it was heard from (by its clock or the server's, whichever is later: a seal's
    clock that lags warns of nothing), the latest its events were received (the server's clock, as an offline alarm),
    and its highest seq."""
    found: dict[str, tuple[datetime, datetime, int]] = {}
    for line in events:
        env = line.envelope
        if env is None:
            continue
        got = received.get(line.number, env.occurred_at)
        at = max(env.occurred_at, got)
        if env.device_id in found:
            seen, arrived, seq = found[env.device_id]
            found[env.device_id] = (max(seen, at), max(arrived, got), max(seq, env.seq))
        else:
            found[env.device_id] = (at, got, env.seq)
    return found


def _intervals(events: Iterable[EventLine]) -> dict[str, timedelta]:
    """Per seal, the median time between its successive heartbeats in the bundle (by seq), if it has two or more.
    Leaving out a seal's last heartbeats does not change it much; changing their ``ts`` breaks their signatures."""
    beats: dict[str, list[tuple[int, datetime]]] = defaultdict(list)
    for line in events:
        env = line.envelope
        if env is not None and env.type == EventType.HEARTBEAT:
            beats[env.device_id].append((env.seq, env.occurred_at))
    found = {}
    for device_id, seal_beats in beats.items():
        seal_beats.sort()
        gaps = [(b - a).total_seconds() for (_, a), (_, b) in zip(seal_beats, seal_beats[1:], strict=False) if b > a]
        if gaps:
            found[device_id] = timedelta(seconds=statistics.median(gaps))
    return found


def _bindings(record: dict[str, Any]) -> list[tuple[datetime, datetime | None]]:
    """The seal's bindings to the case as (bound_at, unbound_at or None while open); lines of another form skipped
    (the bundle's record is the server's, its form unchecked elsewhere)."""
    bindings = record.get("bindings")
    found = []
    for binding in bindings if isinstance(bindings, list) else []:
        if not isinstance(binding, dict) or moment(binding.get("bound_at")) is None:
            continue
        unbound = binding.get("unbound_at")
        if unbound is not None and moment(unbound) is None:
            continue
        found.append((moment(binding["bound_at"]), moment(unbound)))
    return [(bound, unbound) for bound, unbound in found if bound is not None]


def _open_since(bindings: list[tuple[datetime, datetime | None]], end: datetime) -> datetime | None:
    """When the seal's binding that stands at ``end`` began (the latest such), or None if none does."""
    standing = [bound for bound, unbound in bindings if bound <= end and (unbound is None or unbound > end)]
    return max(standing, default=None)


def _overlaps(bindings: list[tuple[datetime, datetime | None]], start: datetime | None, end: datetime) -> bool:
    """Whether a binding overlaps the window from ``start`` to ``end`` (none does an empty window: a range that
    starts after the export)."""
    if start is not None and start >= end:
        return False
    return any(bound < end and (start is None or unbound is None or unbound > start) for bound, unbound in bindings)


def _case_status(bundle: Bundle) -> Any:
    try:
        return load_object(bundle.get("case.json") or b"{}", "case.json").get("status")
    except ValueError:
        return None  # event_case fails it


def _offline_alarms(bundle: Bundle) -> dict[str, list[dict[str, Any]]]:
    """The live ``offline`` alarms of ``alarms.jsonl`` (not closed), by seal."""
    try:
        alarms = object_lines(bundle.jsonl("alarms.jsonl"), "alarms.jsonl")
    except ValueError:
        return {}
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for alarm in alarms:
        if (
            alarm.get("kind") == "offline"
            and alarm.get("closed_at") is None
            and isinstance(alarm.get("device_id"), str)
        ):
            found[alarm["device_id"]].append(alarm)
    return found


def _offline_since(alarms: list[dict[str, Any]], last_received: datetime | None) -> dict[str, Any] | None:
    """A live offline alarm opened after the seal's last event was received (the seal's next event would have closed
    an earlier one), or None."""
    for alarm in alarms:
        opened = moment(alarm.get("opened_at"))
        if opened is not None and (last_received is None or opened >= last_received):
            return alarm
    return None
