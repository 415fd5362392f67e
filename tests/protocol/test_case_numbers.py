"""One definition of "the same case", for the seal (a command's case) and the court (an event's case)."""

from __future__ import annotations

import pytest

from seal_protocol.case_numbers import canonical_case_no, case_no_spellings, read_case_no, same_case_no

CASE = "(2021)苏0214执1234号"


@pytest.mark.parametrize(
    "spelling", [CASE, "（2021）苏0214执1234号", "〔2021〕苏0214执1234号", "(2021）苏0214执1234号", f"  {CASE}\t"]
)
def test_spellings_of_one_number_are_one_case(spelling: str) -> None:
    assert canonical_case_no(spelling) == CASE
    assert same_case_no(spelling, CASE) and same_case_no(CASE, spelling)


@pytest.mark.parametrize(
    "other",
    [
        "(2021)苏0214执12345号",
        "(2022)苏0214执1234号",
        "(2021)苏0214执恢1234号",
        "(2021)苏02执1234号",
        "(2021)苏0214执1234",  # not a case number: compared as written, and it is not this one
        "",
    ],
)
def test_other_numbers_are_other_cases(other: str) -> None:
    assert not same_case_no(other, CASE) and not same_case_no(CASE, other)


def test_a_legacy_number_is_compared_as_written() -> None:
    assert read_case_no("旧案 2019-17") is None
    assert same_case_no("旧案 2019-17", " 旧案 2019-17 ") and not same_case_no("旧案 2019-17", "旧案 2019-18")


def test_every_stored_spelling_is_the_same_case() -> None:
    """The court finds a case under any of :func:`case_no_spellings`; each must also be "the same case" for a seal."""
    spellings = case_no_spellings("（2021）苏0214执1234号")
    assert spellings[0] == CASE and "（2021）苏0214执1234号" in spellings
    assert all(same_case_no(spelling, CASE) for spelling in spellings)
