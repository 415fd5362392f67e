"""The pages' words, Chinese first: one catalogue (``messages.toml``, read by :mod:`server.words`, which the evidence
report reads too), a :class:`Translator` per language.

Each key of the catalogue is ``<section>.<name>`` and holds ``zh`` and ``en``; ``{name}`` placeholders are filled
with :meth:`str.format`. zh-CN is the default; the language is the ``seal_lang`` cookie (``zh-CN`` or ``en``), set by
the language switch (``POST /lang``). A key missing from the catalogue renders as ``⟦key⟧`` — visible, and caught by
the tests that look for raw keys on every page. The API, which has no language of its reader, refuses in both at once,
Chinese first (:func:`in_both_languages`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from server.core.court_clock import court_clock
from server.errors import Said, ServerError
from server.words import CHINESE, catalogue, said_in_chinese

LANG_COOKIE = "seal_lang"
LANGUAGES = ("zh-CN", "en")
DEFAULT_LANGUAGE = "zh-CN"
_COLUMN = {"zh-CN": "zh", "en": "en"}

#: A Chinese character.

__all__ = [
    "CHINESE",
    "DEFAULT_LANGUAGE",
    "LANGUAGES",
    "LANG_COOKIE",
    "Translator",
    "catalogue",
    "in_both_languages",
    "language_of",
    "said_in_chinese",
]


def language_of(cookie: str | None) -> str:
    """The page language for a ``seal_lang`` cookie value: ``zh-CN`` unless it names another we have."""
    return cookie if cookie in LANGUAGES else DEFAULT_LANGUAGE


class Translator:
    """The catalogue in one language: ``t("overview.title")``, ``t("alarm.count", n=3)``."""

    def __init__(self, language: str) -> None:
        self.language = language_of(language)
        self._column = _COLUMN[self.language]

    def __call__(self, key: str, **values: Any) -> str:
        texts = catalogue().get(key)
        if texts is None or self._column not in texts:
            return f"⟦{key}⟧"
        text = texts[self._column]
        return text.format(**values) if values else text

    def maybe(self, key: str, fallback: str) -> str:
        """The message of ``key`` if the catalogue has it, else ``fallback`` (a value with no words of its own,
        such as an event type a newer seal sends)."""
        texts = catalogue().get(key)
        return texts[self._column] if texts is not None and self._column in texts else fallback

    def say(self, said: Said) -> str:
        """``said`` in this language: its values said first (:class:`~server.errors.Said`)."""
        return self(said.key, **{name: self._value(value) for name, value in said.values.items()})

    def refusal(self, exc: Exception) -> str:
        """Why ``exc`` refused, in words a member of the public reads: its own (:attr:`ServerError.said`), or, for an
        error that has none (a plain ``ValueError`` too), its message as it is."""
        said = exc.said if isinstance(exc, ServerError) else None
        return self.say(said) if said is not None else str(exc)

    def _value(self, value: object) -> object:
        if isinstance(value, Said):
            return self.say(value)
        if isinstance(value, datetime):
            return self.when(value)
        if isinstance(value, list | tuple):
            return ("；" if self.language == "zh-CN" else "; ").join(str(self._value(v)) for v in value)
        return value

    def when(self, moment: datetime | str | None) -> str:
        """A moment as the court reads it: China Standard Time, to the second; ``—`` for none (:func:`court_clock`).
        Also a seal's signed ``ts`` as an alarm's details keep it (ISO 8601 text); text that is none, as it is."""
        if not isinstance(moment, str):
            return court_clock(moment)
        try:
            return court_clock(datetime.fromisoformat(moment))
        except ValueError:
            return moment

    def span(self, seconds: object) -> str:
        """A length of time, in words, to its largest whole unit: "36 小时" / "36 h"; ``—`` for no number."""
        if not isinstance(seconds, int | float) or isinstance(seconds, bool):
            return "—"
        n = max(0, int(seconds))
        for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
            if n >= 2 * size:
                return self(f"time.{unit}", n=n // size)
        return self("time.seconds", n=n)

    def ago(self, moment: datetime | None, now: datetime) -> str:
        """How long ago, in words: "12 秒前" / "12 s ago"."""
        if moment is None:
            return self("time.never")
        seconds = max(0, int((now - moment).total_seconds()))
        if seconds < 120:
            return self("time.seconds_ago", n=seconds)
        if seconds < 2 * 3600:
            return self("time.minutes_ago", n=seconds // 60)
        if seconds < 2 * 86400:
            return self("time.hours_ago", n=seconds // 3600)
        return self("time.days_ago", n=seconds // 86400)


def in_both_languages(exc: Exception, chinese: str) -> str:
    """A refusal of the API in both languages, Chinese first, as the API's own are written (``中文。 / English``):
    the error's message as it is if it says itself in Chinese already (:func:`said_in_chinese`); else the message
    after its words in Chinese (:attr:`ServerError.said`), or after ``chinese`` (what refusals of its kind say) for
    an error that has none — most errors of the court's services, whose messages are the command line's English."""
    text = str(exc)
    if said_in_chinese(text):
        return text
    said = exc.said if isinstance(exc, ServerError) else None
    return f"{Translator('zh-CN').say(said) if said is not None else chinese} / {text}"
