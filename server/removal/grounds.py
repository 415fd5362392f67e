"""The grounds a removal request may rest on:
最高人民法院关于人民法院民事执行中查封、扣押、冻结财产的规定 (法释〔2004〕15号, amended 2020) Art. 28, under which the
court shall rule to lift a seizure. Item (3) — a failed sale with nothing else to be done — is the court's own
finding and no ground a debtor files; a settlement with the creditor (执行和解) is named on its own, as the case of
item (6) debtors meet most.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RemovalGround(StrEnum):
    THIRD_PARTY_PROPERTY = "third_party_property"
    APPLICANT_WITHDREW = "applicant_withdrew"
    PAID_IN_FULL = "paid_in_full"
    SECURITY_GIVEN = "security_given"
    SETTLEMENT = "settlement"
    OTHER = "other"

    @property
    def label(self) -> GroundLabel:
        return GROUND_LABELS[self]

    @property
    def rests_on_creditor(self) -> bool:
        """Does the ground rest on the creditor's own consent or act — Art. 28 (2) the applicant withdrew or waived,
        (5) security *and the applicant's consent*, and a settlement (执行和解), an agreement the creditor made? Then
        the creditor's written view is what the judge weighs: an approval before the time for views ends needs a
        view on record or the judge's reasons for deciding early (:func:`server.removal.disarm.approve_request`)."""
        return self in CREDITOR_GROUNDS


@dataclass(frozen=True)
class GroundLabel:
    zh: str
    en: str
    article: str  # where the ground is in the 查封规定
    article_en: str  # the same, in English: "Art. 28 (4)"

    def article_in(self, lang: str) -> str:
        """Where the ground is in the 查封规定, in the page's language (``zh-CN`` or ``en``)."""
        return self.article if lang == "zh-CN" else self.article_en


#: The grounds that rest on the creditor's consent or act (:attr:`RemovalGround.rests_on_creditor`).
CREDITOR_GROUNDS = frozenset({RemovalGround.APPLICANT_WITHDREW, RemovalGround.SECURITY_GIVEN, RemovalGround.SETTLEMENT})

GROUND_LABELS: dict[RemovalGround, GroundLabel] = {
    RemovalGround.THIRD_PARTY_PROPERTY: GroundLabel(
        "查封的财产属于案外人",
        "The sealed property belongs to a third party, not the debtor",
        "第二十八条第（一）项",
        "Art. 28 (1)",
    ),
    RemovalGround.APPLICANT_WITHDREW: GroundLabel(
        "申请执行人撤回执行申请或者放弃债权",
        "The applicant withdrew the application for enforcement or waived the claim",
        "第二十八条第（二）项",
        "Art. 28 (2)",
    ),
    RemovalGround.PAID_IN_FULL: GroundLabel(
        "债务已经清偿", "The debt has been paid in full", "第二十八条第（四）项", "Art. 28 (4)"
    ),
    RemovalGround.SECURITY_GIVEN: GroundLabel(
        "被执行人提供担保且申请执行人同意解除查封",
        "The debtor gave security and the applicant agrees to lifting the seizure",
        "第二十八条第（五）项",
        "Art. 28 (5)",
    ),
    RemovalGround.SETTLEMENT: GroundLabel(
        "与申请执行人达成执行和解",
        "A settlement with the applicant (creditor) — one of the other cases of item (6)",
        "第二十八条第（六）项",
        "Art. 28 (6)",
    ),
    RemovalGround.OTHER: GroundLabel(
        "人民法院认为应当解除查封的其他情形",
        "Another case in which the court finds the seizure should be lifted",
        "第二十八条第（六）项",
        "Art. 28 (6)",
    ),
}
