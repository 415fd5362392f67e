"""What the S3 backend makes of a store or a setting that is not what it expects: a key prefix with ``.`` or ``..``
segments is refused when the settings are read (a proxy or store that normalises the path would take the keys out of
the prefix, or the bucket), and a store that answers a write with 404 is an unavailable store — an
:class:`OSError` like every other store failure, so that the ingest quarantines the picture unreceipted and the API
answers 503, never an exception nobody expects. A real HTTP server that answers 404 to everything (an endpoint
behind a proxy that routes the bucket nowhere)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import ValidationError

from server.config_storage import StorageSettings
from server.core.s3_objects import S3Objects, make_client
from server.errors import ContentStoreUnavailable
from server.evidence.snapshot_files import SnapshotStore
from tests.server.helpers import jpeg_bytes
from tests.server.s3_helpers import Relay


@pytest.mark.parametrize("prefix", ["../", "./", "court/../", "court/./x/", "a/../../"])
def test_a_key_prefix_with_dot_segments_is_refused(prefix: str) -> None:
    with pytest.raises(ValidationError, match="key_prefix"):
        StorageSettings(backend="s3", bucket="evidence", access_key_id="court", key_prefix=prefix)


@pytest.mark.parametrize("prefix", ["", "court-0214/", "a.b/c..d/", ".hidden/", "courts/0214/"])
def test_a_key_prefix_of_plain_segments_is_taken(prefix: str) -> None:
    assert StorageSettings(backend="s3", bucket="evidence", access_key_id="court", key_prefix=prefix).key_prefix == (
        prefix
    )


@pytest.mark.parametrize("url", ["https://GK31c2:s3cr3t@s3.court.example", "http://user@127.0.0.1:3900/"])
def test_an_endpoint_url_with_credentials_is_refused_since_the_address_is_shown_and_logged(url: str) -> None:
    with pytest.raises(ValidationError, match="endpoint_url") as refused:
        StorageSettings(backend="s3", endpoint_url=url, bucket="evidence", access_key_id="court")
    assert "s3cr3t" not in str(refused.value).split("input_value")[0]


class _NotFound(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.send_response(404)  # no body: botocore names the error by its status, "404", as it does for a HEAD
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_HEAD = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass


@pytest.fixture
def not_found_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_store_that_answers_a_write_with_404_is_unavailable(not_found_endpoint: str, tmp_path: Path) -> None:
    storage = StorageSettings(
        backend="s3",
        endpoint_url=not_found_endpoint,
        bucket="evidence",
        access_key_id="court",
        max_attempts=1,
        pause_after_failure_s=5,
    )
    store = SnapshotStore(S3Objects(make_client(storage, "not-a-real-secret"), "evidence", "snapshots/"))
    data = jpeg_bytes(shade=12)
    sha = hashlib.sha256(data).hexdigest()
    with pytest.raises(ContentStoreUnavailable, match="404"):
        store.put(sha, data)
    with pytest.raises(ContentStoreUnavailable, match="tried again in"):  # paused like any other failure
        store.put(sha, data)


@pytest.mark.parametrize("attempts", [1, 2])
def test_max_attempts_counts_the_first_attempt(attempts: int) -> None:
    """``max_attempts`` attempts of a request, the first included, as the setting says — so that a store that does
    not answer holds a request for the bound the documentation gives, not one more attempt of it."""
    hole = Relay(target_port=0)  # nothing behind it: it only swallows
    hole.set("silent")
    storage = StorageSettings(
        backend="s3",
        endpoint_url=hole.url,
        bucket="evidence",
        access_key_id="court",
        connect_timeout_s=0.5,
        read_timeout_s=0.3,
        max_attempts=attempts,
        pause_after_failure_s=0,
    )
    try:
        for request in ("read", "write"):
            objects = S3Objects(make_client(storage, "not-a-real-secret"), "evidence", "snapshots/")
            before = hole.connections
            with pytest.raises(ContentStoreUnavailable, match="timeout"):
                objects.open("a" * 64) if request == "read" else objects.put_once("a" * 64, b"picture")
            # one connection per attempt (counted as the relay takes it, a moment after the client made it)
            assert hole.connections_at_least(before + attempts, 2) - before == attempts, request
    finally:
        hole.close()
