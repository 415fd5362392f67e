"""The evidence report says the zone of every time it gives (the court's clock, UTC+8) in the header of each column
or row of times, and words each token a seal signs in the timeline (the camera's state, why its armed state changed,
what a warning's outcome was for, why a camera went blind or lost, a warning's language), never the token raw —
read back with pdftotext, as tests/server/test_report_pdf.py reads it."""

from __future__ import annotations

from datetime import timedelta

from server.export.report import render_report
from tests.server.test_report_pdf import T0, Events, busy_case, facts, pdf_text


def test_every_header_of_times_says_their_zone() -> None:
    text = pdf_text(render_report(busy_case()))
    for header in (
        "时间范围（UTC+8）range(UTC+8)",
        "登记（UTC+8）enrolled(UTC+8)",
        "绑定本案（UTC+8）boundtothecase(UTC+8)",
        "封条时钟（UTC+8）",
        "seal'sclock(UTC+8)",
        "法院收到（UTC+8）",
        "received(UTC+8)",
        "日期（封条时钟，UTC+8）",
        "day(seal'sclock,UTC+8)",
        "首次（UTC+8）",
        "opened(UTC+8)",
        "处理经过（UTC+8）",
        "issued(UTC+8)",
        "申请时间（UTC+8）",
        "filed(UTC+8)",
        "时间（UTC+8）",
        "at(UTC+8)",
        "收到（UTC+8）",
        "法院时钟，UTC+8",  # an offline period's end, in its row
    ):
        assert header in text, header


def test_the_seal_s_tokens_in_the_timeline_are_in_words() -> None:
    events = Events()
    events.add("intrusion", T0, warning="played", warning_languages=[], camera="ok", snapshots=[])
    events.add("tamper", T0 + timedelta(minutes=1), state="open", warning="played", snapshots=[])  # no camera said
    events.add("intrusion", T0 + timedelta(minutes=2), warning="started", camera="unavailable", snapshots=[])
    events.add("warning_result", T0 + timedelta(minutes=3), trigger="intrusion", trigger_seq=3, warning="played")
    events.add("disarmed", T0 + timedelta(minutes=4), reason="court command 12", by=12)
    events.add("armed", T0 + timedelta(minutes=5), reason="local", by=None)
    events.add("camera_blind", T0 + timedelta(minutes=6), reason="uniform", after_ms=3000)
    events.add("camera_lost", T0 + timedelta(minutes=7), reason="read_stalled", after_ms=3000)
    events.add("camera_recovered", T0 + timedelta(minutes=8), down_ms=5000)
    text = pdf_text(render_report(facts(events=events.items)))
    timeline = text.split("事件时间线")[1].split("心跳")[0]
    for said in (
        "摄像头：正常，快照0张",
        "camera:OK,0snapshots",
        "摄像头：—，快照0张",  # absent: a dash, never "None"
        "camera:—,0snapshots",
        "摄像头：已配置但无法使用",
        "camera:Configured,cannotbeused",
        "针对序号3的“有人进入（人体感应）”事件",
        "fortheintrusion(motionsensor)eventseq3",
        "原因：法院指令12",
        "reason:courtcommand12",
        "原因：封条本地操作",
        "reason:ontheseal",
        "itself(local)",
        "画面为单一颜色（镜头可能被遮挡）",
        "uniformimage(thelensmaybecovered)",
        "读取画面停滞（无新画面）",
    ):
        assert said in timeline, said
    for raw in (
        "摄像头ok",
        "cameraok",
        "None",
        "摄像头unavailable",
        "cameraunavailable",
        "的intrusion事件",
        "原因local",
    ):
        assert raw not in timeline, raw


def test_a_warning_s_languages_are_named_in_words() -> None:
    events = Events()
    languages = [{"language": "zh", "result": "played", "reason": None}, {"language": "yue", "result": "failed"}]
    events.add("intrusion", T0, warning="failed", warning_languages=languages, camera="ok", snapshots=[])
    text = pdf_text(render_report(facts(events=events.items)))
    assert "警告播放失败：中文已播放；yue失败" in text and "warningfailed:Chineseplayed;yuefailed" in text


def test_every_token_the_timeline_words_has_words_in_both_languages() -> None:
    """The values the protocol gives these fields (docs/protocol.md) each have their words in the catalogue."""
    from server.words import catalogue

    wanted = {
        "seal_value": [
            "camera_none",
            "camera_unavailable",
            "camera_starting",
            "camera_ok",
            "camera_blind",
            "camera_lost",
        ],
        "camera_reason": ["uniform", "frozen", "read_failed", "read_stalled", "bad_frame"],
        "armed_reason": ["local", "new_case"],
        "warning_language": ["zh", "en"],
    }
    missing = [
        f"{s}.{v}"
        for s, values in wanted.items()
        for v in values
        if set(catalogue().get(f"{s}.{v}", {})) != {"zh", "en"}
    ]
    assert missing == []
