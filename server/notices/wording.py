"""The fixed words of a notice that both the paper (:mod:`server.notices.pdf`) and the page its QR code opens
(``templates/notice.html``) say, Chinese first with English, written once so that the two cannot differ.

The warning names the acts of 刑法第三百一十四条 (concealing, transferring, selling or destroying seized property); the
ruling line names the enforcement ruling (裁定) a seizure needs (查封规定 Art. 1); the objection line is the
民事诉讼法's written objection to an enforcement act (reviewed within 15 days, 10 days to ask for reconsideration).
The article numbers of the 民事诉讼法 changed in its 2021 and 2023 revisions: none is printed.
"""

from __future__ import annotations

WARNING_ZH = "未经人民法院许可，隐藏、转移、变卖、毁损查封财产的，依法追究法律责任。"
WARNING_EN = (
    "Concealing, transferring, selling or damaging the sealed property without the permission of the People's Court "
    "is punishable by law."
)
OBJECTION_ZH = (
    "当事人、利害关系人认为本次查封违反法律规定的，可以向本院提出书面异议。本院自收到书面异议之日起十五日内审查；"
    "对审查后作出的裁定不服的，可以自该裁定送达之日起十日内向上一级人民法院申请复议。"
)
OBJECTION_EN = (
    "A party or an interested person who considers that this seizure breaks the law may object to this court in "
    "writing. The court reviews a written objection within 15 days of receiving it; whoever disagrees with the ruling "
    "on it may apply to the court at the next level up for reconsideration within 10 days of that ruling's service."
)


def ruling_line(ruling_no: str) -> tuple[str, str]:
    """The notice's opening: the seizure, the ruling it rests on, and the seal, in Chinese and English."""
    return (
        f"依据本院{ruling_no}执行裁定，本院依法查封下列财产，并加贴电子封条。",
        f"Under this court's enforcement ruling {ruling_no}, the court has seized the property below and sealed it "
        "with an electronic seal.",
    )
