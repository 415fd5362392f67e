"""The composition root: :func:`create_app` wires settings, database, ingest and routes. Nothing at import time."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.api import api_router, metrics_router, public_router
from server.api.body_limit import BodyLimit, UploadPace, UploadRoute
from server.api.deps import api_uploader, page_uploader
from server.api.docs import add_docs
from server.api.health import receiving
from server.api.private_cache import PrivateApi
from server.api.removal_requests import UPLOAD_PATH, upload_limit
from server.auth.client_address import ProxyWarnings
from server.auth.errors import Forbidden, NotAuthenticated, TooManyAttempts
from server.commands.dispatcher import CommandDispatcher
from server.commands.keys import CourtKey
from server.config import Settings
from server.context import ServerContext
from server.core.db import SessionFactory, lost_a_race, make_engine, make_session_factory
from server.core.live import Change, LiveHub
from server.core.live_feed import LiveFeed
from server.core.metrics import IngestMetrics
from server.core.receiving import CourtReceiving
from server.core.unique import TAKEN_MEANWHILE, unique_violation
from server.errors import (
    AlreadyExists,
    BrokerFilesNotWritten,
    CommandsUnavailable,
    Conflict,
    ContentStoreError,
    Invalid,
    NotFound,
)
from server.evidence.checkpointer import Checkpointer
from server.evidence.checkpoints import LogKey
from server.evidence.errors import CheckpointRefused, LogKeyUnavailable, ProofError, TimestampFailed
from server.evidence.timestamps import Timestamper
from server.evidence.tsa import TsaClient
from server.export.errors import StoreAway
from server.ingest.changes import live_changes
from server.ingest.ingestor import Ingestor, verifier_for
from server.ingest.liveness import LivenessChecker
from server.ingest.mqtt import MqttIngest
from server.notices.errors import NoticesUnavailable
from server.notices.keys import NoticeKey
from server.notify.worker import NotificationWorker, webhook_worker
from server.removal.errors import IllegalTransition, ProofStorageFailed
from server.removal.settler import RemovalSettler
from server.stores import Stores
from server.web import web_router
from server.web.i18n import in_both_languages
from server.web.portal import PORTAL_UPLOAD_PATH
from server.web.routing import page_not_found
from server.web.upload_refusal import upload_refusal_page

logger = logging.getLogger(__name__)

#: At start, the pages wait this long at most for the live feed's subscription (a broker that answers: milliseconds).
FEED_START_WAIT_S = 2.0


def create_app(settings: Settings, *, with_ingest: bool = True, with_feed: bool | None = None) -> FastAPI:
    """The court server's ASGI app. Its lifespan opens the database and, if ``with_ingest``, runs the MQTT ingest,
    the liveness check, the notification worker, the command dispatcher (publishing and expiring commands), the
    log's checkpointer and the removal settler (woken by the ingest when a seal answers a command, or says it is
    armed). What the ingest and the liveness check commit is published on the pages' live bus (``app.state.live``)
    after the commit; with
    ``[live] feed`` (the default) the bus also shares its changes with the court's other processes over the broker,
    and shows theirs (:mod:`server.core.live_feed`). ``with_feed`` (default: ``with_ingest``) runs the feed without
    the ingest: a process that only serves pages. The settler is woken, too, when the feed says that another process
    stored a seal's answer or event (:func:`wake_on_seals`).

    The tables must exist (``seal-server init-db``).
    """
    hub = LiveHub(ring_size=settings.web.replay_size)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        session_factory = make_session_factory(engine)
        metrics = IngestMetrics()
        log_key = LogKey(settings.evidence.log_key_file, settings.evidence.log_origin)
        context = ServerContext(
            settings,
            engine,
            session_factory,
            metrics,
            court_key=CourtKey(settings.commands),
            log_key=log_key,
            notice_key=NoticeKey(settings.notices.key_file, settings.notices.retired_public_keys),
            stores=Stores.from_settings(settings, on_mismatch=metrics.count_content_mismatch),
            live=hub,
        )
        context.stores.remove_leftovers(metrics)  # what writes a crash cut short left (others' writes spared)
        workers: list[Worker] = []
        settler: RemovalSettler | None = None
        # The ingest's own connections, pinged only after an idle second: its transactions follow each other, and it
        # tries a batch again if its connection died meanwhile (server.core.db._ping_when_idle).
        ingest_engine = make_engine(settings.database_url, ping_after_idle=True) if with_ingest else None
        if ingest_engine is not None:
            settler = RemovalSettler(
                session_factory,
                interval_s=settings.removal.settle_interval_s,
                metrics=metrics,
                on_settled=lambda case_nos: hub.publish(Change("removal", case_no=case_no) for case_no in case_nos),
            )
            ingestor = Ingestor(
                make_session_factory(ingest_engine),
                metrics=metrics,
                snapshots=context.stores.snapshots,
                alarms=settings.alarms,
                on_answer=settler.wake,
                on_armed=settler.wake,  # a seal disarmed for a request may say it is armed again
                on_commit=lambda results, alarms: hub.publish(live_changes(results, alarms)),
                gap_wait_s=settings.mqtt.gap_wait_s,
                verifier=verifier_for(settings.mqtt, metrics),
                ingest=settings.ingest,
            )
            context.ingest = MqttIngest(settings.mqtt, ingestor, court_key=context.court_key)
            liveness = LivenessChecker(
                session_factory,
                offline_after_s=settings.offline_after_s,
                interval_s=settings.liveness.check_interval_s,
                offline_grace_s=settings.alarms.offline_grace_s,
                gap_wait_s=settings.mqtt.gap_wait_s,
                metrics=metrics,
                mark_forget_s=settings.liveness.mark_forget_s,
                caught_up_wait_max_s=settings.liveness.caught_up_wait_max_s,
                on_raised=lambda device_ids: hub.publish(Change("alarm", device_id) for device_id in device_ids),
                on_closed=lambda closed: hub.publish(
                    Change("alarm", device_id, case_no) for device_id, case_no in closed
                ),
            )
            context.dispatcher = CommandDispatcher(
                settings.mqtt,
                settings.commands,
                session_factory,
                metrics=metrics,
                mark_forget_s=settings.liveness.mark_forget_s,
                caught_up_wait_max_s=settings.liveness.caught_up_wait_max_s,
                on_changed=lambda changed: hub.publish(
                    Change("command", device_id, case_no) for device_id, case_no in changed
                ),
                on_closed=lambda closed: hub.publish(
                    Change("alarm", device_id, case_no) for device_id, case_no in closed
                ),
            )
            notifier = webhook_worker(session_factory, settings=settings.notify, metrics=metrics)
            workers = [liveness, notifier, context.dispatcher, settler]
            if settings.evidence.log_key_file is not None:
                workers += log_workers(settings, session_factory, log_key, metrics)
            else:
                logger.warning("[evidence] log_key_file is not set: the event log is kept but no checkpoint signed")
        if settings.live.feed and (with_ingest if with_feed is None else with_feed):
            woken = None if settler is None else wake_on_seals(settler)
            on_gap = None if settler is None else settler.wake  # a missed change may have been such an answer
            context.feed = LiveFeed(settings.mqtt, metrics=metrics, hub=hub, on_received=woken, on_gap=on_gap)
        feed = context.feed
        # What /api/health reads, looked at every second: the open pages say when the court is not receiving.
        context.receiving = CourtReceiving(lambda: receiving(context), on_change=lambda _state: hub.nudge())
        app.state.context = context
        try:
            if feed is not None:
                feed.start()
                hub.forward_to(feed.send)
                # A page served before the subscription is granted would be told "gap" (reload) when it is.
                if not await to_thread.run_sync(feed.wait_subscribed, FEED_START_WAIT_S):
                    logger.warning("live feed: not subscribed after %.0f s (pages reload then)", FEED_START_WAIT_S)
            if context.ingest is not None:
                context.ingest.start()
            for worker in workers:
                worker.start()
            context.receiving.start()
            yield
        finally:
            hub.close()  # the pages' streams end (already when a signal stops the server: server.cli)
            context.receiving.stop()
            for worker in workers:
                worker.stop()
            if context.ingest is not None:
                context.ingest.stop()
            if feed is not None:  # after the ingest's last batch: its changes are sent on
                hub.forward_to(None)
                feed.stop()
            engine.dispose()
            if ingest_engine is not None:
                ingest_engine.dispose()

    app = FastAPI(
        title="Court electronic seal server",
        summary="Verified, per-case event logs of court electronic seals (电子封条).",
        lifespan=lifespan,
        docs_url=None,  # served from the package by add_docs, not from a CDN
        redoc_url=None,
    )
    app.include_router(api_router)
    app.include_router(metrics_router)
    app.include_router(public_router)
    app.include_router(web_router)
    app.add_exception_handler(StarletteHTTPException, page_not_found)  # a browser's unknown URL: the 404 page
    app.state.live = hub
    app.state.proxy_warnings = ProxyWarnings()  # a proxy not configured as it must be: said once per peer
    add_docs(app)
    removal = settings.removal
    uploads = upload_limit(removal)
    upload_routes = [
        UploadRoute(UPLOAD_PATH, uploads, api_uploader),
        UploadRoute(PORTAL_UPLOAD_PATH, uploads, page_uploader),
    ]
    app.add_middleware(
        BodyLimit,
        uploads=upload_routes,
        pace=UploadPace(removal.upload_deadline_s, removal.upload_progress_bytes, removal.upload_progress_window_s),
        # every other body: as steady as an upload, and whole within [http] body_deadline_s
        body_pace=UploadPace(
            settings.http.body_deadline_s, removal.upload_progress_bytes, removal.upload_progress_window_s
        ),
        trusted_proxies=settings.http.trusted_proxies,  # the slots per client count the address sign-in does
        refusal_page=upload_refusal_page,  # a portal form's 413/408/503 as a page, not JSON
    )
    app.add_middleware(PrivateApi)
    _add_error_handlers(app)
    return app


Worker = LivenessChecker | NotificationWorker | CommandDispatcher | Checkpointer | Timestamper | RemovalSettler


def wake_on_seals(settler: RemovalSettler) -> Callable[[list[Change]], None]:
    """What the live feed calls with another process's changes: a seal's answer that decided its command, stored by
    an ingest worker (``command``, :func:`server.ingest.changes.live_changes`), wakes ``settler`` as this process's
    own ingest does; so does a seal's event (``event``: it may say the seal is armed again, after its request was
    disarmed — the feed does not say what an event says). A command sent or expired elsewhere says ``command`` too,
    and most events say nothing of the kind: one round more, which finds nothing to move."""

    def received(changes: list[Change]) -> None:
        if any(change.what in ("command", "event") for change in changes):
            settler.wake()

    return received


def log_workers(
    settings: Settings, session_factory: SessionFactory, log_key: LogKey, metrics: IngestMetrics
) -> list[Worker]:
    """The log's checkpointer and, with ``[evidence] tsa_url``, the time stamper it wakes after each checkpoint."""
    evidence = settings.evidence
    client = TsaClient.from_settings(evidence)
    if client is None:
        return [Checkpointer(session_factory, log_key, interval_s=evidence.checkpoint_interval_s, metrics=metrics)]
    interval_s = evidence.checkpoint_interval_s
    stamper = Timestamper(session_factory, client, metrics=metrics, interval_s=interval_s)
    checkpointer = Checkpointer(
        session_factory, log_key, interval_s=interval_s, on_signed=lambda _: stamper.wake(), metrics=metrics
    )
    pinned = f"to the roots of {evidence.tsa_ca_file}" if evidence.tsa_ca_file else "unpinned (no tsa_ca_file)"
    logger.info("log checkpoints are time-stamped by %s, verified %s", client.url, pinned)
    return [checkpointer, stamper]


#: What a request that lost a race with another transaction (PostgreSQL broke a deadlock by failing it) is told.
LOST_RACE_TEXT = (
    "数据库正忙（与另一项操作冲突），本次操作未作任何更改，请重试。"
    " The database was busy (a conflict with another action): nothing was changed, please try again."
)


#: What an API refusal says in Chinese, by status, when its error has no Chinese words of its own: the English message
#: follows (:func:`~server.web.i18n.in_both_languages`). The 404's are the same for a hidden object as for one that does
#: not exist, as the pages' are (``error.not_found`` in messages.toml).
IN_CHINESE = {
    status.HTTP_400_BAD_REQUEST: "请求有误。",
    status.HTTP_404_NOT_FOUND: "没有找到该对象，或您无权查看。",
    status.HTTP_409_CONFLICT: "当前状态下不能执行此操作。",
    status.HTTP_422_UNPROCESSABLE_CONTENT: "输入有误。",
    status.HTTP_503_SERVICE_UNAVAILABLE: "此功能暂时不可用，请稍后再试或告知法院的系统管理员。",
}


def refused(exc: Exception, status_code: int, **fields: object) -> JSONResponse:
    """The JSON answer of a refusal: its ``detail`` in both languages, with ``fields`` (codes for the machine)."""
    detail = in_both_languages(exc, IN_CHINESE[status_code])
    return JSONResponse({"detail": detail, **fields}, status_code=status_code)


def _add_error_handlers(app: FastAPI) -> None:
    async def lost_race(request: Request, exc: Exception) -> JSONResponse:
        if not lost_a_race(exc):
            raise exc  # the database's other failures stay server errors (500, logged with the traceback)
        cause = getattr(exc, "orig", exc)
        logger.warning(
            "%s %s lost a race with another transaction, nothing kept: %s", request.method, request.url.path, cause
        )
        headers = {"Retry-After": "1"}
        return JSONResponse(
            {"detail": LOST_RACE_TEXT}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE, headers=headers
        )

    async def taken_meanwhile(request: Request, exc: Exception) -> JSONResponse:
        if not unique_violation(exc):
            raise exc  # another integrity error is a bug: a server error (500, logged with the traceback)
        cause = getattr(exc, "orig", exc)
        logger.warning("%s %s: written meanwhile by another, nothing kept: %s", request.method, request.url.path, cause)
        return JSONResponse({"detail": TAKEN_MEANWHILE}, status_code=status.HTTP_409_CONFLICT)

    async def not_found(_request: Request, exc: Exception) -> JSONResponse:
        return refused(exc, status.HTTP_404_NOT_FOUND)

    async def conflict(_request: Request, exc: Exception) -> JSONResponse:
        return refused(exc, status.HTTP_409_CONFLICT)

    async def unavailable(_request: Request, exc: Exception) -> JSONResponse:
        return refused(exc, status.HTTP_503_SERVICE_UNAVAILABLE)

    async def unprocessable(_request: Request, exc: Exception) -> JSONResponse:
        return refused(exc, status.HTTP_422_UNPROCESSABLE_CONTENT)

    async def bad_request(_request: Request, exc: Exception) -> JSONResponse:
        return refused(exc, status.HTTP_400_BAD_REQUEST)

    async def not_authenticated(_request: Request, exc: Exception) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"}
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_401_UNAUTHORIZED, headers=headers)

    async def forbidden(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_403_FORBIDDEN)

    async def illegal_transition(_request: Request, exc: Exception) -> JSONResponse:
        state = exc.state if isinstance(exc, IllegalTransition) else None
        return refused(exc, status.HTTP_409_CONFLICT, state=state)

    async def store_failed(request: Request, exc: Exception) -> JSONResponse:
        logger.error("%s %s: the evidence store failed: %s", request.method, request.url.path, exc)
        detail = "证据存储暂时无法读取，请稍后再试。 / The evidence store cannot be read now: try again later."
        return JSONResponse({"detail": detail}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)

    async def too_many_attempts(_request: Request, exc: Exception) -> JSONResponse:
        retry_after = exc.retry_after_s if isinstance(exc, TooManyAttempts) else 60
        headers = {"Retry-After": str(retry_after)}
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_429_TOO_MANY_REQUESTS, headers=headers)

    app.add_exception_handler(NotAuthenticated, not_authenticated)
    app.add_exception_handler(Forbidden, forbidden)
    app.add_exception_handler(TooManyAttempts, too_many_attempts)
    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(AlreadyExists, conflict)
    app.add_exception_handler(Conflict, conflict)
    app.add_exception_handler(IllegalTransition, illegal_transition)  # a Conflict that names the current state
    app.add_exception_handler(Invalid, unprocessable)
    app.add_exception_handler(ProofStorageFailed, unavailable)
    app.add_exception_handler(ContentStoreError, store_failed)  # the store's address stays out of the answer
    app.add_exception_handler(StoreAway, store_failed)  # an export refused while a store is away (503)
    app.add_exception_handler(CommandsUnavailable, unavailable)
    app.add_exception_handler(BrokerFilesNotWritten, unavailable)
    app.add_exception_handler(LogKeyUnavailable, unavailable)
    app.add_exception_handler(CheckpointRefused, unavailable)
    app.add_exception_handler(TimestampFailed, unavailable)
    app.add_exception_handler(NoticesUnavailable, unavailable)
    app.add_exception_handler(ProofError, bad_request)
    app.add_exception_handler(OperationalError, lost_race)  # deadlock_detected, serialization_failure
    app.add_exception_handler(IntegrityError, taken_meanwhile)  # a unique row two requests wrote at once: 409
