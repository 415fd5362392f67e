"""``seal-server export``: write a case's evidence bundle (``docs/evidence.md``) for ``seal-verify``.

    seal-server export CASE_NO -o case.zip --config FILE [--from TIME] [--to TIME]

``--from``/``--to`` bound the events by their ``ts`` (inclusive), ISO 8601; a time without a zone is China time
(UTC+8). Progress goes to stderr on long exports; the one line on stdout says what was written. Exit status 1 also
when the bundle is written but fails its own ``seal-verify`` check (a warning says so, the report says why).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from server.audit.service import actor_name
from server.config import Settings
from server.core.court_clock import COURT_TIME
from server.core.db import make_engine, make_session_factory
from server.evidence.checkpoints import LogKey
from server.export.gather import TimeRange
from server.export.service import ExportConfig, export_case


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=COURT_TIME)


def add_export_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    export = commands.add_parser(
        "export", parents=[common], help="write a case's evidence bundle (a zip that seal-verify checks offline)"
    )
    export.add_argument("case_no", metavar="CASE_NO")
    export.add_argument("-o", "--output", required=True, type=Path, metavar="FILE", help="the zip to write")
    export.add_argument("--from", dest="start", type=_moment, metavar="TIME", help="events from this ts on")
    export.add_argument("--to", dest="end", type=_moment, metavar="TIME", help="events up to this ts")


class _StderrProgress:
    """Each phase on a line of its own; the files copied of a part on one line, rewritten, when 100 or more."""

    def phase(self, what: str) -> None:
        sys.stderr.write(f"export: {what}\n")
        sys.stderr.flush()

    def files(self, what: str, done: int, total: int) -> None:
        if total >= 100:
            sys.stderr.write(f"\rexport: {what} {done}/{total}" + ("\n" if done == total else ""))
            sys.stderr.flush()


def run_export(args: argparse.Namespace, settings: Settings, out: Callable[[str], None]) -> int:
    """Export in a session of its own: the export commits twice (a fresh checkpoint, then its record)."""
    if args.start and args.end and args.start > args.end:
        raise ValueError("--from is after --to")
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            return _export(args, settings, session, out)
    finally:
        engine.dispose()


def _export(args: argparse.Namespace, settings: Settings, session: Session, out: Callable[[str], None]) -> int:
    result = export_case(
        session,
        case_no=args.case_no,
        target=args.output,
        log_key=LogKey(settings.evidence.log_key_file, settings.evidence.log_origin),
        config=ExportConfig.from_settings(settings),
        actor=None,
        exported_by=actor_name(None),
        time_range=TimeRange(args.start, args.end),
        progress=_StderrProgress(),
    )
    out(
        f"{result.path}: case {result.case_no}, {result.events} events, {result.snapshots} snapshots, "
        f"checkpoint {result.checkpoint_size}; check it with: seal-verify {result.path} --log-key KEY (the log key "
        "`seal-server log-key` prints, as the court publishes it)"
    )
    if not result.verified:  # the bundle stays written (its report says why); a script or a batch must still tell
        out("警告：证据包自身核验未通过，详见 report.pdf / WARNING: the bundle does not verify; see report.pdf")
        return 1
    return 0
