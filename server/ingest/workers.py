"""``seal-server ingest --workers N``: the ingest alone (no web pages, no API), in N processes sharing the stream.

    seal-server ingest --config FILE [--workers N]

Each worker is its own process (its own interpreter, so its own core) with its own MQTT client id
(``<client_id>-ingest-<i>``, each a persistent session) subscribed through the MQTT v5 shared subscription
``$share/<[mqtt] shared_group>/seal/v1/+/…``: the broker hands each message to one of them. More processes on other
machines join the same group with the same configuration. ``seal-server run`` with the same ``shared_group`` is one
more member (and the one that serves the pages, checks liveness, sends commands and notifications).

Each worker publishes what its batches commit on the court's live feed (``[live] feed``, :mod:`server.core.live_feed`:
one message per committed batch at most, never waited for), so that the pages of ``seal-server run`` show it live, and
serves its own Prometheus ``/metrics`` on ``[ingest] metrics_host``:``metrics_port + i - 1`` (worker ``i``, from 1)
if ``metrics_port`` is set; a port of these that is taken stops the command before any worker starts.

The ingest does not migrate: before any worker connects, the command refuses (one line, exit status 2) a database
whose schema is not its code's — one behind (``seal-server init-db`` first) or a newer release's — where each worker
would fail every message it took (docs/deploy.md, "Upgrading several machines").

Several workers need ``[mqtt] shared_group``; ``[mqtt] gap_wait_s`` (a second or so) keeps an event that reaches one
worker before its predecessor reaches another from raising a ``missing_events`` alarm. SIGTERM or SIGINT stops every
worker after the batch in hand; what is unacknowledged stays with the broker. A worker whose parent is gone (killed
with SIGKILL, say) stops the same way (:mod:`server.core.parent_watch`). A worker taken away for good stays a
member of the group in its session until ``[mqtt] session_expiry_s``: ``seal-server end-sessions``
(:mod:`server.ingest.sessions`) ends it.
"""

from __future__ import annotations

import argparse
import gc
import logging
import multiprocessing
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from multiprocessing import resource_tracker
from pathlib import Path
from types import FrameType
from typing import Any

from server.commands.keys import CourtKey
from server.config import Settings, load_settings
from server.core.db import make_engine, make_session_factory
from server.core.live import Change
from server.core.live_feed import LiveFeed
from server.core.metrics import IngestMetrics
from server.core.metrics_http import MetricsEndpoint, check_can_listen
from server.core.parent_watch import stop_when_parent_ends
from server.core.stop_signals import (
    STOP_SIGNALS,
    StopFlag,
    stop_signals_blocked,
    unblock_stop_signals,
    wait_for_stop,
)
from server.errors import ConfigError
from server.ingest.changes import live_changes
from server.ingest.gap_wait import gap_round
from server.ingest.ingestor import Ingestor, verifier_for
from server.ingest.mqtt import MqttIngest
from server.ingest.results import Reason
from server.logs import configure_logging
from server.stores import Stores

logger = logging.getLogger(__name__)
#: The longest a worker waits between its rounds of due gaps (a long gap_wait_s is looked at this often).
GAP_ROUND_MAX_S = 15.0

MAX_WORKERS = 64


def add_ingest_command(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "ingest",
        parents=[common],
        help="只接收封条消息（无网页、无接口），可多进程分担 / ingest seal messages only, in N worker processes",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help=f"worker processes (1 to {MAX_WORKERS}; more than one needs [mqtt] shared_group)",
    )


def run_ingest(args: argparse.Namespace, settings: Settings, *, check_schema: Callable[[], None]) -> int:
    """Run ``args.workers`` ingest workers until SIGTERM/SIGINT; 0 if every worker stopped cleanly. Before any starts,
    ``check_schema`` raises :class:`~server.errors.SchemaMismatch` unless the database's schema is this code's: the
    ingest does not migrate (``seal-server init-db`` does, once for every machine), and a worker against another
    schema would fail every message it took from the stream."""
    workers = int(args.workers)
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"--workers: 1 to {MAX_WORKERS}, not {workers}")
    if workers > 1 and settings.mqtt.shared_group is None:
        raise ConfigError(
            "多个接收进程需要共享订阅：请设置 [mqtt] shared_group / several workers need [mqtt] shared_group "
            "(otherwise each would take every message)"
        )
    if settings.mqtt.shared_group is not None and settings.mqtt.gap_wait_s == 0:
        logger.warning("[mqtt] gap_wait_s is 0: events split between workers may raise passing missing_events alarms")
    _check_metrics_ports(settings, workers)
    Stores.from_settings(settings).check()  # a bucket that cannot be used stops the ingest before it starts
    check_schema()
    if workers == 1:
        with _stop_on_signals() as stop:
            return run_worker(settings, stop, role="ingest-1", index=1)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads or connections inherited
    level, log_format = args.log_level or "INFO", args.log_format or "text"
    processes = [
        context.Process(target=_worker_main, args=(args.config, i, level, log_format), name=f"ingest-{i}", daemon=False)
        for i in range(1, workers + 1)
    ]
    # The spawn start runs multiprocessing's resource tracker first, which unblocks the stop signals once it has
    # started it (CPython 3.11): started before they are blocked for the workers, it cannot unblock them.
    resource_tracker.ensure_running()
    with _stop_on_signals() as stop:
        try:
            for process in processes:
                with stop_signals_blocked():  # the worker takes them once it can stop (_worker_main)
                    process.start()
            logger.info("%d ingest workers started in the shared group %s", workers, settings.mqtt.shared_group)
            while not wait_for_stop(stop, 0.5):
                if any(not p.is_alive() for p in processes):
                    logger.error("an ingest worker ended; stopping the others")
                    break
        finally:
            for process in processes:
                if process.is_alive() and process.pid is not None:
                    process.terminate()  # SIGTERM: the worker finishes its batch
            for process in processes:
                process.join(30)
    codes = [p.exitcode for p in processes]
    logger.info("ingest workers stopped (exit codes %s)", codes)
    return 0 if all(code == 0 for code in codes) else 1


def _check_metrics_ports(settings: Settings, workers: int) -> None:
    """Raise :class:`ConfigError` naming the first worker whose metrics port (``[ingest] metrics_port`` + its index
    - 1) cannot be listened on, before any worker starts: else that worker would fail as it started, and every
    other be stopped after starting for nothing."""
    port = settings.ingest.metrics_port
    if port is None:
        return
    if port + workers - 1 > 65535:
        raise ConfigError(f"[ingest] metrics_port {port}: worker {workers} would need port {port + workers - 1}")
    for index in range(1, workers + 1):
        try:
            check_can_listen(settings.ingest.metrics_host, port + index - 1)
        except ConfigError as exc:
            raise ConfigError(
                f"接收进程 {index} 无法监听其指标端口，未启动任何接收进程 / ingest worker {index} cannot listen on its "
                f"metrics port, no worker started: {exc}"
            ) from None


def _worker_main(config: Path, index: int, level: str, log_format: str) -> None:
    """A worker process. A stop signal that came while it started (they were blocked) or comes until it has ended
    stops it: a Ctrl-C or systemd's stop reaches it as well as its parent, which then sends SIGTERM too. So does its
    parent's end, however it ended (killed, it sends nothing): orphaned, it would run on with its client id."""
    stop = StopFlag()
    _on_signals(stop.set)  # for good: a second stop signal must not kill it as it ends (exit status -15)
    configure_logging(level, log_format=log_format)
    stop_when_parent_ends(stop)
    unblock_stop_signals()
    try:
        code = run_worker(load_settings(config), stop, role=f"ingest-{index}", index=index)
    except ConfigError as exc:  # as seal-server's main says it: one line, exit status 2
        logger.error("%s", exc)
        code = 2
    raise SystemExit(code)


def run_worker(settings: Settings, stop: StopFlag, *, role: str, index: int = 1) -> int:
    """One worker (the ``index``-th, from 1), in this process, until ``stop`` is set."""
    engine = make_engine(settings.database_url, ping_after_idle=True)  # the ingest's alone: it retries a batch
    metrics = IngestMetrics(seal_gauges=False)
    feed = LiveFeed(settings.mqtt, metrics=metrics, role=role) if settings.live.feed else None
    endpoint: MetricsEndpoint | None = None
    try:
        session_factory = make_session_factory(engine)
        stores = Stores.from_settings(settings, on_mismatch=metrics.count_content_mismatch)
        stores.remove_leftovers(metrics)  # what writes a crash cut short left (the other workers' writes spared)
        ingestor = Ingestor(
            session_factory,
            metrics=metrics,
            snapshots=stores.snapshots,
            alarms=settings.alarms,
            on_commit=(lambda results, alarms: feed.send(live_changes(results, alarms))) if feed is not None else None,
            gap_wait_s=settings.mqtt.gap_wait_s,
            verifier=verifier_for(settings.mqtt, metrics),
            ingest=settings.ingest,
        )
        ingest = MqttIngest(settings.mqtt, ingestor, court_key=CourtKey(settings.commands), role=role)
        endpoint = _metrics_endpoint(settings, index, metrics, ingest)
        gc.collect()  # start-up's garbage freed first, then what is left (it lives as long as the process) is
        gc.freeze()  # moved out of the full collections' way
        if feed is not None:
            feed.start()
        ingest.start()
        logger.info("ingest worker %s running", role)
        # Gaps of seals that then fall silent are raised here too: no `seal-server run` (its liveness round) may be up.
        gap_wait = timedelta(seconds=settings.mqtt.gap_wait_s)
        while not wait_for_stop(stop, timeout=min(max(settings.mqtt.gap_wait_s, 1.0), GAP_ROUND_MAX_S)):
            raised = gap_round(session_factory, gap_wait=gap_wait, forget_s=settings.liveness.mark_forget_s)
            if raised and feed is not None:  # the pages' live bus, as the liveness round's are (server.app)
                feed.send(Change("alarm", device_id) for device_id in raised)
        ingest.stop()
    finally:
        if feed is not None:  # after the ingest's last batch: its changes are sent on
            feed.stop()
        if endpoint is not None:
            endpoint.stop()
        engine.dispose()
    return 0


def _metrics_endpoint(
    settings: Settings, index: int, metrics: IngestMetrics, ingest: MqttIngest
) -> MetricsEndpoint | None:
    """Worker ``index``'s /metrics, started, or ``None`` (a warning) without ``[ingest] metrics_port``."""
    port = settings.ingest.metrics_port
    if port is None:
        logger.warning("[ingest] metrics_port is not set: this worker's metrics are not served")
        return None
    endpoint = MetricsEndpoint(
        settings.ingest.metrics_host,
        port + index - 1,
        metrics,
        broker_connected=lambda: ingest.connected,
        progress=ingest.progress,
        reasons=[reason.value for reason in Reason],
    )
    endpoint.start()
    return endpoint


@contextmanager
def _stop_on_signals() -> Iterator[StopFlag]:
    """A flag that SIGINT or SIGTERM sets while in the block."""
    stop = StopFlag()
    previous = _on_signals(stop.set)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _on_signals(handler: Callable[[], None]) -> dict[int, Any]:
    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        handler()

    return {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
