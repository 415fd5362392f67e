"""The court's words for a seal's damaged outbox (``event_lost`` with reason ``outbox_damaged``): the seq ranges
that could not be read, in Chinese first, then English."""

from __future__ import annotations

from server.export.report_text import event_details


def test_an_outbox_damaged_loss_names_its_seq_ranges() -> None:
    payload = {
        "lost_type": None,
        "lost_ts": "2026-12-07T03:00:00.000Z",
        "reason": "outbox_damaged",
        "detail": "database disk image is malformed; damaged file kept as outbox.sqlite.damaged-20261207T030000Z",
        "lost_seqs": [[29, 32], [40, 40]],
        "lost_snapshot_ids": [],
        "lost_other_rows": False,
    }
    zh, en = event_details("event_lost", payload)
    assert zh == "封条存储文件损坏，无法读出的事件序号：29–32, 40–40"
    assert en == "the seal's store file was damaged; event seqs that could not be read: 29–32, 40–40"


def test_an_outbox_written_back_says_nothing_was_lost() -> None:
    payload = {
        "lost_type": None,
        "lost_ts": "2026-12-07T03:00:00.000Z",
        "reason": "outbox_deleted",
        "detail": "outbox.sqlite was deleted (or moved away) while in use; written back from the open database, "
        "nothing lost",
        "lost_seqs": [],
        "lost_snapshot_ids": [],
        "lost_other_rows": False,
    }
    zh, en = event_details("event_lost", payload)
    assert zh.startswith("封条存储文件在运行中被删除") and "无事件丢失" in zh
    assert en.startswith("the seal's store file was deleted while in use") and en.endswith("nothing lost")
    assert "could not be recorded" not in en  # it is not the loss of an event of type None
