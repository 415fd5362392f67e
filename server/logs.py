"""Logging set-up for the entry point: readable text, or one JSON object per line for log collectors."""

from __future__ import annotations

import argparse
import json
import logging
from datetime import UTC, datetime

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("text", "json")

#: Libraries whose INFO lines say nothing an operator needs (Alembic announces its context on every start; botocore
#: where it found credentials): they log from WARNING up, unless the level asked for is DEBUG.
QUIET_LOGGERS = ("alembic", "boto3", "botocore")


def add_log_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """``--log-level LEVEL`` (any case) and ``--log-format FORMAT``, spelled and explained as the agent does: on the
    program with their defaults, and on each command without (so that a value given before its name stands)."""
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LEVELS,
        metavar="LEVEL",
        default="INFO" if defaults else argparse.SUPPRESS,
        help="debug, info, warning or error (default info)",
    )
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        metavar="FORMAT",
        default="text" if defaults else argparse.SUPPRESS,
        help="text or json (one object a line); default text",
    )


class JsonLinesFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "INFO", *, log_format: str = "text") -> None:
    """Configure the root logger once, at the entry point: ``level`` (one of :data:`LEVELS`, any case) and
    ``log_format`` (``text``, or ``json`` for one object per line)."""
    level = level.upper()
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (one of {', '.join(LEVELS)})")
    if log_format not in FORMATS:
        raise ValueError(f"unknown log format {log_format!r} (one of {', '.join(FORMATS)})")
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonLinesFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
