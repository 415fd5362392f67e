"""The court's words, Chinese first: the one catalogue (``server/web/messages.toml``) the pages read through
:mod:`server.web.i18n` and the evidence report (:mod:`server.export.report`) reads here, so that a token of the
protocol or of the court's records — a command's action, state and refusal reason, an alarm's kind, a removal
request's state — reads the same on the case page and in the PDF, and its words are written once.

It sits apart from both readers: the pages reach the export (they serve its bundle), so the export may not import
the pages' modules (tests/test_layout.py). The file stays with the pages, which use most of it.

Each key of the catalogue is ``<section>.<name>`` and holds ``zh`` and ``en``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from server.core.court_clock import court_clock
from server.errors import Said

#: A Chinese character (CJK Unified Ideographs).
CHINESE = re.compile(r"[\u4e00-\u9fff]")


def said_in_chinese(text: str) -> bool:
    """Whether a refusal says itself in Chinese first, as the court's are written: ``中文。 / English``, or Chinese
    from its first word. (Chinese only in a value it names, a case number or a court's name, does not count.)"""
    head, separator, _ = text.partition(" / ")
    return CHINESE.match(text) is not None or (bool(separator) and CHINESE.search(head) is not None)


@cache
def catalogue() -> dict[str, dict[str, str]]:
    """Every message by its dotted key: ``{"overview.title": {"zh": …, "en": …}}``."""
    text = resources.files("server").joinpath("web").joinpath("messages.toml").read_text("utf-8")
    flat: dict[str, dict[str, str]] = {}
    for section, entries in tomllib.loads(text).items():
        for name, texts in entries.items():
            flat[f"{section}.{name}"] = texts
    return flat


def words(section: str, token: str) -> tuple[str, str]:
    """The Chinese and the English words of ``token`` in ``section`` (``words("case_command_reason",
    "wrong_case")``); the token itself in both if the catalogue has none (a value a newer seal sends), as the pages'
    ``t.maybe`` shows it."""
    texts = catalogue().get(f"{section}.{token}")
    if texts is None or "zh" not in texts or "en" not in texts:
        return token, token
    return texts["zh"], texts["en"]


def said_words(said: Said) -> tuple[str, str]:
    """``said`` in Chinese and in English (its values said first, as a page's ``t.say`` says them in one language:
    :class:`~server.errors.Said`)."""
    return _say(said, "zh"), _say(said, "en")


def _say(said: Said, column: str) -> str:
    texts = catalogue().get(said.key)
    text = texts[column] if texts is not None and column in texts else said.key
    values = {name: _value(value, column) for name, value in said.values.items()}
    return text.format(**values) if values else text


def _value(value: object, column: str) -> object:
    if isinstance(value, Said):
        return _say(value, column)
    if isinstance(value, datetime):
        return court_clock(value)
    if isinstance(value, list | tuple):
        return ("；" if column == "zh" else "; ").join(str(_value(v, column)) for v in value)
    return value


def said_json(said: Said) -> dict[str, Any]:
    """``said`` as JSON, to be stored (:func:`said_of` reads it back): its values numbers, text, lists, and
    :class:`~server.errors.Said` as ``{"said": …}``."""
    return {"key": said.key, "values": {name: _json(value) for name, value in said.values.items()}}


def said_of(data: Mapping[str, Any]) -> Said:
    """The :class:`~server.errors.Said` :func:`said_json` stored."""
    return Said(str(data["key"]), {name: _unjson(value) for name, value in dict(data.get("values") or {}).items()})


def _json(value: object) -> object:
    if isinstance(value, Said):
        return {"said": said_json(value)}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


def _unjson(value: object) -> object:
    if isinstance(value, Mapping) and "said" in value:
        return said_of(value["said"])
    if isinstance(value, list):
        return [_unjson(v) for v in value]
    return value
