"""What a running server holds: settings, database, metrics, the court's command key, the log's signing key, the
notice key, the stores of snapshots and removal proofs, the pages' live bus and the court's live feed, the MQTT ingest,
the command dispatcher and whether the court is receiving from its seals. Built by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine

from server.commands.dispatcher import CommandDispatcher
from server.commands.keys import CourtKey
from server.config import Settings
from server.core.db import SessionFactory
from server.core.live import LiveHub
from server.core.live_feed import LiveFeed
from server.core.metrics import IngestMetrics
from server.core.receiving import CourtReceiving
from server.evidence.checkpoints import LogKey
from server.ingest.mqtt import MqttIngest
from server.notices.keys import NoticeKey
from server.stores import Stores


@dataclass
class ServerContext:
    settings: Settings
    engine: Engine
    session_factory: SessionFactory
    metrics: IngestMetrics
    court_key: CourtKey
    log_key: LogKey
    notice_key: NoticeKey
    stores: Stores
    live: LiveHub = field(default_factory=LiveHub)
    ingest: MqttIngest | None = None
    dispatcher: CommandDispatcher | None = None
    feed: LiveFeed | None = None
    #: Is the court receiving from its seals? (what the live pages say: :mod:`server.core.receiving`)
    receiving: CourtReceiving = field(default_factory=CourtReceiving)

    @property
    def broker_connected(self) -> bool:
        return self.ingest is not None and self.ingest.connected
