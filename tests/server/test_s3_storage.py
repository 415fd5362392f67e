"""Snapshots and removal proofs on an S3-compatible store: a real SeaweedFS (``weed mini``, one for the session),
a real Mosquitto, a real database. Each object is written once (If-None-Match); bytes someone else put under a name
are never taken for ours; a snapshot that arrives while the store is down is not receipted and is stored when the
seal sends it again; the API serves it behind the usual access checks, and the export carries it, checked."""

from __future__ import annotations

import hashlib
import json
import queue
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from seal_dev.broker import PrivateBroker
from seal_dev.s3 import PrivateS3
from seal_protocol import EventType, envelope_hash, snapshot_topic
from seal_protocol.receipts import check_receipt
from seal_protocol.signing import SigningKey, load_or_create_signing_key
from seal_protocol.topics import receipt_topic
from seal_verify import verify_bundle
from server.app import create_app
from server.auth.access import Role
from server.cli import main as server_main
from server.commands.keys import CourtKey
from server.config import Settings
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.errors import ConfigError, ContentMismatch, ContentStoreUnavailable
from server.evidence.checkpoints import LogKey
from server.evidence.snapshot_files import SnapshotStore
from server.export.service import ExportConfig, export_case
from server.ingest.ingestor import Ingestor
from server.ingest.mqtt import MqttIngest
from server.ingest.results import Outcome, Reason
from server.removal.models import RemovalRequest
from server.setup.settings_file import render_settings
from server.stores import Stores
from tests.agent.helpers import wait_until
from tests.server.auth_helpers import add_user, bearer, make_settings
from tests.server.helpers import CASE_A, CASE_B, SimulatedSeal, jpeg_bytes, message, register
from tests.server.mqtt_helpers import seal_connection, server_mqtt_settings
from tests.server.removal_world import make_world, pdf_bytes, proof
from tests.server.s3_helpers import Relay, no_database, s3_settings
from tests.server.test_mqtt_receipts import listen

WAIT_S = 30.0


def test_each_object_is_written_once_and_other_bytes_under_its_name_are_refused(
    s3_store: PrivateS3, session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    settings = s3_settings(make_settings(database_url, tmp_path), s3_store, tmp_path)
    metrics = IngestMetrics()
    stores = Stores.from_settings(settings, on_mismatch=metrics.count_content_mismatch)
    stores.check()
    store, bucket, prefix = stores.snapshots, s3_store.client(), settings.storage.key_prefix
    data = jpeg_bytes(shade=1)
    sha = hashlib.sha256(data).hexdigest()
    store.put(sha, data)
    store.put(sha, data)  # again: a no-op, once the object there is read back and found to be these bytes
    assert bucket.get_object(Bucket=s3_store.bucket, Key=f"{prefix}snapshots/{sha}.jpg")["Body"].read() == data
    assert store.read(sha) == data and store.size(sha) == len(data) and metrics.content_mismatches() == {}

    # Someone holding the bucket's keys put other bytes under a name first: our write does not overwrite them,
    # and neither the write nor a read takes them for the picture.
    other = jpeg_bytes(shade=2)
    other_sha = hashlib.sha256(other).hexdigest()
    bucket.put_object(Bucket=s3_store.bucket, Key=f"{prefix}snapshots/{other_sha}.jpg", Body=b"forged")
    with pytest.raises(ContentMismatch, match="other bytes"):
        store.put(other_sha, other)
    with pytest.raises(ContentMismatch):
        store.read(other_sha)
    assert bucket.get_object(Bucket=s3_store.bucket, Key=f"{prefix}snapshots/{other_sha}.jpg")["Body"].read() == (
        b"forged"
    )
    assert metrics.content_mismatches() == {"snapshot": 2}

    # ... and the ingest quarantines the picture unreceipted (storage_error): the seal keeps it and sends it again.
    seal = SimulatedSeal("seal-s3", CASE_A)
    register(session_factory, seal)
    ingestor = Ingestor(session_factory, metrics=metrics, snapshots=store)
    [result] = ingestor.ingest([message(snapshot_topic(seal.device_id, other_sha), other)])
    assert (result.outcome, result.reason) == (Outcome.QUARANTINED, Reason.STORAGE_ERROR)


def test_a_snapshot_is_stored_in_the_bucket_served_behind_the_access_checks_and_exported_checked(
    s3_store: PrivateS3, broker: PrivateBroker, session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    court_key_file = tmp_path / "court" / "command.key"
    court_key, _ = load_or_create_signing_key(court_key_file)
    settings = s3_settings(make_settings(database_url, tmp_path), s3_store, tmp_path)
    settings = settings.model_copy(
        update={"commands": settings.commands.model_copy(update={"signing_key_file": court_key_file})}
    )
    seal = SimulatedSeal("seal-s3", CASE_A)
    register(session_factory, seal, SimulatedSeal("seal-other", CASE_B))  # (another case, another judge)
    metrics = IngestMetrics()
    stores = Stores.from_settings(settings, on_mismatch=metrics.count_content_mismatch)
    ingest = s3_ingest(settings, stores, broker, session_factory, metrics, tmp_path)
    picture = jpeg_bytes(shade=3)
    sha = hashlib.sha256(picture).hexdigest()
    try:
        assert ingest.wait_subscribed(WAIT_S)
        with seal_connection(broker, seal.device_id) as conn:
            receipts = listen(conn.client, receipt_topic(seal.device_id))
            event = seal.event(EventType.INTRUSION, {"armed": True, "warning": "played", "snapshots": [sha]})
            conn.publish(snapshot_topic(seal.device_id, sha), picture)
            conn.publish(seal.event_topic, event)
            assert receipted(receipts, seal, court_key, want := {sha, envelope_hash(event)}) == want
    finally:
        ingest.stop()
    key = f"{settings.storage.key_prefix}snapshots/{sha}.jpg"
    assert s3_store.client().get_object(Bucket=s3_store.bucket, Key=key)["Body"].read() == picture
    assert not list((tmp_path / "snapshots").glob("*"))  # nothing went to the directory (made by the settings)

    add_user(session_factory, "judge-a", Role.JUDGE, [CASE_A])
    add_user(session_factory, "judge-b", Role.JUDGE, [CASE_B])
    with TestClient(create_app(settings, with_ingest=False)) as client:
        served = client.get(f"/api/snapshots/{sha}", headers=bearer(session_factory, "judge-a"))
        assert served.status_code == 200 and served.content == picture
        assert served.headers["content-type"] == "image/jpeg" and served.headers["cache-control"] == "private, no-store"
        assert client.get(f"/api/snapshots/{sha}", headers=bearer(session_factory, "judge-b")).status_code == 404
        assert client.get(f"/api/snapshots/{sha}").status_code == 401

    bundle = export(session_factory, settings, tmp_path / "case.zip")
    with zipfile.ZipFile(bundle) as archive:
        assert archive.read(f"snapshots/{sha}.jpg") == picture
    log_key = LogKey(settings.evidence.log_key_file, settings.evidence.log_origin)
    assert verify_bundle(bundle, log_key=log_key.verifier()).ok

    # Whoever holds the bucket's keys overwrites the picture: the next export leaves those bytes out, says the court
    # received the picture and lost it, and its own check of the bundle fails.
    s3_store.client().put_object(Bucket=s3_store.bucket, Key=key, Body=jpeg_bytes(shade=4))
    again = export(session_factory, settings, tmp_path / "again.zip", stores=stores, verified=False)
    with zipfile.ZipFile(again) as archive:
        assert f"snapshots/{sha}.jpg" not in archive.namelist()
        [line] = [json.loads(line) for line in archive.read("snapshots.jsonl").splitlines()]
        assert line["present"] is False and line["received_at"] is not None
    assert verify_bundle(again, log_key=log_key.verifier()).failed == ["snapshots"]
    assert metrics.content_mismatches() == {"snapshot": 1}


def test_a_snapshot_sent_while_the_store_is_down_is_not_receipted_and_is_stored_when_sent_again(
    s3_store: PrivateS3, broker: PrivateBroker, session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    relay = Relay(s3_store.ports["s3.port"])  # the endpoint: nothing listens at first
    settings = s3_settings(
        make_settings(database_url, tmp_path),
        s3_store,
        tmp_path,
        endpoint_url=relay.url,
        connect_timeout_s=10.0,  # nothing listens at first: refused at once; once back, a loaded machine's answer
        read_timeout_s=10.0,
        max_attempts=1,
        pause_after_failure_s=0.5,
    )
    court_key = court_key_of(settings)
    seal = SimulatedSeal("seal-s3", CASE_A)
    register(session_factory, seal)
    metrics = IngestMetrics()
    stores = Stores.from_settings(settings)
    ingest = s3_ingest(settings, stores, broker, session_factory, metrics, tmp_path)
    picture = jpeg_bytes(shade=5)
    sha = hashlib.sha256(picture).hexdigest()
    try:
        assert ingest.wait_subscribed(WAIT_S)
        with seal_connection(broker, seal.device_id) as conn:
            receipts = listen(conn.client, receipt_topic(seal.device_id))
            conn.publish(snapshot_topic(seal.device_id, sha), picture)
            assert metrics.wait_until(lambda s: s.rejected.get("storage_error") == 1, WAIT_S), metrics.snapshot()
            beat = seal.event()
            conn.publish(seal.event_topic, beat)  # receipted alone: the court holds the event, not the picture
            assert receipted(receipts, seal, court_key, {envelope_hash(beat)}) == {envelope_hash(beat)}
            key = f"{settings.storage.key_prefix}snapshots/{sha}.jpg"
            assert s3_store.client().list_objects_v2(Bucket=s3_store.bucket, Prefix=key)["KeyCount"] == 0
            relay.set("on")  # the endpoint is back

            assert wait_until(lambda: answers(stores.snapshots, sha), WAIT_S)  # the pause after the failure ran out
            conn.publish(snapshot_topic(seal.device_id, sha), picture)  # as the seal's courier sends it again
            assert receipted(receipts, seal, court_key, {sha}) == {sha}
        assert metrics.snapshot().snapshots == 1
        assert stores.snapshots.read(sha) == picture
    finally:
        ingest.stop()
        relay.close()


def test_a_store_that_does_not_answer_costs_its_timeouts_once_then_fails_at_once(
    s3_store: PrivateS3, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A probe of a silent store is its attempts and no more; then every request fails at once, reaching no store,
    for a pause doubled after each failure in a row (here 1 s, then 2 s, then 4 s)."""
    relay = Relay(s3_store.ports["s3.port"])
    relay.set("silent")  # takes the connection, never answers
    settings = s3_settings(
        make_settings(no_database(tmp_path), tmp_path),
        s3_store,
        tmp_path,
        endpoint_url=relay.url,
        connect_timeout_s=0.5,
        read_timeout_s=0.5,
        max_attempts=2,
        pause_after_failure_s=1.0,
    )
    store = Stores.from_settings(settings).snapshots
    data = jpeg_bytes(shade=6)
    sha = hashlib.sha256(data).hexdigest()
    try:
        assert "timeout" in failure_of(lambda: store.put(sha, data))
        # One connection per attempt (max_attempts 2), counted once the relay's thread has taken it: a bounded probe.
        assert relay.connections_at_least(2, WAIT_S) == 2
        for probes in (2, 3):
            assert "tried again in" in failure_of(lambda: store.put(sha, data))
            assert relay.connections == 2 * (probes - 1)  # paused: the request reached no store
            # Once the pause runs out, the store is tried again: the timeouts once more, and a longer pause.
            assert wait_until(lambda: "tried again in" not in failure_of(lambda: store.put(sha, data)), WAIT_S)
            assert relay.connections_at_least(2 * probes, WAIT_S) == 2 * probes
    finally:
        relay.close()
    # Three probes, each failing by its timeouts, each followed by a pause twice as long as the last.
    assert re.findall(r"timeout.*\(not tried again for ([0-9.]+) s\)", caplog.text) == ["1.0", "2.0", "4.0"]


def test_a_removal_proof_is_filed_into_the_bucket_and_refused_with_503_while_the_store_is_down(
    s3_store: PrivateS3, session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    relay = Relay(s3_store.ports["s3.port"])
    relay.set("on")
    settings = s3_settings(
        make_settings(database_url, tmp_path),
        s3_store,
        tmp_path,
        endpoint_url=relay.url,
        connect_timeout_s=0.5,
        max_attempts=1,
        pause_after_failure_s=0.2,
    )
    try:
        with TestClient(create_app(settings, with_ingest=False)) as client:
            world = make_world(session_factory, tmp_path, client)
            receipt = pdf_bytes("bank receipt")
            sha = hashlib.sha256(receipt).hexdigest()
            request_id = world.filed(files=[proof("回单.pdf", receipt, "application/pdf")])
            key = f"{settings.storage.key_prefix}removal-proofs/{sha}.pdf"
            assert s3_store.client().get_object(Bucket=s3_store.bucket, Key=key)["Body"].read() == receipt
            url = f"/api/removal-requests/{request_id}/proofs/{sha}"
            served = client.get(url, headers=world.as_("judge"))
            assert served.status_code == 200 and served.content == receipt
            assert served.headers["content-disposition"] == "attachment; filename*=utf-8''%E5%9B%9E%E5%8D%95.pdf"
            assert client.get(url, headers=world.as_("judge-b")).status_code == 404

            world.ok("debtor", request_id, "cancel", {"note": "filed again below"})
            relay.set("off")
            other = pdf_bytes("another receipt")
            refused = world.file(files=[proof("回单2.pdf", other, "application/pdf")])
            assert refused.status_code == 503 and "try again later" in refused.json()["detail"]
            assert relay.url not in refused.text  # the store's address is the court's business
            assert client.get(url, headers=world.as_("judge")).status_code == 503
            with session_factory() as session:
                assert session.scalar(select(func.count(RemovalRequest.id))) == 1  # nothing filed without its proof
    finally:
        relay.close()


@pytest.mark.parametrize("fault", ["wrong secret", "no such bucket", "no endpoint"])
def test_the_server_does_not_start_on_a_store_it_cannot_use(
    fault: str, s3_store: PrivateS3, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    settings = s3_settings(make_settings(no_database(tmp_path), tmp_path), s3_store, tmp_path, connect_timeout_s=0.5)
    storage = settings.storage
    wrong_secret = "wrong-" + s3_store.secret_access_key
    if fault == "wrong secret":
        assert storage.secret_access_key_file is not None
        storage.secret_access_key_file.write_text(wrong_secret + "\n")
    elif fault == "no such bucket":
        storage = storage.model_copy(update={"bucket": "no-such-bucket"})
    else:
        storage = storage.model_copy(update={"endpoint_url": Relay(s3_store.ports["s3.port"]).url})
    with pytest.raises(ConfigError, match="无法使用证据存储") as refused:
        Stores.from_settings(settings.model_copy(update={"storage": storage})).check()
    assert "The evidence store (snapshots and removal proofs) cannot be used" in str(refused.value)
    assert wrong_secret not in str(refused.value) and s3_store.secret_access_key not in str(refused.value)

    config = tmp_path / "server.toml"
    config.write_text(server_toml(settings.model_copy(update={"storage": storage})))
    assert server_main(["check-config", "--config", str(config)]) == 0  # reads the file; reaches no store
    assert f"storage s3://{storage.bucket}/{storage.key_prefix} at " in capfd.readouterr().out
    for command in ("run", "ingest"):  # seal-server run, seal-server ingest: before either opens anything
        assert server_main([command, "--config", str(config)]) == 2
        logged = capfd.readouterr().err
        assert "无法使用证据存储" in logged and "cannot be used" in logged and wrong_secret not in logged


# -- helpers -------------------------------------------------------------------------------------------------------


def s3_ingest(
    settings: Settings,
    stores: Stores,
    broker: PrivateBroker,
    session_factory: SessionFactory,
    metrics: IngestMetrics,
    tmp_path: Path,
) -> MqttIngest:
    """The court's ingest, started, its snapshots in ``stores``, its receipts signed with the court's key."""
    ingestor = Ingestor(session_factory, metrics=metrics, snapshots=stores.snapshots)
    ingest = MqttIngest(server_mqtt_settings(broker, tmp_path), ingestor, court_key=CourtKey(settings.commands))
    ingest.start()
    return ingest


def failure_of(request: Callable[[], object]) -> str:
    """What the store said when it refused ``request`` (it must refuse it)."""
    with pytest.raises(ContentStoreUnavailable) as failed:
        request()
    return str(failed.value)


def answers(store: SnapshotStore, sha: str) -> bool:
    """Whether ``store`` answers a request (while paused after a failure it refuses each at once)."""
    try:
        store.size(sha)
    except ContentStoreUnavailable:
        return False
    return True


def receipted(
    receipts: queue.Queue[tuple[str, bytes]], seal: SimulatedSeal, court_key: SigningKey, expected: set[str]
) -> set[str]:
    """The hashes the receipts to ``seal`` name, read until they include ``expected`` (or the wait runs out)."""
    committed: set[str] = set()
    while not expected <= committed:
        try:
            _topic, payload = receipts.get(timeout=WAIT_S)
        except queue.Empty:
            break
        committed |= check_receipt(payload, device_id=seal.device_id, court_key=court_key.verify_key).committed
    return committed


def export(
    session_factory: SessionFactory,
    settings: Settings,
    target: Path,
    *,
    stores: Stores | None = None,
    verified: bool = True,
) -> Path:
    with session_factory() as session:
        result = export_case(
            session,
            case_no=CASE_A,
            target=target,
            log_key=LogKey(settings.evidence.log_key_file, settings.evidence.log_origin),
            config=ExportConfig.from_settings(settings, stores=stores),
            actor=None,
            exported_by="cli:test",
        )
    assert result.verified is verified
    return result.path


def court_key_of(settings: Settings) -> SigningKey:
    assert settings.commands.signing_key_file is not None
    key, _ = load_or_create_signing_key(settings.commands.signing_key_file)
    return key


def server_toml(settings: Settings) -> str:
    return render_settings(settings.model_dump(mode="json", exclude_none=True))
