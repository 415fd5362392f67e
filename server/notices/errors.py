"""Errors of the notices: what keeps a notice from being issued, printed or checked."""

from __future__ import annotations

from server.errors import Conflict, Said, ServerError
from server.words import words


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


class FactsMissing(Conflict):
    """The case lacks facts every notice must print (:data:`~server.notices.facts.REQUIRED_FACTS`: the ruling, the
    court's telephone, the property, its address, the seizure's last day) (409): no notice is issued or printed, in
    words of the catalogue (``notice.facts_missing``) naming each missing fact."""

    def __init__(self, case_no: str, missing: tuple[str, ...]) -> None:
        self.case_no = case_no
        self.missing = missing
        named = [words("notice_fact", name) for name in missing]
        zh = words("notice", "facts_missing")[0].format(case=case_no, facts="、".join(z for z, _ in named))
        en = words("notice", "facts_missing")[1].format(case=case_no, facts=", ".join(e for _, e in named))
        super().__init__(f"{zh} / {en}")
        self.saying("notice.facts_missing", case=case_no, facts=[Said(f"notice_fact.{name}") for name in missing])
