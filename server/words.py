"""The court's words, Chinese first: the one catalogue (``server/web/messages.toml``) the pages read through
:mod:`server.web.i18n` and the evidence report (:mod:`server.export.report`) reads here, so that a token of the
protocol or of the court's records — a command's action, state and refusal reason, an alarm's kind, a removal
request's state — reads the same on the case page and in the PDF, and its words are written once.

It sits apart from both readers: the pages reach the export (they serve its bundle), so the export may not import
the pages' modules (tests/test_layout.py). The file stays with the pages, which use most of it.

Each key of the catalogue is ``<section>.<name>`` and holds ``zh`` and ``en``.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources


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
