"""The Prometheus text of alarms, notifications and chain refusals."""

from __future__ import annotations

from server.core.metrics import IngestMetrics
from server.ingest.results import Reason
from tests.prometheus import samples


def test_alarm_and_notification_metrics_are_rendered() -> None:
    metrics = IngestMetrics()
    metrics.set_alarms_live({"intrusion": 2, "offline": 1, "tamper": 0})
    metrics.count_notification(delivered=True, final=False)
    metrics.count_notification(delivered=False, final=False)
    metrics.count_notification(delivered=False, final=True)
    metrics.count_rejected(Reason.BROKEN_CHAIN.value)

    text = metrics.exposition(seals_online=3, seals_total=4, broker_connected=True, reasons=[r.value for r in Reason])
    lines = set(text.splitlines())

    assert {
        'seal_alarms_live{kind="intrusion"}': 2,
        'seal_alarms_live{kind="offline"}': 1,
        'seal_alarms_live{kind="tamper"}': 0,
        "seal_notifications_sent_total": 1,
        "seal_notification_attempts_failed_total": 2,
        "seal_notifications_failed_total": 1,
        'seal_messages_rejected_total{reason="broken_chain"}': 1,
        "seal_seals_online": 3,
    }.items() <= samples(text).items()
    assert "# TYPE seal_alarms_live gauge" in lines
