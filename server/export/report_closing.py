"""The report's closing section, laid out along 最高人民法院关于民事诉讼证据的若干规定 (2019) Art. 93–94 and
人民法院在线诉讼规则 (2021) Art. 16–17: the system and its operation, the chain of custody, how each item can be
checked, and what the evidence does not show."""

from __future__ import annotations

from reportlab.lib.units import mm
from reportlab.platypus import Flowable

from server.export.report_facts import ReportFacts
from server.export.report_sections import ReportStyles, cell, grid, heading, para

SYSTEM = [
    (
        "硬件、软件环境（第九十三条第一项至第三项）：每个电子封条在设备上生成自己的 Ed25519 签名密钥，"
        "按设计私钥不出设备（本包无从证明，见第四部分）；法院登记的是其公钥（见各封条一节签名公钥表中的密钥指纹）。"
        "封条对每一事件签名，并以前一事件的 SHA-256 串成哈希链。"
        "运行状态见时间线：心跳按日汇总，离线期间、摄像头故障、存储满删除快照、语音警告失败均逐条列出。",
        "Hardware and software (Art. 93 items 1–3): each seal makes its own Ed25519 signing key on the device; by "
        "design the private key stays on it (which the bundle cannot show: see part 4), and the court enrols its "
        "public key (fingerprints in each seal's table of keys). The "
        "seal signs every event and chains it to the previous one by SHA-256. How it ran is in the timeline: "
        "heartbeats per day; offline periods, camera faults, thinned snapshots and failed warnings one by one.",
    ),
    (
        "存储、传输与提取（第九十三条第四项至第七项）：法院逐字节保存封条签名的原始报文，不作改写；每条事件和审计记录"
        "作为叶子追加到仅可追加的 Merkle 日志（RFC 6962/9162），日志由法院的日志密钥签署检查点；配置了时间戳服务时，"
        "检查点另有 RFC 3161 时间戳。本证据包由系统在正常业务中导出，导出行为本身记入审计日志。",
        "Storage, transmission and extraction (Art. 93 items 4–7): the court stores the bytes each seal signed "
        "exactly as received; every event and audit entry is a leaf of an append-only Merkle log (RFC 6962/9162) "
        "whose checkpoints the court's log key signs, and, where a time-stamping authority is configured, each "
        "checkpoint has an RFC 3161 time stamp. The bundle is exported in the normal course of the system, and the "
        "export itself is audited.",
    ),
    (
        "第九十四条规定了可推定电子数据真实的情形（如由记录和保存电子数据的中立第三方平台提供或确认、"
        "以档案管理方式保管）。本系统由人民法院自身运行，是否适用该推定由审理法官判断；时间戳（如有）由第三方"
        "时间戳机构出具，可凭该机构的根证书独立于法院核验（seal-verify --tsa-root）。"
        "《人民法院在线诉讼规则》第十六条、第十七条针对以区块链技术存储的电子数据；"
        "本系统的日志是法院自行运行的 Merkle 日志，不是区块链，这两条能否参照适用由审理法官判断。seal-verify 的结果"
        "只说明本包的文件与签名、证明相符。",
        "Art. 94 presumes electronic data authentic in some cases (e.g. provided or confirmed by a neutral "
        "third-party platform that records and keeps it, or kept as archives). This system is run by the court "
        "itself: whether the presumption applies is for the judge. A time stamp, where present, comes from a "
        "third-party authority and can be checked without the court, against that authority's root certificate "
        "(seal-verify --tsa-root). Art. 16–17 of the Rules on Online Litigation "
        "are of electronic data stored by blockchain; this system's log is a Merkle log the court runs itself, not a "
        "blockchain, and whether they apply by analogy is for the judge. seal-verify shows only that the bundle's "
        "files agree with its signatures and proofs.",
    ),
]

CHAIN = [
    (
        "封条密钥",
        "seal key",
        "设备生成，公钥在登记时由法院记录",
        "made on the device; public key enrolled by the court",
    ),
    (
        "签名事件",
        "signed event",
        "封条对规范化 JSON（RFC 8785）签名，哈希链相连",
        "signed canonical JSON, hash-chained",
    ),
    ("法院接收", "court ingest", "验签后逐字节保存，记录接收时间", "verified, stored byte for byte, receipt time kept"),
    (
        "Merkle 日志",
        "Merkle log",
        "每条事件、每条审计记录为一片叶子，SHA-256(0x00‖字节)",
        "each event and audit entry a leaf, SHA-256(0x00‖bytes)",
    ),
    ("签名检查点", "signed checkpoint", "日志大小与根哈希，由日志密钥签署", "log size and root, signed by the log key"),
    (
        "时间戳",
        "time stamp",
        "第三方对检查点的 RFC 3161 时间戳（如有）",
        "an RFC 3161 token over the checkpoint, if any",
    ),
]

CHECKS = [
    (
        "events.jsonl",
        "用 seals/ 中的公钥验证每条事件的签名；核对案号与哈希链",
        "each event's signature with the key in seals/; its case number; the hash chain",
    ),
    (
        "snapshots/",
        "图像的 SHA-256 须等于签名事件中列出的值",
        "each image's SHA-256 must be the one a signed event names",
    ),
    (
        "log/proofs.jsonl",
        "每条事件、审计记录到检查点根哈希的包含证明",
        "the inclusion proof of every event and audit entry",
    ),
    (
        "log/checkpoint.txt",
        "用法院公布的日志公钥（而非本包的 log/key.txt）验证签名；可与早先保存的检查点做一致性证明",
        "its signature by the log key the court publishes (not the bundle's log/key.txt); consistency with a "
        "checkpoint kept earlier",
    ),
    (
        "log/checkpoint.tsr",
        "RFC 3161 时间戳：摘要等于检查点的 SHA-256，证书链在签发时有效",
        "RFC 3161 token: imprint is the checkpoint's SHA-256, chain valid at its time",
    ),
    (
        "manifest.json / .sig",
        "每个文件的 SHA-256 与大小；清单由日志密钥签署",
        "every file's SHA-256 and size, signed by the log key",
    ),
]

NOT_SHOWN = [
    (
        "签名只证明由哪把密钥签署、签署后字节未被改动；不证明传感器确实看见了人，也不证明是谁。人体感应器对热源运动"
        "（包括动物）作出反应；快照由人工判读。",
        "A signature proves which key signed and that the bytes are unchanged since; not that the sensor saw a "
        "person, nor who it was. The motion sensor reacts to moving warmth (animals too); pictures need a human eye.",
    ),
    (
        "“封条时钟”是封条自身的时钟，未经外部校准证明；“法院收到”是法院服务器的时钟。时间戳只证明检查点不晚于该时刻"
        "已存在，不证明其中事件发生的时刻。",
        "“Seal's clock” is the seal's own clock, not proven against any reference; “received” is the court server's "
        "clock. A time stamp shows the checkpoint existed by then, not when the events in it happened.",
    ),
    (
        "缺口：离线期间、哈希链中缺失的序号、因存储满被删除的快照、法院未存有的快照，都是没有记录的时段或内容，"
        "不能据此推断其间无事发生。",
        "Gaps: offline periods, missing sequence numbers, snapshots thinned when the store was full and snapshots "
        "the court does not hold are times or things without a record; they do not show that nothing happened.",
    ),
    (
        "若封条的私钥被取出，他人可以以其名义签名；签名不证明设备的物理完整性（外壳开启见防拆事件）。法院持有日志密钥，"
        "可以重新签署整个日志：日志只能证明，与他人早先保存的检查点（或经核验的时间戳所示时刻已存在的检查点）相比，"
        "此前的记录未被改写；没有这样的检查点，本包本身不能排除日志被重建。日志也不证明法院接收事件之前的情况。",
        "Whoever extracted a seal's private key could sign in its name: a signature does not prove the device's "
        "physical integrity (an opened enclosure shows as tamper events). The court holds the log key and could "
        "sign a whole log again: the log shows only that nothing before a checkpoint someone else kept (or one a "
        "checked time stamp shows existed) was rewritten since; without such a checkpoint the bundle alone does not "
        "rule out a rebuilt log. Nor does the log show what happened before the court received an event.",
    ),
]


def closing(facts: ReportFacts, s: ReportStyles) -> list[Flowable]:
    out = heading(
        "证据说明（依《最高人民法院关于民事诉讼证据的若干规定》第九十三条、第九十四条）",
        "About this evidence (along Art. 93–94 of the SPC Provisions on Evidence in Civil Procedure)",
        s,
    )
    out += heading("一、系统的完整性与运行状况", "1. The system and how it ran", s)
    for zh, en in SYSTEM:
        out += para(zh, en, s)
    out += heading("二、保管链", "2. Chain of custody", s)
    rows = [[str(n), cell(zh, en, s), cell(dzh, den, s)] for n, (zh, en, dzh, den) in enumerate(CHAIN, 1)]
    out.append(grid([("", ""), ("环节", "link"), ("说明", "what it is")], rows, [8 * mm, 35 * mm, None], s))
    out += heading("三、各项证据的核验方法", "3. How each item can be checked", s)
    out += para(
        "在任何计算机上运行 seal-verify case.zip --log-key 公钥（法院公布的日志公钥；或 --known-checkpoint 文件："
        "早先保存的检查点），无需联网、无需法院系统，下列各项均自动核验。",
        "Run seal-verify case.zip --log-key KEY (the log key the court publishes; or --known-checkpoint FILE: a "
        "checkpoint kept earlier) on any computer (no network, no court system): it checks each item below.",
        s,
    )
    rows = [[cell(path, "", s), cell(zh, en, s)] for path, zh, en in CHECKS]
    out.append(grid([("文件", "file"), ("核验内容", "what is checked")], rows, [40 * mm, None], s))
    out += heading("四、本证据不能证明的内容", "4. What this evidence does not show", s)
    for zh, en in NOT_SHOWN:
        out += para(zh, en, s)
    if facts.offline:
        out += para(
            f"本案共有 {len(facts.offline)} 段离线期间，见时间线。",
            f"This case has {len(facts.offline)} offline periods; see the timeline.",
            s,
        )
    return out
