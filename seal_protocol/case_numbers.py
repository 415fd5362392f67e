"""Case numbers (案号) of enforcement cases: their form, their canonical spelling, and when two name one case.

The Supreme People's Court's rules on case numbers (最高人民法院关于人民法院案件案号的若干规定) give every case number
four parts: ``(收案年度)`` the year, ``法院代字`` the court's code (a province's one-character name followed by no,
two or four digits — 苏, 苏02, 苏0214 — or 最高法), ``类型代字`` the kind of case, and ``案件编号`` its
number, ending in ``号``: ``(2021)苏0214执1234号``. Enforcement cases are 执 and its variants (执恢 resumed,
执保 preservation, 执异 objection, 执复 review, 执监 supervision, 执协 assistance, 执他 other).

Both ASCII and full-width parentheses (and 〔〕) are written in practice; the canonical form uses ASCII ones, so that
one case has one number. The wire carries a case number as the seal or the court wrote it. The seal compares a
command's number with its own by :func:`same_case_no` (their canonical forms); the court files a seal's event under
a stored number among the envelope's :func:`case_no_spellings` (canonical, full-width, as written), as it finds cases
by number — a narrower rule, so that no event of a case stored under an older spelling lands in another row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The kinds of enforcement case (类型代字) a seal can belong to.
ENFORCEMENT_KINDS = ("执恢", "执保", "执异", "执复", "执监", "执协", "执他", "执请", "执督", "执")
#: The one-character names courts' codes start with: the provinces (as the courts abbreviate them) and 兵 (the
#: Xinjiang Production and Construction Corps' courts); the Supreme People's Court is 最高法.
PROVINCES = "京津冀晋蒙辽吉黑沪苏浙皖闽赣鲁豫鄂湘粤桂琼渝川黔云藏陕甘青宁新兵"
EXAMPLE = "(2021)苏0214执1234号"
EXPECTED_FORM = (
    f"案号应为“(年份)法院代字+执/执恢/执保等+序号+号”，例如 {EXAMPLE} / "
    f"a case number is (year) court code, case kind (执, 执恢, 执保, …) and number, then 号, e.g. {EXAMPLE}"
)

_PATTERN = re.compile(
    r"[(（〔](?P<year>(?:19|20)[0-9]{2})[)）〕]"
    r"(?P<court>最高法|[" + PROVINCES + r"](?:[0-9]{2}){0,2})"
    r"(?P<kind>" + "|".join(ENFORCEMENT_KINDS) + r")"
    r"(?P<number>[1-9][0-9]{0,6})号"
)


@dataclass(frozen=True)
class CaseNumber:
    year: int
    court_code: str
    kind: str
    number: int

    @property
    def text(self) -> str:
        """The canonical form, e.g. ``(2021)苏0214执1234号``."""
        return f"({self.year}){self.court_code}{self.kind}{self.number}号"


def read_case_no(text: str) -> CaseNumber | None:
    """The enforcement case number ``text`` spells (surrounding white space aside), or None if it spells none."""
    match = _PATTERN.fullmatch(text.strip())
    if match is None:
        return None
    return CaseNumber(
        year=int(match["year"]), court_code=match["court"], kind=match["kind"], number=int(match["number"])
    )


def canonical_case_no(text: str) -> str:
    """The canonical form of a case number, or ``text`` unchanged (stripped) if it is not one (a legacy number)."""
    number = read_case_no(text)
    return text.strip() if number is None else number.text


def case_no_spellings(text: str) -> list[str]:
    """The ways a case may be stored under ``text``: its canonical form first, then the forms a case stored before
    numbers were checked may have (full-width parentheses, as typed)."""
    number = read_case_no(text)
    if number is None:
        return [text.strip()]
    full_width = number.text.replace("(", "（", 1).replace(")", "）", 1)
    return list(dict.fromkeys([number.text, full_width, text.strip()]))


def same_case_no(first: str, second: str) -> bool:
    """Do ``first`` and ``second`` name the same case, however each is spelt (parentheses, white space around)?"""
    return first == second or canonical_case_no(first) == canonical_case_no(second)
