"""An error answer about one object fails that object alone; a store that is busy, down or refusing us is paused for
every object. A real SeaweedFS behind the tests' relay, which answers an error of its own for the requests of one
key and forwards the others; a real database for the ingest."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from seal_dev.s3 import PrivateS3
from seal_protocol import EventType, snapshot_topic
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.errors import ContentStoreError, ContentStoreUnavailable
from server.evidence.snapshot_files import SnapshotStore
from server.ingest.ingestor import Ingestor
from server.ingest.results import Message, Outcome, Reason
from server.stores import Stores
from tests.agent.helpers import wait_until
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A, SimulatedSeal, jpeg_bytes, message, register
from tests.server.s3_helpers import Relay, no_database, s3_settings

#: Long enough that a store paused by the first failure would refuse every later request of a test.
PAUSE_S = 60.0


@pytest.fixture
def relay(s3_store: PrivateS3) -> Iterator[Relay]:
    relay = Relay(s3_store.ports["s3.port"])
    relay.set("on")
    try:
        yield relay
    finally:
        relay.close()


@pytest.mark.parametrize(("status", "code"), [(500, "InternalError"), (400, "InvalidRequest")])
def test_an_error_answer_about_one_object_fails_that_object_alone(
    status: int, code: str, relay: Relay, s3_store: PrivateS3, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = relayed_snapshots(s3_store, relay, tmp_path)
    damaged, picture = jpeg_bytes(shade=20), jpeg_bytes(shade=21)
    relay.fail(sha_of(damaged), status, code)
    with pytest.raises(ContentStoreError, match=code) as failed:
        store.put(sha_of(damaged), damaged)
    assert not isinstance(failed.value, ContentStoreUnavailable)
    assert requests_for(relay, damaged) == ["PUT"]  # one attempt (max_attempts 1), answered by the relay

    store.put(sha_of(picture), picture)  # right after: tried, not paused
    store.put(sha_of(picture), picture)  # (again: refused by If-None-Match, read back, a no-op)
    assert store.read(sha_of(picture)) == picture
    logged = [r.getMessage() for r in caplog.records if r.name == "server.core.s3_objects"]
    assert [line for line in logged if f"snapshots/{sha_of(damaged)}.jpg: {code}" in line and "alone" in line]
    assert not [line for line in logged if "not tried again" in line]


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (503, "SlowDown"),
        (503, "ServiceUnavailable"),
        (429, "TooManyRequests"),
        (504, "GatewayTimeout"),
        (403, "AccessDenied"),
    ],
)
def test_a_store_that_is_busy_or_refuses_us_is_paused_for_every_object(
    status: int, code: str, relay: Relay, s3_store: PrivateS3, tmp_path: Path
) -> None:
    store = relayed_snapshots(s3_store, relay, tmp_path)
    first, other = jpeg_bytes(shade=22), jpeg_bytes(shade=23)
    relay.fail(sha_of(first), status, code)
    with pytest.raises(ContentStoreUnavailable, match=code):
        store.put(sha_of(first), first)
    tried = len(relay.requests)
    with pytest.raises(ContentStoreUnavailable, match="tried again in"):
        store.put(sha_of(other), other)
    assert len(relay.requests) == tried  # paused: the other object's write never reached the store


def test_server_errors_of_different_objects_in_a_row_pause_the_store(
    relay: Relay, s3_store: PrivateS3, tmp_path: Path
) -> None:
    """A backend that answers 500 to everything is failing as a whole: after three such answers in a row, each about
    its own object, the store is paused as a down one is; an answer between them that succeeds starts the count
    again."""
    store = relayed_snapshots(s3_store, relay, tmp_path)
    pictures = [jpeg_bytes(shade=30 + n) for n in range(5)]
    for picture in pictures[:4]:
        relay.fail(sha_of(picture), 500, "InternalError")
    for picture in pictures[:2]:
        with pytest.raises(ContentStoreError, match="InternalError") as alone:
            store.put(sha_of(picture), picture)
        assert not isinstance(alone.value, ContentStoreUnavailable)
    store.put(sha_of(pictures[4]), pictures[4])  # an answer that succeeds: the count starts again
    for picture in pictures[:2]:
        with pytest.raises(ContentStoreError) as alone:
            store.put(sha_of(picture), picture)
        assert not isinstance(alone.value, ContentStoreUnavailable)
    with pytest.raises(ContentStoreUnavailable, match="3 objects with server errors in a row"):
        store.put(sha_of(pictures[2]), pictures[2])
    tried = len(relay.requests)
    with pytest.raises(ContentStoreUnavailable, match="tried again in"):
        store.put(sha_of(pictures[3]), pictures[3])
    assert len(relay.requests) == tried  # paused: that write never reached the store


def test_one_damaged_object_asked_for_again_and_again_does_not_pause_the_store(
    relay: Relay, s3_store: PrivateS3, tmp_path: Path
) -> None:
    store = relayed_snapshots(s3_store, relay, tmp_path)
    damaged, picture = jpeg_bytes(shade=40), jpeg_bytes(shade=41)
    relay.fail(sha_of(damaged), 500, "InternalError")
    for _ in range(5):  # a page shown again and again, a seal sending the picture again
        with pytest.raises(ContentStoreError) as alone:
            store.put(sha_of(damaged), damaged)
        assert not isinstance(alone.value, ContentStoreUnavailable)
    store.put(sha_of(picture), picture)  # not paused
    assert store.read(sha_of(picture)) == picture


@pytest.mark.parametrize("answer", ["an error about its object", "its object"])
def test_the_answer_to_a_request_in_flight_when_the_store_was_paused_does_not_end_the_pause(
    answer: str, relay: Relay, s3_store: PrivateS3, tmp_path: Path
) -> None:
    """A page reads a picture; while its request is in flight, the ingest finds the store busy and pauses it. The
    read's answer (an error about its own object, or the object) was sent before the pause: it says nothing of the
    store since, and the pause stays for every other object."""
    store = relayed_snapshots(s3_store, relay, tmp_path)
    in_flight, busy, later = jpeg_bytes(shade=50), jpeg_bytes(shade=51), jpeg_bytes(shade=52)
    store.put(sha_of(in_flight), in_flight)
    if answer == "an error about its object":
        relay.fail(sha_of(in_flight), 400, "InvalidRequest")
    release = relay.hold(sha_of(in_flight))
    read: list[bytes | None | ContentStoreError] = []

    def read_in_flight() -> None:
        try:
            read.append(store.read(sha_of(in_flight)))
        except ContentStoreError as exc:
            read.append(exc)

    reader = threading.Thread(target=read_in_flight)
    reader.start()
    try:
        assert wait_until(lambda: "GET" in requests_for(relay, in_flight), 5)  # in flight, held by the relay
        relay.fail(sha_of(busy), 503, "SlowDown")
        with pytest.raises(ContentStoreUnavailable, match="SlowDown"):
            store.put(sha_of(busy), busy)
    finally:
        release.set()
        reader.join(10)
    [answered] = read
    if answer == "its object":
        assert answered == in_flight
    else:
        assert isinstance(answered, ContentStoreError) and "InvalidRequest" in str(answered)
        assert not isinstance(answered, ContentStoreUnavailable)

    tried = len(relay.requests)
    with pytest.raises(ContentStoreUnavailable, match="SlowDown.*tried again in"):
        store.put(sha_of(later), later)
    assert len(relay.requests) == tried  # still paused: that write never reached the store


@pytest.mark.parametrize("failure", ["no answer", "SlowDown"])
def test_requests_in_flight_together_that_fail_pause_the_store_as_one_failure_does(
    failure: str, relay: Relay, s3_store: PrivateS3, tmp_path: Path
) -> None:
    """Four pictures are being written when the store dies (their connections cut) or says it is busy (503): the
    first failure pauses it for ``pause_after_failure_s``; the others were sent before that pause began and do not
    double it three times more (to its longest, five minutes)."""
    store = relayed_snapshots(s3_store, relay, tmp_path)
    pictures = [jpeg_bytes(shade=60 + n) for n in range(4)]
    releases = [relay.hold(sha_of(picture)) for picture in pictures]
    failed: list[BaseException] = []

    def write(picture: bytes) -> None:
        try:
            store.put(sha_of(picture), picture)
        except ContentStoreUnavailable as exc:
            failed.append(exc)

    writers = [threading.Thread(target=write, args=(picture,)) for picture in pictures]
    for writer in writers:
        writer.start()
    try:
        # all four in flight, held by the relay: each was sent before any failed
        assert wait_until(lambda: all(requests_for(relay, picture) == ["PUT"] for picture in pictures), 5)
        if failure == "no answer":
            relay.set("off")
        else:
            for picture in pictures:
                relay.fail(sha_of(picture), 503, "SlowDown")
    finally:
        for release in releases:
            release.set()
        for writer in writers:
            writer.join(10)
    assert len(failed) == len(pictures)
    assert not [exc for exc in failed if "tried again in" in str(exc)]  # each reached the store and failed there

    later = jpeg_bytes(shade=64)
    with pytest.raises(ContentStoreUnavailable, match="tried again in") as paused:
        store.put(sha_of(later), later)
    left = re.search(r"tried again in ([0-9.]+) s", str(paused.value))
    assert left is not None and PAUSE_S - 10 < float(left[1]) <= PAUSE_S  # one failure's pause, not 2, 4 or 8 times


def test_a_picture_the_store_fails_is_quarantined_alone_and_the_event_and_the_others_are_stored(
    relay: Relay, s3_store: PrivateS3, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """As when the store is down: the picture is refused unreceipted (``storage_error``, counted) and the seal sends
    it again; the event that names it, and the batch's other picture, are stored."""
    seal = SimulatedSeal("seal-damaged", CASE_A)
    register(session_factory, seal)
    metrics = IngestMetrics()
    store = relayed_snapshots(s3_store, relay, tmp_path)
    ingestor = Ingestor(session_factory, metrics=metrics, snapshots=store)
    damaged, picture = jpeg_bytes(shade=24), jpeg_bytes(shade=25)
    relay.fail(sha_of(damaged), 500, "InternalError")
    event = seal.event(
        EventType.INTRUSION, {"armed": True, "warning": "played", "snapshots": [sha_of(damaged), sha_of(picture)]}
    )
    try:
        results = ingestor.ingest([snapshot(seal, damaged), snapshot(seal, picture), message(seal.event_topic, event)])
        assert [(r.outcome, r.reason) for r in results] == [
            (Outcome.QUARANTINED, Reason.STORAGE_ERROR),
            (Outcome.SNAPSHOT, None),
            (Outcome.STORED, None),
        ]
        assert "InternalError" in results[0].detail
        counted = metrics.snapshot()
        assert (counted.rejected, counted.snapshots, counted.stored) == ({"storage_error": 1}, 1, 1)

        relay.heal(sha_of(damaged))  # the store reads the object again; the seal sends the picture again
        [again] = ingestor.ingest([snapshot(seal, damaged)])
        assert again.outcome is Outcome.SNAPSHOT
        assert (store.read(sha_of(damaged)), store.read(sha_of(picture))) == (damaged, picture)
    finally:
        ingestor.close()


# -- helpers -------------------------------------------------------------------------------------------------------


def relayed_snapshots(s3_store: PrivateS3, relay: Relay, tmp_path: Path) -> SnapshotStore:
    """The snapshots' store on ``s3_store`` through ``relay``: one attempt per request, a long pause."""
    settings = s3_settings(
        make_settings(no_database(tmp_path), tmp_path),
        s3_store,
        tmp_path,
        endpoint_url=relay.url,
        max_attempts=1,
        pause_after_failure_s=PAUSE_S,
    )
    return Stores.from_settings(settings).snapshots


def requests_for(relay: Relay, data: bytes) -> list[str]:
    """The methods of the requests for ``data``'s object that reached ``relay``."""
    return [request.split(" ")[0] for request in relay.requests if sha_of(data) in request]


def snapshot(seal: SimulatedSeal, data: bytes) -> Message:
    return message(snapshot_topic(seal.device_id, sha_of(data)), data)


def sha_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
