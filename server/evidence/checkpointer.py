"""The periodic worker that signs a checkpoint of the Merkle log whenever it has grown since the last one."""

from __future__ import annotations

import logging
from collections.abc import Callable

from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.core.rounds import RoundLoop
from server.evidence.checkpoints import LogKey
from server.evidence.errors import CheckpointRefused
from server.evidence.log import make_checkpoint

logger = logging.getLogger(__name__)


class Checkpointer:
    """Every ``interval_s``, signs and stores a checkpoint if the log grew (:func:`make_checkpoint`); then calls
    ``on_signed`` (the time stamper's wake-up) with its tree size. A refusal to sign (the database's tree contradicts
    a checkpoint the key signed: :mod:`server.evidence.signed_record`) is logged by :func:`make_checkpoint` and
    counted in ``seal_log_checkpoints_refused_total{reason}`` at every round until an operator deals with it."""

    def __init__(
        self,
        session_factory: SessionFactory,
        key: LogKey,
        *,
        interval_s: float,
        on_signed: Callable[[int], object] | None = None,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._session_factory = session_factory
        self._key = key
        self._on_signed = on_signed
        self._loop = RoundLoop("log-checkpointer", self.run_once, interval_s)

    def run_once(self) -> int | None:
        """Make a checkpoint if the log grew; its tree size, or ``None``."""
        with self._session_factory() as session:
            try:
                row = make_checkpoint(session, self._key)
            except CheckpointRefused as exc:
                if self._metrics is not None:
                    self._metrics.count_checkpoint_refused(exc.kind)
                return None
            if row is None:
                return None
            session.commit()
            logger.info("log checkpoint signed at tree size %d", row.tree_size)
            size = row.tree_size
        if self._on_signed is not None:
            self._on_signed(size)
        return size

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()
