"""The evidence report's words: what each kind of event says, in Chinese and English, and the warning's outcome as
the seal signed it (never better than it was). The tokens the case page words too (a command's action, state and
refusal reason, an alarm's kind and state, a removal request's state and steps) take the same words, from the
pages' catalogue (:func:`server.words.words`); a removal request's ground, its label (:mod:`server.removal.grounds`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from seal_protocol import parse_ts
from server.commands.refusals import OWN_BYTES_SECTION
from server.core.court_clock import court_clock
from server.removal.grounds import RemovalGround
from server.words import words

#: The events the timeline lists one by one; every other type is counted (heartbeats per seal and day).
TIMELINE_TYPES = frozenset(
    {
        "intrusion",
        "tamper",
        "command_ack",
        "command_rejected",
        "armed",
        "disarmed",
        "warning_result",
        "outbox_full",
        "agent_started",
        "camera_blind",
        "camera_recovered",
        "camera_lost",
        "camera_found",
        "event_lost",
        "clock_stepped",
        "snapshot_lost",
        "sensor_flapping",
        "sensor_normal",
        "sensor_stuck",
        "sensor_unstuck",
    }
)

EVENT_NAMES: dict[str, tuple[str, str]] = {
    "intrusion": ("有人进入（人体感应）", "intrusion (motion sensor)"),
    "tamper": ("封条外壳被打开或线路被剪断", "tamper (enclosure opened or wire cut)"),
    "command_ack": ("执行法院指令", "court command executed"),
    "command_rejected": ("拒绝法院指令", "court command refused"),
    "armed": ("布防", "armed"),
    "disarmed": ("撤防", "disarmed"),
    "warning_result": ("语音警告的结果", "outcome of a spoken warning"),
    "outbox_full": ("存储已满，删除部分快照", "store full: snapshots thinned"),
    "agent_started": ("封条程序启动", "seal software started"),
    "camera_blind": ("摄像头被遮挡或画面冻结", "camera blind (covered or frozen)"),
    "camera_recovered": ("摄像头恢复", "camera recovered"),
    "camera_lost": ("摄像头无画面", "camera lost"),
    "camera_found": ("摄像头重新出画", "camera found again"),
    "heartbeat": ("心跳", "heartbeat"),
    # Its not_stored may list every picture: "stored" would say what the seal signed it could not do.
    "snapshot_taken": ("抓拍结果（存储或未能存储）", "snapshots' outcome (stored or not)"),
    "event_lost": ("事件未能记录（已丢失）", "event lost (could not be recorded)"),
    "clock_stepped": ("封条时钟跳变", "seal clock stepped"),
    "sensor_flapping": ("传感器抖动（触发已合并计数）", "sensor flapping (edges merged and counted)"),
    "sensor_normal": ("传感器恢复正常", "sensor normal again"),
    "sensor_stuck": ("传感器卡滞（持续报有人）", "sensor stuck (motion without end)"),
    "sensor_unstuck": ("传感器卡滞解除", "sensor no longer stuck"),
    # Signed for a picture the court had not receipted, which it may have received: no word on what the court holds.
    "snapshot_lost": (
        "封条上的快照副本丢失（法院回执前）",
        "the seal's copy of a snapshot lost (before a court receipt)",
    ),
}

#: Why a seal could not record an event (``event_lost``'s ``reason``).
LOST_REASONS: dict[str, tuple[str, str]] = {
    "outbox_refused": ("封条存储拒收", "refused by the seal's store"),
    "oversized": ("事件过大", "event too large"),
    "invalid_payload": ("事件内容无效", "invalid event content"),
    "internal_error": ("封条程序错误", "seal software error"),
    "outbox_damaged": ("封条存储文件损坏", "the seal's store file was damaged"),
    "outbox_deleted": (
        "封条存储文件在运行中被删除（已从打开的数据库写回，无事件丢失）",
        "the seal's store file was deleted while in use (written back, nothing lost)",
    ),
    "outbox_replaced": (
        "封条存储文件在运行中被替换（已写回，原处文件另存）",
        "the seal's store file was replaced while in use (written back, the other file kept aside)",
    ),
}

#: Why a seal lost a queued snapshot (``snapshot_lost``'s ``reason``, ``docs/protocol.md``).
SNAPSHOT_LOST_REASONS: dict[str, tuple[str, str]] = {
    "missing": ("文件已不存在", "missing: its file is gone"),
    "corrupt": ("文件已损坏（内容与其哈希值不符）", "corrupt: its bytes no longer hash to its name"),
    "oversized": ("文件超过大小上限", "oversized: over the size limit"),
    "unreadable": ("文件无法读取", "unreadable: the file cannot be read"),
    "never_stored": ("未能存储（存储前断电或崩溃）", "never stored: the seal stopped first"),
}

WARNING_WORDS: dict[str, tuple[str, str]] = {
    "played": ("警告已播放", "warning played"),
    "failed": ("警告播放失败", "warning failed"),
    "stopped": ("警告被中止（未播完）", "warning stopped before it finished"),
    "busy": ("未另行警告（前一警告仍在播放）", "no new warning (one was already playing)"),
    "started": ("警告已开始播放", "warning started"),
    "suppressed_disarmed": ("未警告（已撤防）", "no warning (disarmed)"),
    "suppressed_cooldown": ("未警告（冷却期内）", "no warning (cool-down)"),
    "deferred_cooldown": ("冷却期内，警告推迟至冷却期结束", "warning deferred to the end of the cool-down"),
    "suppressed_not_seen": ("未警告（摄像头未见人）", "no warning (camera saw no one)"),
    "pending_confirmation": ("待摄像头确认后决定是否警告", "warning awaiting the camera's confirmation"),
}

LANGUAGE_RESULT: dict[str, tuple[str, str]] = {
    "played": ("已播放", "played"),
    "failed": ("失败", "failed"),
    "stopped": ("中止", "stopped"),
    "playing": ("播放中", "playing"),
    "queued": ("待播放", "queued"),
}


#: Characters of free text (a seal's reason, a person's note) one cell shows, so that one text does not fill pages of
#: the report (a longer cell would split across them: :class:`~server.pdf_layout.TextCell`); the full text is in the
#: bundle's file the cell names.
CLIP = 400


#: C0 and C1 control characters, DEL and the Unicode line and paragraph separators: a seal may sign any of them in
#: its text, and a ``\n`` would start a line of the report's cell of its own (:func:`server.pdf_layout.text_lines`),
#: where the seal's words could pass for the court's.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SHOWN = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def plain(text: str) -> str:
    """A seal's signed ``text`` with each control character (``_CONTROL``) shown as a visible escape: ``\\n``,
    ``\\r``, ``\\t``, else ``\\xNN`` / ``\\uNNNN``; one line of the report's cell, as the seal signed it."""
    return _CONTROL.sub(lambda m: _SHOWN.get(m.group(), _escape(m.group())), text)


def _escape(char: str) -> str:
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def clip(text: str, where: str, limit: int = CLIP) -> str:
    """``text``, cut to ``limit`` characters with a pointer to the file holding all of it."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…（全文见 {where} / full text in {where}）"


def as_utc(moment: datetime) -> datetime:
    """``moment`` with a zone: a naive one is taken as UTC (as the database keeps times), never as local time."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def sort_time(moment: datetime | None) -> float:
    """A key ordering times, naive (UTC) and aware alike; none first."""
    return as_utc(moment).timestamp() if moment is not None else float("-inf")


#: The zone of every time the report gives (the court's clock: :func:`~server.core.court_clock.court_clock`), said
#: in the header of each column, and beside each row, of times.
ZONE_ZH, ZONE_EN = "（UTC+8）", " (UTC+8)"


def timed(zh: str, en: str) -> tuple[str, str]:
    """A header of times, with their zone: ``法院收到（UTC+8）`` / ``received (UTC+8)``."""
    return zh + ZONE_ZH, en + ZONE_EN


def event_name(kind: str) -> tuple[str, str]:
    return EVENT_NAMES.get(kind, (kind, kind))


#: The mark of an event a simulated seal signed (``"simulated": true``, docs/protocol.md, "Simulated seals"), and
#: what it means: the presences and lid openings of ``seal-agent simulate`` never happened on a site.
SIMULATED = ("模拟事件", "simulated")
SIMULATED_MEANING = (
    "模拟封条所签（seal-agent simulate，模拟引脚），并非现场实际发生",
    "signed by a simulated seal (seal-agent simulate, mock pins): it did not happen on site",
)


def ground_words(ground: str) -> tuple[str, str]:
    """A removal request's ground in Chinese and English (the token itself if it names none we know)."""
    try:
        label = RemovalGround(ground).label
    except ValueError:
        return ground, ground
    return label.zh, label.en


def warning_words(payload: Mapping[str, Any]) -> tuple[str, str] | None:
    """The warning of an event's payload as the seal signed it, per language with the reason of a failure; ``None``
    if the payload names no warning."""
    warning = payload.get("warning")
    if not isinstance(warning, str):
        return None
    zh, en = WARNING_WORDS.get(warning, (f"警告：{warning}", f"warning: {warning}"))
    languages = payload.get("warning_languages")
    if isinstance(languages, Sequence) and not isinstance(languages, str | bytes):
        parts_zh, parts_en = [], []
        for item in languages:
            if not isinstance(item, Mapping):
                continue
            result = str(item.get("result"))
            rzh, ren = LANGUAGE_RESULT.get(result, (result, result))
            lzh, len_ = _said("warning_language", item.get("language"))
            reason = f"（{item['reason']}）" if item.get("reason") else ""
            parts_zh.append(f"{lzh} {rzh}{reason}")
            parts_en.append(f"{len_} {ren}" + (f" ({item['reason']})" if item.get("reason") else ""))
        if parts_zh:
            zh += "：" + "；".join(parts_zh)
            en += ": " + "; ".join(parts_en)
    return zh, en


def outcome_words(result: Mapping[str, Any] | None) -> tuple[str, str]:
    """The outcome a ``warning_result`` event reported for a warning that had ``started`` (or was
    ``deferred_cooldown``)."""
    if result is None:
        return "结果：未收到 warning_result 事件", "outcome: no warning_result event received"
    words = warning_words(result) or ("结果不明", "outcome unknown")
    return "结果：" + words[0], "outcome: " + words[1]


def event_details(kind: str, payload: Mapping[str, Any], *, own_command: bool = False) -> tuple[str, str]:
    """What an event of type ``kind`` says beyond its name, in Chinese and English (without the warning).
    ``own_command``: a ``command_rejected`` of bytes the seal could not verify is of the court's own command (its
    ``sha256`` is that of the bytes the court published as the id it claims): the seal refused that command."""
    if kind == "command_ack":
        azh, aen = words("case_command_action", str(payload.get("action")))
        rzh, ren = words("case_command_result", str(payload.get("result")))
        return f"指令 {payload.get('command_id')} {azh} → {rzh}", f"command {payload.get('command_id')} {aen} → {ren}"
    if kind == "command_rejected":
        rzh, ren = words("case_command_reason", str(payload.get("reason")))
        detail = f": {payload['detail']}" if payload.get("detail") else ""
        if own_command and payload.get("command_id") is None:
            claimed, reason = payload.get("claimed_command_id"), str(payload.get("reason"))
            ozh, oen = words(OWN_BYTES_SECTION, reason)
            return f"指令 {claimed}：{ozh}", f"command {claimed}: {oen}{detail}"
        if payload.get("command_id") is None and payload.get("claimed_command_id") is not None:
            claimed = payload["claimed_command_id"]  # bytes no court key signed: their id is nobody's word
            return f"未经验证的指令（自称 {claimed}）：{rzh}", f"unverified command (claiming {claimed}): {ren}{detail}"
        return f"指令 {payload.get('command_id')}：{rzh}", f"command {payload.get('command_id')}: {ren}{detail}"

    if kind in {"armed", "disarmed"}:
        rzh, ren = armed_reason_words(payload.get("reason"))
        return f"原因：{rzh}，指令 {_v(payload.get('by'))}", f"reason: {ren}, command {_v(payload.get('by'))}"
    if kind == "warning_result":
        tzh, ten = _said("event_name", payload.get("trigger"))
        return (
            f"针对序号 {_v(payload.get('trigger_seq'))} 的“{tzh}”事件",
            f"for the {ten} event seq {_v(payload.get('trigger_seq'))}",
        )
    if kind == "outbox_full":
        thinned, unsent = payload.get("thinned"), payload.get("thinned_unsent")
        return (
            f"删除 {thinned} 张快照，其中 {unsent} 张法院未收到",
            f"{thinned} snapshots thinned, {unsent} of them never reached the court",
        )
    if kind == "snapshot_lost":
        sha = str(payload.get("snapshot"))[:16]
        wzh, wen = snapshot_lost_words(payload.get("reason"))
        return f"快照 {sha}… 丢失，原因：{wzh}", f"snapshot {sha}… lost: {wen}"
    if kind == "event_lost" and payload.get("reason") == "outbox_damaged":
        seqs = payload.get("lost_seqs")
        ranges = (
            ", ".join(f"{r[0]}–{r[1]}" for r in seqs if isinstance(r, list) and len(r) == 2)
            if isinstance(seqs, list)
            else ""
        )
        return (
            f"封条存储文件损坏，无法读出的事件序号：{ranges or '无'}",
            f"the seal's store file was damaged; event seqs that could not be read: {ranges or 'none'}",
        )
    if kind == "event_lost" and payload.get("reason") in ("outbox_deleted", "outbox_replaced"):
        zh, en = LOST_REASONS[str(payload["reason"])]
        return f"{zh}：{payload.get('detail')}", f"{en}: {payload.get('detail')}"
    if kind == "event_lost":
        lost_zh, lost_en = event_name(str(payload.get("lost_type")))
        reason = str(payload.get("reason"))
        rzh, ren = LOST_REASONS.get(reason, (reason, reason))
        at = court_time(payload.get("lost_ts"))
        detail = f"：{payload['detail']}" if payload.get("detail") else ""
        return (
            f"{at} 的“{lost_zh}”事件未能记录，原因：{rzh}{detail}",
            f"the {lost_en} event of {at} could not be recorded: {ren}" + (f": {payload['detail']}" if detail else ""),
        )
    if kind in {"intrusion", "tamper"}:
        shots = payload.get("snapshots")
        count = len(shots) if isinstance(shots, list) else 0
        czh, cen = _said("seal_value", payload.get("camera"), prefix="camera_")
        zh, en = f"摄像头：{czh}，快照 {count} 张", f"camera: {cen}, {count} snapshots"
        if payload.get("detected_by") == "level_check":  # its edge was lost: stamped when caught, not at the edge
            since = court_time(payload.get("not_before"))
            zh, en = f"{zh}；电平检查补报，最早于 {since}", f"{en}; caught by the level check, not before {since}"
        return zh, en
    if kind == "clock_stepped":
        return clock_step_words(payload)
    if kind.startswith("camera_"):  # camera_recovered and camera_found name no reason
        return _said("camera_reason", payload["reason"]) if payload.get("reason") is not None else ("", "")
    return "", ""


def _said(section: str, token: object, *, prefix: str = "") -> tuple[str, str]:
    """A token a seal signed in the words of the catalogue's ``section`` (``<section>.<prefix><token>``; an event
    type: :func:`event_name`): ``—`` for none, one without words as signed (control characters shown: :func:`plain`,
    cut to 120 characters)."""
    if token is None:
        return "—", "—"
    if isinstance(token, str):
        said = event_name(token) if section == "event_name" else words(section, prefix + token)
        if said != (token, token) and said != (prefix + token, prefix + token):
            return said
    shown = clip(plain(str(token)), "events.jsonl", 120)
    return shown, shown


def armed_reason_words(reason: object) -> tuple[str, str]:
    """Why a seal's armed state changed (``armed``/``disarmed``'s ``reason``): ``court command 12`` → 法院指令 12, or
    the catalogue's ``armed_reason`` words (``local``, ``new_case``)."""
    if isinstance(reason, str) and (number := re.fullmatch(r"court command (\d+)", reason)):
        return f"法院指令 {number.group(1)}", f"court command {number.group(1)}"
    return _said("armed_reason", reason)


def snapshot_lost_words(reason: object) -> tuple[str, str]:
    """A ``snapshot_lost``'s ``reason`` in Chinese and English; one we do not know as the seal signed it (``—`` for
    none; control characters shown as escapes: :func:`plain`), cut to 120 characters (the cell is plain text:
    nothing in it is markup)."""
    text = _v(reason)
    known = SNAPSHOT_LOST_REASONS.get(text)
    if known is not None:
        return known
    shown = clip(plain(text), "events.jsonl", 120)
    return shown, shown


def clock_step_words(payload: Mapping[str, Any]) -> tuple[str, str]:
    """A ``clock_stepped`` event: by how much, from when to when, and what it means for the events before it."""
    step = payload.get("step_ms")
    if type(step) is not int:
        return f"跳变 {_v(step)}", f"step {_v(step)}"
    amount, size = step_words(step), step_words(abs(step))[1:]
    before, after = court_time(payload.get("before")), court_time(payload.get("after"))
    zh, en = f"封条时钟跳变 {amount}（{before} → {after}）", f"seal clock stepped {amount} ({before} → {after})"
    if payload.get("synced") is True:  # stepped to a synchronised clock: the time before it was the wrong one
        zh += f"；此后时钟已同步，此前的事件时间约{'偏早' if step > 0 else '偏晚'} {size}"
        en += f"; the clock is synchronised since, so the events before it were stamped about {size} " + (
            "early" if step > 0 else "late"
        )
    else:  # a step away from the true time is a step too: the seal cannot tell which side was right
        state = "时钟仍未同步" if payload.get("synced") is False else "时钟同步状态未知"
        zh += f"；此前与此后的事件时间相差 {size}，{state}，封条无从判断哪一方正确"
        en += (
            f"; the events before and after it differ by {size} in the seal's clock, which was "
            + ("not synchronised" if payload.get("synced") is False else "of unknown sync state")
            + ": the seal cannot tell which side was right"
        )
    return zh, en


def step_words(step_ms: int) -> str:
    """A signed clock step for people: ``+3 d 0 h 0 min 0.000 s``, ``-2.500 s``."""
    sign, ms = ("+" if step_ms >= 0 else "-"), abs(step_ms)
    days, rest = divmod(ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest // 1000}.{rest % 1000:03d} s"
    if days:
        return f"{sign}{days} d {hours} h {minutes} min {seconds}"
    if hours:
        return f"{sign}{hours} h {minutes} min {seconds}"
    return f"{sign}{minutes} min {seconds}" if minutes else f"{sign}{seconds}"


def court_time(ts: object) -> str:
    """An envelope-style ``ts`` as court time; the text itself if it is none."""
    try:
        return court_clock(parse_ts(str(ts)))
    except ValueError:
        return _v(ts)


def _v(value: object) -> str:
    """A payload value as printed: ``—`` for none."""
    return "—" if value is None else str(value)
