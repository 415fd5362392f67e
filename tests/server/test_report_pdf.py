"""The evidence report PDF (server.export.report): what a judge reads in it, read back with poppler's tools as a
reader would (pdftotext, pdffonts, pdfimages), and its render time for a case of 10,000 events."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from PIL import Image

from server.export.report import (
    AlarmFacts,
    Binding,
    Check,
    CheckpointFacts,
    CommandFacts,
    EventFacts,
    ExportFacts,
    HistoryEntry,
    OfflinePeriod,
    RemovalFacts,
    ReportFacts,
    SealFacts,
    SnapshotFacts,
    TimestampFacts,
    offline_periods,
    render_report,
)
from server.export.report_sections import CONTACT_SHEET_MAX

CASE = "(2026)苏0281执1234号"
COURT = "江阴市人民法院"
KEY = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
T0 = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
FAILED_LANGUAGES = [
    {"language": "zh", "result": "failed", "reason": "Error opening PCM device. -- CODE: -22"},
    {"language": "en", "result": "failed", "reason": "Error opening PCM device. -- CODE: -22"},
]
PLAYED_LANGUAGES = [
    {"language": "zh", "result": "played", "reason": None},
    {"language": "en", "result": "played", "reason": None},
]


def pdf_text(pdf: bytes) -> str:
    """The PDF's text with all white space removed (lines may break anywhere in Chinese)."""
    text = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()
    return re.sub(r"\s+", "", text)


def pdf_fonts(pdf: bytes) -> list[list[str]]:
    out = subprocess.run(["pdffonts", "-"], input=pdf, capture_output=True, check=True).stdout.decode()
    return [line.split() for line in out.splitlines()[2:]]


def pdf_images(pdf: bytes) -> list[list[str]]:
    """The rows of ``pdfimages -list`` (page, num, type, width, height, color, comp, bpc, enc, …)."""
    out = subprocess.run(["pdfimages", "-list", "-"], input=pdf, capture_output=True, check=True).stdout.decode()
    return [line.split() for line in out.splitlines()[2:]]


def jpeg(shade: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (640, 480), (shade % 256, 80, 160)).save(out, "JPEG")
    return out.getvalue()


class Events:
    """Events of one seal, numbered as it would number them."""

    def __init__(self, device_id: str = "seal-01") -> None:
        self.device_id = device_id
        self.items: list[EventFacts] = []

    def add(self, kind: str, at: datetime, **payload: Any) -> EventFacts:
        event = EventFacts(
            self.device_id, len(self.items) + 1, kind, at, at + timedelta(seconds=1), len(self.items), payload
        )
        self.items.append(event)
        return event


def facts(**changes: Any) -> ReportFacts:
    base: dict[str, Any] = {
        "court": COURT,
        "case_no": CASE,
        "export": ExportFacts("clerk.li", T0 + timedelta(days=3), T0, None),
        "checkpoint": CheckpointFacts("court.example/seal-log", 12, "ab" * 32, "court.example/seal-log+1a2b3c4d+AQID"),
    }
    return ReportFacts(**(base | changes))


def busy_case() -> ReportFacts:
    events = Events()
    events.add("armed", T0, reason="bound", by=None)
    for hour in range(30):  # heartbeats over two China days
        events.add("heartbeat", T0 + timedelta(hours=hour), speaker="ok", armed=True)
    failed = events.add(
        "intrusion",
        T0 + timedelta(hours=2),
        warning="failed",
        warning_languages=FAILED_LANGUAGES,
        camera="ok",
        snapshots=["a" * 64],
    )
    started = events.add(
        "intrusion",
        T0 + timedelta(hours=3),
        warning="started",
        camera="ok",
        snapshots=[],
        warning_languages=[{"language": "zh", "result": "playing", "reason": None}],
    )
    events.add(
        "warning_result",
        T0 + timedelta(hours=3, seconds=9),
        trigger="intrusion",
        trigger_seq=started.seq,
        warning="played",
        warning_languages=PLAYED_LANGUAGES,
    )
    events.add("command_ack", T0 + timedelta(hours=4), command_id=7, action="ping", result="pong")
    events.add("outbox_full", T0 + timedelta(hours=5), thinned=3, thinned_unsent=1, quota_bytes=1, stored_bytes=2)
    shots = [SnapshotFacts(f"{i:064x}", "seal-01", T0 + timedelta(minutes=i), jpeg(i)) for i in range(3)]
    shots.append(SnapshotFacts("f" * 64, "seal-01", None, None))
    return facts(
        events=events.items,
        snapshots=shots,
        seals=[SealFacts("seal-01", KEY, T0 - timedelta(days=1), "admin", "仓库 A", [Binding(T0, "judge.wang")])],
        checks=[
            Check("设备签名", "device signatures", True, f"{len(events.items)} events"),
            Check("快照哈希", "snapshot hashes", False, "1 snapshot missing"),
            Check("时间戳", "time stamp", None),
        ],
        alarms=[
            AlarmFacts(
                1,
                "seal-01",
                "intrusion",
                "high",
                "closed",
                failed.ts,
                2,
                [HistoryEntry(T0 + timedelta(hours=6), "judge.wang", "closed", "现场查看无异常")],
            )
        ],
        commands=[CommandFacts(7, "seal-01", "ping", "clerk.li", T0 + timedelta(hours=4), "acknowledged", 35, "pong")],
        removals=[
            RemovalFacts(
                3,
                "paid",
                "approved",
                "debtor.zhao",
                T0 + timedelta(days=1),
                [HistoryEntry(T0 + timedelta(days=2), "judge.wang", "approved", "已履行")],
                ["c" * 64],
            )
        ],
        offline=[OfflinePeriod("seal-01", T0 + timedelta(hours=10), T0 + timedelta(hours=12))],
        timestamp=TimestampFacts(T0 + timedelta(days=3), "CN=Test TSA"),
        audit_count=9,
    )


def test_the_report_states_the_case_its_headings_in_both_languages_and_the_counts() -> None:
    report = busy_case()
    text = pdf_text(render_report(report))
    for printed in (
        CASE,
        COURT,
        "clerk.li",
        "ab" * 32,
        "court.example/seal-log+1a2b3c4d+AQID",
        "seal-verifycase.zip",
        "CN=TestTSA",
        "现场查看无异常",
        "已履行",
        "debtor.zhao",
        "仓库A",
    ):
        assert printed in text, printed
    headings = [
        ("导出服务器的自检", "Theexportingserver'sself-check"),
        ("电子封条", "Theseals"),
        ("事件时间线", "Timelineofsignificant"),
        ("快照", "Snapshots"),
        ("告警", "Alarms"),
        ("指令与应答", "Commandsandanswers"),
        ("解除查封申请与决定", "Removalrequestsanddecisions"),
        ("本证据不能证明的内容", "doesnotshow"),
        ("保管链", "Chainofcustody"),
        ("第九十三条", "Art.93–94"),
    ]
    for zh, en in headings:
        assert zh in text and en in text, (zh, en)
    events, shots = len(report.events), len(report.snapshots)
    assert f"{events}/{shots}/9" in text  # events / snapshots / audit entries on the cover
    assert "1/1/1" in text  # alarms / commands / removal requests
    assert "共3项自检，1项未通过" in text and "未通过FAILED" in text
    # the cover's time stamp is the TSA's word until its chain is checked against a pinned root
    assert "时间戳机构所称的时间" in text and "thetimetheTSAstates;checkitschainwithseal-verify--tsa-root" in text
    assert f"root(base64,asinlog/checkpoint.txt){base64.b64encode(bytes.fromhex('ab' * 32)).decode()}" in text
    # Heartbeats are counted per China day, not listed: 30 hourly ones from 09:00 China time fall on two days.
    assert "seal-012026-11-3015" in text and "seal-012026-12-0115" in text
    assert text.count("心跳") < 10
    assert "离线offline" in text and "至2026-11-3021:00:00，法院未收到该封条的任何消息" in text
    assert hashlib.sha256(base64.b64decode(KEY)).hexdigest() in text  # the key's fingerprint


def test_a_failed_warning_reads_as_failed_and_an_outcome_is_taken_from_its_warning_result() -> None:
    events = Events()
    events.add("intrusion", T0, warning="failed", warning_languages=FAILED_LANGUAGES, camera="ok", snapshots=[])
    started = events.add(
        "tamper",
        T0 + timedelta(minutes=1),
        warning="started",
        camera="ok",
        snapshots=[],
        warning_languages=[{"language": "zh", "result": "playing", "reason": None}],
    )
    events.add(
        "warning_result",
        T0 + timedelta(minutes=2),
        trigger="tamper",
        trigger_seq=started.seq,
        warning="failed",
        warning_languages=FAILED_LANGUAGES,
    )
    events.add(
        "intrusion",
        T0 + timedelta(minutes=3),
        warning="started",
        camera="ok",
        snapshots=[],
        warning_languages=[{"language": "zh", "result": "playing", "reason": None}],
    )
    text = pdf_text(render_report(facts(events=events.items)))
    assert "警告播放失败：中文失败（ErroropeningPCMdevice.--CODE:-22）" in text
    assert "warningfailed:Chinesefailed(ErroropeningPCMdevice.--CODE:-22);Englishfailed(" in text
    assert "结果：警告播放失败" in text and "outcome:warningfailed" in text
    assert "结果：未收到warning_result事件" in text  # the last warning's outcome never came: said so, not guessed


def test_an_intrusion_within_the_cooldown_reads_as_deferred_with_the_outcome_of_its_warning_result() -> None:
    """A ``deferred_cooldown`` intrusion is warned (or not) later, and its ``warning_result`` says so: the report
    shows that outcome beside it, as for a warning that had ``started``."""
    events = Events()
    deferred = events.add("intrusion", T0, warning="deferred_cooldown", warning_languages=[], camera="ok", snapshots=[])
    events.add(
        "warning_result",
        T0 + timedelta(seconds=30),
        trigger="intrusion",
        trigger_seq=deferred.seq,
        warning="suppressed_cooldown",
        warning_languages=[],
    )
    text = pdf_text(render_report(facts(events=events.items)))
    assert "冷却期内，警告推迟至冷却期结束；结果：未警告（冷却期内）" in text
    assert "warningdeferredtotheendofthecool-down；outcome:nowarning(cool-down)" in text


def test_a_warning_decided_by_the_camera_and_a_test_warning_read_as_they_ended() -> None:
    events = Events()
    pending = events.add(
        "intrusion", T0, warning="pending_confirmation", warning_languages=[], camera="ok", snapshots=[]
    )
    events.add(
        "snapshot_taken",
        T0 + timedelta(seconds=5),
        trigger="intrusion",
        trigger_seq=pending.seq,
        snapshots=[],
        camera_motion="seen",
        warning="started",
        warning_languages=[{"language": "zh", "result": "playing", "reason": None}],
    )
    events.add(
        "warning_result",
        T0 + timedelta(seconds=20),
        trigger="intrusion",
        trigger_seq=pending.seq,
        warning="failed",
        warning_languages=FAILED_LANGUAGES,
    )
    events.add(
        "command_ack",
        T0 + timedelta(minutes=5),
        command_id=4,
        action="test_warning",
        result="failed",
        warning_languages=FAILED_LANGUAGES,
    )
    text = pdf_text(render_report(facts(events=events.items)))
    assert "待摄像头确认后决定是否警告；摄像头确认后：警告已开始播放：中文播放中；结果：警告播放失败" in text
    assert "指令4测试警示音→警示音播放失败；警告播放失败" in text


def test_the_tables_and_the_timeline_say_the_protocols_tokens_in_words_chinese_first() -> None:
    """A command's action, state, the seal's refusal reason and result, an alarm's kind, severity, state and steps,
    a removal request's ground, state and steps: in the words the case page says them, Chinese first, never the
    protocol's token (the bundle's JSONL files keep the tokens; every token the report words has words: test_i18n)."""
    events = Events()
    events.add("command_rejected", T0, command_id=8, reason="wrong_case", detail="issued for case (2020)")
    events.add("command_ack", T0 + timedelta(minutes=1), command_id=9, action="disarm", result="disarmed")
    commands = [
        CommandFacts(8, "seal-01", "disarm", "judge.wang", T0, "rejected", 1, None, "wrong_case"),
        CommandFacts(9, "seal-01", "disarm", "judge.wang", T0, "acknowledged", 2, "disarmed"),
        CommandFacts(10, "seal-01", "test_warning", "clerk.li", T0, "expired"),
    ]
    alarm = AlarmFacts(
        1,
        "seal-01",
        "tamper",
        "critical",
        "closed",
        T0,
        1,
        [HistoryEntry(T0, "officer.zhou", "acknowledged"), HistoryEntry(T0, "judge.wang", "closed", "已核实")],
    )
    removal = RemovalFacts(
        3,
        "paid_in_full",
        "disarm_pending",
        "debtor.zhao",
        T0,
        [HistoryEntry(T0, "debtor.zhao", "file"), HistoryEntry(T0, "judge.wang", "issue_disarm")],
    )
    text = pdf_text(render_report(facts(events=events.items, commands=commands, alarms=[alarm], removals=[removal])))
    commands_part = text.split("指令与应答")[-1].split("解除查封申请与决定")[0]
    for said in (
        "撤防Disarm",
        "封条拒绝Refusedbytheseal",
        "案号不符（封条已用于其他案件）Issuedforanothercasethanthesealguards",
        "已送达并执行Deliveredanddone",
        "已撤防Disarmed",  # the result the seal reported
        "测试警示音Testwarning",
        "超时未应答Noanswerintime",
    ):
        assert said in commands_part, said
    for said in (
        "指令8：案号不符（封条已用于其他案件）",
        "command8:Issuedforanothercasethanthesealguards:issuedforcase(2020)",
        "指令9撤防→已撤防",
        "command9Disarm→Disarmed",
        "防拆（外壳被打开）Tamper(lidopened)",
        "紧急Critical",
        "已关闭Closed",
        "officer.zhou已确认Acknowledged",
        "judge.wang已关闭Closed：已核实",
        "债务已经清偿Thedebthasbeenpaidinfull",
        "等待封条解除",  # the state's name wraps in its cell: 等待封条解除 / 布防
        "布防Waitingforthesealstodisarm",
        "debtor.zhao提交申请Filed",
        "judge.wang向封条发出解除布防指令Disarmsenttotheseals",
    ):
        assert said in text, said
    tokens = ("wrong_case", "test_warning", "paid_in_full", "disarm_pending", "issue_disarm", "critical", "disarmed")
    for token in tokens:
        assert token not in text, token


def test_a_token_without_words_is_shown_as_it_is() -> None:
    """A value a newer seal or a later version of the court sends has no words yet: it reads as its token, never as
    nothing and never as a crash."""
    events = Events()
    events.add("command_rejected", T0, command_id=8, reason="battery_low")
    commands = [CommandFacts(8, "seal-01", "self_destruct", "judge.wang", T0, "lost", 1, None, "battery_low")]
    alarm = AlarmFacts(1, "seal-01", "flood", "extreme", "snoozed", T0, 1, [HistoryEntry(T0, "judge.wang", "snoozed")])
    removal = RemovalFacts(3, "paid", "pondering", "debtor.zhao", T0, [HistoryEntry(T0, "judge.wang", "ponder")])
    text = pdf_text(render_report(facts(events=events.items, commands=commands, alarms=[alarm], removals=[removal])))
    for token in ("battery_low", "self_destruct", "lost", "flood", "extreme", "snoozed", "paid", "pondering"):
        assert token in text, token
    assert "judge.wangponder" in text and "action_ponder" not in text


def test_a_played_warning_does_not_read_as_failed() -> None:
    events = Events()
    events.add("intrusion", T0, warning="played", warning_languages=PLAYED_LANGUAGES, camera="ok", snapshots=[])
    text = pdf_text(render_report(facts(events=events.items)))
    assert "警告已播放：中文已播放；英文已播放" in text and "warningplayed:Chineseplayed;Englishplayed" in text
    assert "警告播放失败" not in text and "warningfailed" not in text


def test_the_cjk_font_is_embedded_and_no_other_font_is_used() -> None:
    rows = pdf_fonts(render_report(busy_case()))
    assert rows, "no font at all"
    for row in rows:
        emb, sub = row[-5], row[-4]
        assert (emb, sub) == ("yes", "yes"), row


def test_thumbnails_are_images_bounded_and_the_rest_named_by_path() -> None:
    held = [
        SnapshotFacts(f"{i:064x}", "seal-01", T0 + timedelta(seconds=i), jpeg(i)) for i in range(CONTACT_SHEET_MAX + 3)
    ]
    broken = SnapshotFacts("e" * 64, "seal-01", T0 + timedelta(days=1), b"not a jpeg")
    missing = SnapshotFacts("d" * 64, "seal-01", None, None)
    pdf = render_report(facts(snapshots=[*held, broken, missing]))
    images = pdf_images(pdf)
    assert len(images) == CONTACT_SHEET_MAX
    assert {row[8] for row in images} == {"jpeg"}
    text = pdf_text(pdf)
    for rest in [*held[CONTACT_SHEET_MAX:], broken, missing]:
        assert rest.path in text, rest.path
    assert held[0].path not in text  # shown as a thumbnail, not listed
    assert f"共{len(held) + 2}张快照：法院存有{len(held) + 1}张，缩略图{CONTACT_SHEET_MAX}张；未存有1张" in text


def test_an_undecodable_snapshot_is_named_not_fatal_and_unknown_times_sort_first() -> None:
    broken = SnapshotFacts("e" * 64, "seal-01", T0, b"\xff\xd8 truncated")
    undated = [SnapshotFacts(c * 64, "seal-01", None, jpeg(n)) for n, c in enumerate("ab")]
    naive = SnapshotFacts("c" * 64, "seal-01", datetime(2026, 11, 29, 16, 0), jpeg(3))  # naive: UTC, as stored
    pdf = render_report(facts(snapshots=[broken, *undated, naive]))
    text = pdf_text(pdf)
    assert "无法解码的图像" in text
    assert "2026-11-3000:00:00" in text  # the naive time read as UTC, printed as China time
    assert len(pdf_images(pdf)) == 3


def test_an_empty_case_renders() -> None:
    pdf = render_report(facts())
    assert pdf.startswith(b"%PDF-")
    text = pdf_text(pdf)
    assert CASE in text and "0/0/0" in text
    assert "本案在导出范围内没有需要逐条列出的事件" in text and "导出时未进行核验" in text
    assert "无（本证据包没有时间戳）" in text


def test_free_text_of_any_length_is_clipped_and_points_to_its_file() -> None:
    """A seal's reason or a person's note may be long: the report shows its beginning and names the file holding all
    of it (cells of any height set whole: test_report_sizes)."""
    long = "很长的说明" * 4000
    events = Events()
    events.add("command_rejected", T0, command_id=9, reason="bad_signature", detail="x" * 20_000)
    languages = [{"language": "zh", "result": "failed", "reason": long}]
    events.add("intrusion", T0, warning="failed", warning_languages=languages, camera="ok", snapshots=[])
    alarm = AlarmFacts(
        1, "seal-01", "tamper", "critical", "closed", T0, 1, [HistoryEntry(T0, "judge.wang", "closed", long)]
    )
    removal = RemovalFacts(2, "paid", "rejected", "debtor.zhao", T0, [HistoryEntry(T0, "judge.wang", "rejected", long)])
    pdf = render_report(
        facts(events=events.items, alarms=[alarm], removals=[removal], checks=[Check("签名", "sig", False, long)])
    )
    text = pdf_text(pdf)
    for where in ("events.jsonl", "alarms.jsonl", "removal.jsonl", "seal-verify--json"):
        assert f"全文见{where}/fulltextin{where}" in text, where
    assert text.count("很长的说明") < 2000


def test_offline_periods_are_found_from_silences() -> None:
    events = Events()
    for minutes in (0, 1, 2, 30, 31):
        events.add("heartbeat", T0 + timedelta(minutes=minutes))
    found = offline_periods(events.items, silence=timedelta(minutes=5), until=T0 + timedelta(hours=1))
    assert found == [
        OfflinePeriod("seal-01", T0 + timedelta(minutes=2, seconds=1), T0 + timedelta(minutes=30, seconds=1)),
        OfflinePeriod("seal-01", T0 + timedelta(minutes=31, seconds=1), None),
    ]


@pytest.mark.parametrize("heartbeats", [0, 9_000], ids=["all-significant", "mostly-heartbeats"])
def test_ten_thousand_events_render_whole(heartbeats: int, capsys: pytest.CaptureFixture[str]) -> None:
    """The brief's measure: about 6 s of CPU for 10,000 significant events (540 pages), under 1 s when most are
    heartbeats. The time is printed, not asserted (bench/evidence.py measures it); the test asserts the report is
    whole."""
    events = Events()
    for n in range(10_000):
        at = T0 + timedelta(seconds=30 * n)
        if n < heartbeats:
            events.add("heartbeat", at, speaker="ok")
        else:
            events.add("intrusion", at, warning="failed", warning_languages=FAILED_LANGUAGES, camera="ok", snapshots=[])
    wall, cpu = time.perf_counter(), time.process_time()
    pdf = render_report(facts(events=events.items))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    with capsys.disabled():
        print(f"\nreport of 10,000 events ({heartbeats} heartbeats): {wall:.1f} s ({cpu:.1f} s CPU), {len(pdf)} bytes")
    text = pdf_text(pdf)
    assert "10000/0/0" in text  # events / snapshots / audit entries on the cover
    assert text.count("Errorope") >= 2 * (10_000 - heartbeats)  # every significant event listed, with its reasons


def test_an_id_in_a_table_cell_is_never_broken_just_after_one_of_its_hyphens() -> None:
    """A cell breaks a long value where its column ends, but never just after a '-': a reader, and pdftotext, take
    a '-' at a line's end for a hyphenation and leave it out, and an event's UUID (or a seal's id) would be another.
    Each id below is set in a narrow column (an alarm's seal), a paragraph cell (a check's detail) and a timeline
    cell (a seal's reason), after text of every length up to a line's, so that breaks fall at each of its places."""
    ids = [str(uuid.UUID(int=n * 0x9E3779B97F4A7C15F39CC0605CEDC834 % 2**128)) for n in range(1, 41)]
    events = Events()
    for n, event_id in enumerate(ids):
        events.add("camera_lost", T0, reason=f"{'x' * (n % 60)}{event_id}")
    alarms = [
        AlarmFacts(n, f"seal-{event_id}", "tamper", "critical", "open", T0, 1, []) for n, event_id in enumerate(ids)
    ]
    checks = [Check("事件", "events", False, f"{'事' * (n % 40)}{event_id}") for n, event_id in enumerate(ids)]
    text = pdf_text(render_report(facts(events=events.items, alarms=alarms, checks=checks)))
    assert {event_id: text.count(event_id) for event_id in ids} == dict.fromkeys(ids, 3)


def test_timeline_cells_wrap_within_their_column_and_keep_every_character() -> None:
    from reportlab.pdfbase.pdfmetrics import stringWidth

    from server.export.report_timeline import wrap
    from server.notices.fonts import find_font, register_font
    from server.pdf_glyphs import Glyphs

    font = register_font(find_font(None))
    glyphs = Glyphs(font)
    texts = [
        "警告播放失败：zh 失败（Error opening PCM device. -- CODE: -22 -- MSG: Invalid argument）",
        "snapshots/" + "e" * 64 + ".jpg and more words after it",
        "很长的说明" * 30 + "\nsecond paragraph",
        "",
    ]
    for text in texts:
        for width in (40.0, 80.0, 190.0):
            lines = wrap(text, glyphs, width).split("\n")
            assert all(stringWidth(line, font, 7) <= width + 0.01 for line in lines), (text, width, lines)
            assert "".join("".join(lines).split()) == "".join(text.split())
