"""The API's shapes of a case: what the clerk sends to create or change one, and what a reader gets."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from server.api.schemas import ONE_LINE, EnforcementCaseNo, Name, Phone, Place
from server.seals.case_numbers import EXPECTED_FORM
from server.seals.models import Case

#: An enforcement ruling's number (执行裁定书), as the case's notice prints it.
RulingNo = Annotated[str, StringConstraints(max_length=64, pattern=ONE_LINE)]


class CaseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    case_no: EnforcementCaseNo = Field(description=f"案号: {EXPECTED_FORM}")
    court: Name = Field(
        "",
        description="The name of the court the case number names, e.g. 无锡市滨湖区人民法院: registers that court "
        "the first time; must match its name afterwards; may be left out once the court is known.",
    )
    judge: Name = Field("", description="The enforcement judge's name as printed on the notice.")
    judge_phone: Phone = Field("", description="The judge's telephone number as printed on the notice.")
    address: Place = Field("", description="Where the sealed property is.")
    sealed_property: Place = Field("", description="What is sealed (查封财产), as printed on the notice.")
    ruling_no: RulingNo = Field(
        "",
        description="The enforcement ruling (执行裁定书) the seizure rests on, e.g. (2021)苏0214执1234号之一, as "
        "printed on the notice.",
    )
    applicant: Place = Field("", description="申请执行人, the creditor.")
    debtor: Place = Field("", description="被执行人, the debtor.")
    seizure_expires_on: date | None = Field(None, description="查封期限: the last day of the seizure.")


class CaseUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    judge: Name | None = None
    judge_phone: Phone | None = None
    address: Place | None = None
    sealed_property: Place | None = None
    ruling_no: RulingNo | None = None
    applicant: Place | None = None
    debtor: Place | None = None
    seizure_expires_on: date | None = None


class CasePublic(BaseModel):
    case_no: str
    court_code: str | None = Field(
        description="The court's code in the case number (法院代字); null for a legacy number."
    )
    court: str = Field(description="The court's name.")
    judge: str
    judge_phone: str
    address: str
    sealed_property: str = Field(description="What is sealed (查封财产).")
    ruling_no: str = Field(
        description="The enforcement ruling (执行裁定书) the seizure rests on; empty if not recorded."
    )
    applicant: str
    debtor: str
    seizure_expires_on: date | None
    status: str = Field(description="open (no seal yet), sealed, lifting (removal approved), lifted or closed.")
    status_changed_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, case: Case) -> CasePublic:
        return cls(
            case_no=case.case_no,
            court_code=case.court_code,
            court=case.court_name,
            judge=case.judge,
            judge_phone=case.judge_phone,
            address=case.address,
            sealed_property=case.sealed_property,
            ruling_no=case.ruling_no,
            applicant=case.applicant,
            debtor=case.debtor,
            seizure_expires_on=case.seizure_expires_on,
            status=case.status,
            status_changed_at=case.status_changed_at,
            created_at=case.created_at,
        )
