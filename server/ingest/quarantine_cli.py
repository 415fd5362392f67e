"""``seal-server quarantine …``: the messages the ingest refused.

    seal-server quarantine list --config FILE [--reason R] [--device DEVICE_ID] [--since TIME] [--before ID]
                                [--limit N]
    seal-server quarantine show ID --config FILE

``list`` prints one line per message, newest first: id, received at (the first copy), seal account, reason, size,
copies, topic, detail and a hex preview of the first bytes; then (on the first page) the messages counted without a
row of their own, past their account's ``[ingest] quarantine_seal_rows`` per window (:mod:`.refusal_count`): per
account, reason and window, "N more refused, bytes not kept". ``show`` prints one message and a hex dump of every
byte kept. Whatever a hostile client sent, the output holds no control characters: text fields are escaped
(:func:`terminal_safe`), bytes are shown as hex and printable ASCII only.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from server.ingest.models import QuarantineCount, QuarantinedMessage
from server.ingest.quarantine import (
    QuarantineFilter,
    ascii_preview,
    get_quarantined,
    hex_preview,
    list_counts,
    list_quarantine,
)

Out = Callable[[str], None]

LIST_PREVIEW_BYTES = 16
DUMP_WIDTH = 16


def terminal_safe(text: str) -> str:
    """``text`` with every character a terminal might act on (control, format — bidi overrides —, separators other
    than the space, unassigned) and the backslash written as a Python escape, so it prints as what it is."""
    return "".join(
        ch if ch.isprintable() and ch != "\\" else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def _aware_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give the time zone, e.g. {text}+08:00 or {text}Z")
    return moment


def _bounded(maximum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not 1 <= value <= maximum:
            raise argparse.ArgumentTypeError(f"{value} is not between 1 and {maximum}")
        return value

    return parse


_positive = _bounded(2**63 - 1)


def add_quarantine_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    quarantine = commands.add_parser("quarantine", help="messages the ingest refused").add_subparsers(
        dest="action", required=True
    )
    listing = quarantine.add_parser("list", parents=[common], help="list refused messages, newest first")
    listing.add_argument("--reason", default=None, help="only this reason, e.g. bad_signature")
    listing.add_argument("--device", dest="device_id", default=None, metavar="DEVICE_ID", help="only this seal's")
    listing.add_argument("--since", type=_aware_time, default=None, metavar="TIME", help="ISO 8601, with time zone")
    listing.add_argument("--before", type=_positive, default=None, metavar="ID", help="only ids below this (paging)")
    listing.add_argument("--limit", type=_bounded(1000), default=50, metavar="N", help="at most N messages (50)")
    show = quarantine.add_parser("show", parents=[common], help="one refused message with a hex dump of its bytes")
    show.add_argument("message_id", metavar="ID", type=_positive)


def run_quarantine_command(args: argparse.Namespace, session: Session, out: Out) -> int:
    match args.action:
        case "list":
            where = QuarantineFilter(
                reason=args.reason, device_id=args.device_id, since=args.since, before=args.before, limit=args.limit
            )
            rows, next_before = list_quarantine(session, where=where)
            for row in rows:
                out("\t".join(_summary(row)))
            counts = list_counts(session, where=where) if args.before is None else []
            if not rows and not counts:
                out("（隔离区中没有符合条件的消息 / no quarantined message matches）")
            if next_before is not None:
                out(f"(more: --before {next_before})")
            for count in counts:
                out(_counted(count))
        case "show":
            row = get_quarantined(session, message_id=args.message_id)
            names = ("id", "received", "device", "reason", "size", "copies", "topic", "detail", "start")
            for name, value in zip(names, _summary(row), strict=True):
                out(f"{name}: {value}")
            if row.last_received_at is not None:
                out(f"last copy: {row.last_received_at.isoformat(timespec='seconds')}")
            out(f"sha256: {row.sha256 or '-'}")
            out(f"kept: {len(row.raw)} bytes")
            for offset in range(0, len(row.raw), DUMP_WIDTH):
                chunk = row.raw[offset : offset + DUMP_WIDTH]
                out(f"{offset:08x}  {hex_preview(chunk, DUMP_WIDTH):<{DUMP_WIDTH * 3 - 1}}  {ascii_preview(chunk)}")
        case _:
            raise AssertionError(f"unhandled quarantine action {args.action!r}")
    return 0


def _counted(count: QuarantineCount) -> str:
    window = count.window_start.isoformat(timespec="seconds")
    last = count.last_received_at.isoformat(timespec="seconds")
    device = terminal_safe(count.device_id) if count.device_id else "-"
    return (
        f"{device}\t{terminal_safe(count.reason)}\t另有 {count.count} 条被拒消息仅计数，未保存内容"
        f"（时段起于 {window}，共 {count.bytes} 字节，最近一条 {last}） / {count.count} more refused, bytes not kept "
        f"(window from {window}, {count.bytes} B, the last at {last})"
    )


def _summary(row: QuarantinedMessage) -> list[str]:
    return [
        str(row.id),
        row.received_at.isoformat(timespec="seconds"),
        terminal_safe(row.device_id) if row.device_id is not None else "-",
        terminal_safe(row.reason),
        f"{row.size} B",
        f"{row.copies}x",
        terminal_safe(row.topic),
        terminal_safe(row.detail),
        hex_preview(row.raw, LIST_PREVIEW_BYTES) + (" …" if len(row.raw) > LIST_PREVIEW_BYTES else ""),
    ]
