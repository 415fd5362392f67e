"""The facts a notice prints, as one value: what the paper shows (besides the fixed legal text), hashed into its token.

A notice identifies the property, where it is, the ruling the seizure rests on, the court's telephone and the
seizure's last day (:data:`REQUIRED_FACTS`): without any of them no notice is issued or printed
(:class:`~server.notices.errors.FactsMissing`), rather than a paper saying "not recorded" on a door.

The facts are kept as their canonical JSON (RFC 8785: sorted keys, no white space, UTF-8) exactly as printed; the
token carries the SHA-256 of those bytes. The debtor's and the creditor's names are not among them: the paper hangs
on a door, and the public page shows nothing the paper does not.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime, time, timedelta

from server.core.court_clock import COURT_TIME
from server.notices.token import canonical_json


@dataclass(frozen=True)
class NoticeFacts:
    court: str  # the court's name
    court_phone: str
    case_no: str
    judge: str
    judge_phone: str
    sealed_on: str  # YYYY-MM-DD: the day the seal was bound to the case (its installation)
    property: str  # what is sealed (查封财产)
    address: str  # where it is
    seizure_expires_on: str | None  # YYYY-MM-DD: the last day of the seizure's term, if recorded
    device_id: str
    # The enforcement ruling (执行裁定书) the seizure rests on. Last, with a default: a notice issued before migration
    # 0028 has none in its stored facts (its page shows it as not recorded).
    ruling_no: str = ""

    def canonical(self) -> bytes:
        return canonical_json(asdict(self))

    def sha256(self) -> bytes:
        return hashlib.sha256(self.canonical()).digest()

    @classmethod
    def from_json(cls, text: str) -> NoticeFacts:
        """The facts stored as :meth:`canonical` JSON."""
        data = json.loads(text)
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data or f.name != "ruling_no"})


#: The facts' rows as printed, in order: (field, Chinese label, English label). The court's name heads the paper.
FACT_ROWS: tuple[tuple[str, str, str], ...] = (
    ("case_no", "案号", "Case number"),
    ("ruling_no", "执行裁定书", "Enforcement ruling"),
    ("judge", "执行法官", "Enforcement judge"),
    ("judge_phone", "法官电话", "Judge's telephone"),
    ("court_phone", "法院电话", "Court telephone"),
    ("sealed_on", "查封日期", "Date of sealing"),
    ("property", "查封财产", "Property sealed"),
    ("address", "财产所在地", "Location"),
    ("seizure_expires_on", "查封期限至", "Seizure expires on"),
    ("device_id", "电子封条编号", "Electronic seal id"),
)
#: The facts without which no notice is printed, in the paper's order: what the seizure rests on, whom to call, what
#: is sealed and where, and until when (the court's name and the case number every case has).
REQUIRED_FACTS: tuple[str, ...] = ("ruling_no", "court_phone", "property", "address", "seizure_expires_on")
#: What the page of a notice shows for a fact it did not print (the judge's name and phone are not required; a notice
#: printed before the others were may lack them too).
NOT_RECORDED = "未登记 / not recorded"
NO_TERM = "未载明 / not stated"


def missing_facts(facts: NoticeFacts) -> tuple[str, ...]:
    """The :data:`REQUIRED_FACTS` that ``facts`` lacks (empty, or only white space), in the paper's order."""
    return tuple(name for name in REQUIRED_FACTS if not (getattr(facts, name) or "").strip())


def fact_rows(facts: NoticeFacts) -> list[tuple[str, str, str]]:
    """(Chinese label, English label, value as printed) of each fact, in the paper's order."""
    rows = []
    for name, zh, en in FACT_ROWS:
        value = getattr(facts, name)
        rows.append((zh, en, value or (NO_TERM if name == "seizure_expires_on" else NOT_RECORDED)))
    return rows


def court_day(moment: datetime) -> date:
    """The court's calendar day at ``moment``."""
    return moment.astimezone(COURT_TIME).date()


def end_of_court_day(day: date) -> datetime:
    """The moment ``day`` ends in the court's time zone (midnight that starts the next day)."""
    return datetime.combine(day + timedelta(days=1), time(0), COURT_TIME)
