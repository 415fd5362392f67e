"""Case numbers (案号) on the court's side: the wire contract's definition (:mod:`seal_protocol.case_numbers`:
the form, the canonical spelling, :func:`same_case_no`), and a number that is not an enforcement case number
refused as :class:`InvalidCaseNumber` (422 on the API, showing the expected form).

The definition lives in the protocol because a seal compares case numbers too (a court command names the case it
was issued for, and the seal refuses one for another case): one definition of the form and the canonical spelling
for both. (The court files events by the narrower :func:`case_no_spellings`, as it finds cases by number.)
"""

from __future__ import annotations

from seal_protocol.case_numbers import (
    ENFORCEMENT_KINDS,
    EXAMPLE,
    EXPECTED_FORM,
    PROVINCES,
    CaseNumber,
    canonical_case_no,
    case_no_spellings,
    read_case_no,
    same_case_no,
)
from server.errors import Invalid

__all__ = [
    "ENFORCEMENT_KINDS",
    "EXAMPLE",
    "EXPECTED_FORM",
    "PROVINCES",
    "CaseNumber",
    "InvalidCaseNumber",
    "canonical_case_no",
    "case_no_spellings",
    "parse_case_no",
    "same_case_no",
]


class InvalidCaseNumber(Invalid):
    """A text that is not an enforcement case number; the message shows the expected form."""


def parse_case_no(text: str) -> CaseNumber:
    """Read a case number; raise :class:`InvalidCaseNumber` (showing the expected form) if ``text`` is not one."""
    number = read_case_no(text)
    if number is None:
        shown = text if len(text) <= 80 else text[:80] + "…"
        form_zh, _, form_en = EXPECTED_FORM.partition(" / ")
        raise InvalidCaseNumber(
            f"“{shown}”不是执行案号。{form_zh} / {shown!r} is not an enforcement case number. {form_en}"
        )
    return number
