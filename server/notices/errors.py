"""Errors of the notices: what keeps a notice from being issued, printed or checked."""

from __future__ import annotations

from server.errors import Conflict, ServerError


class NoticesUnavailable(ServerError, RuntimeError):
    """No notice can be issued or checked now: the notice key, the public address or the CJK font is not configured
    or cannot be read (503: the court's set-up, not the request, is at fault)."""


class UnprintableFact(Conflict):
    """A fact the notice prints has a character the notice's font cannot draw, or a text direction control (409): the
    paper would say something else than the signed facts its QR code leads to, so no notice is printed."""

    def __init__(self, field: str, label_zh: str, label_en: str, char: str) -> None:
        self.field = field
        self.char = char
        code = f"U+{ord(char):04X}"
        super().__init__(
            f"公告无法打印：“{label_zh}”（{field}）含有公告字体无法印出的字符 {code}，印出的公告将与签名的事实不符；"
            f"请更正案件的该项记录，或以 [notices] font_file 配置含有该字符的字体。"
            f" The notice cannot be printed: {label_en} ({field}) has the character {code}, which the notice's font "
            f"cannot draw, so the paper would differ from the signed facts; correct that record of the case, or set "
            f"[notices] font_file to a font that has the character."
        )
