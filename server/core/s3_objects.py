"""Objects in a bucket of an S3-compatible store (Garage, Ceph RGW, SeaweedFS, AWS S3): the bucket backend of the
content stores (:mod:`server.core.object_store`), through boto3.

Each object is written once: ``PUT`` with ``If-None-Match: *``, which the store refuses (412) if an object of that
key exists, without touching it. botocore's errors are converted here, at the boundary, into
:class:`~server.errors.ContentStoreUnavailable` (the store as a whole cannot be used: it did not answer, is busy or
down, or refused our credentials) or :class:`~server.errors.ContentStoreError` (it answered with an error about
this one request: a 500 for a damaged object, a 4xx about it); both are :class:`OSError`\\s, like a disk's.
Requests are bounded (connect and read timeouts, few attempts), and after the store has been unavailable the backend
fails at once for ``pause_after_failure_s`` (doubled after each further failure in a row, up to five minutes)
instead of waiting for the timeouts of every request, so that a dead endpoint cannot hold the ingest for long. An
error about one object fails that request alone (logged, naming the object): the others are still tried. Only an
answer to a request sent after the pause began ends it, and only the failure of such a request lengthens it: one
already in flight then says nothing of the store since (requests that time out together against a dead store pause
it as one failure does, not as many in a row).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as ConnectionFailed

from server.config import StorageSettings
from server.core.blobs import CHUNK_BYTES, Blob
from server.errors import ContentStoreError, ContentStoreUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Error codes that mean: an object of this key exists (412), or another conditional write of it is under way (409).
_EXISTS = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
#: Codes of a store that refuses us (our account, our credentials, our clock, the bucket): it is unavailable to us as
#: much as a dead one, for every object alike.
_REFUSED = frozenset(
    {
        "AccessDenied",
        "403",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "RequestTimeTooSkewed",
        "NoSuchBucket",
        "InvalidBucketName",
    }
)
#: Answers of a store that is busy or down as a whole (429 and SlowDown: it throttles us); 502 and 504 are a proxy's
#: word that the store behind it did not answer. Any other 5xx (a 500 for one damaged object) is about that request
#: alone.
_DOWN = frozenset({"SlowDown", "ServiceUnavailable", "TooManyRequests"})
_DOWN_STATUS = frozenset({429, 502, 503, 504})
#: Objects answered with a server error (5xx) in a row, no request answered well between them, after which the store
#: is taken to be failing as a whole (a backend that answers 500 to everything), not each object: it is paused as if
#: it were down. One damaged object asked for again and again counts once.
SERVER_ERRORS_IN_ROW = 3
#: botocore's errors of a request that got no answer: connection refused or reset, timed out.
_NO_ANSWER = (ConnectionFailed, HTTPClientError)
#: The longest pause after failures in a row (:meth:`S3Objects._failed`).
MAX_PAUSE_S = 300.0
#: The object written (once) by :meth:`S3Objects.check` to see that the store honours If-None-Match.
WRITE_ONCE_PROBE = ".write-once-probe"


def make_client(settings: StorageSettings, secret_access_key: str) -> Any:
    """A boto3 S3 client for ``settings`` (thread-safe; one per server process)."""
    config = Config(
        connect_timeout=settings.connect_timeout_s,
        read_timeout=settings.read_timeout_s,
        # total_max_attempts counts the first attempt, as [storage] max_attempts does (botocore's max_attempts does not)
        retries={"total_max_attempts": settings.max_attempts, "mode": "standard"},
        s3={"addressing_style": settings.addressing_style},
        signature_version="s3v4",
        # Only the checksums S3 requires: stores other than AWS refuse or mishandle the CRC32 trailers that
        # botocore adds by default since 1.36.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    verify: bool | str = settings.verify_tls
    if settings.verify_tls and settings.ca_file is not None:
        verify = str(settings.ca_file)
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=secret_access_key,
        verify=verify,
        config=config,
    )


class S3Objects:
    """Objects under ``prefix`` in ``bucket``; ``client`` as :func:`make_client` makes it."""

    def __init__(self, client: Any, bucket: str, prefix: str, *, pause_after_failure_s: float = 10.0) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix
        self.description = f"s3://{bucket}/{prefix} at {client.meta.endpoint_url}"
        self._pause_s = pause_after_failure_s
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self._pauses = 0  # how many times the store has been paused: which pause a request was sent under
        self._failures = 0  # in a row
        self._failure = ""
        self._server_errors: set[str] = set()  # the keys of 5xx answers since the last request answered well

    def put_once(self, name: str, data: bytes) -> bool:
        return self._write_once(name, data, pause=True)

    def open(self, name: str) -> Blob | None:
        key = self.prefix + name
        try:
            answer, sent_after = self._send(
                f"read {key}", lambda: self._client.get_object(Bucket=self.bucket, Key=key), key=key
            )
        except _Missing:
            return None
        return Blob(int(answer["ContentLength"]), self._chunks(key, answer["Body"], sent_after))

    def remove(self, name: str) -> None:
        """Delete the object. Sent whether or not the store is paused, and a failure pauses nothing: a bucket whose
        policy forbids deletes (AccessDenied) must not stop the ingest's writes; the caller logs and leaves it."""
        key = self.prefix + name
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise ContentStoreError(f"{self.description}: cannot remove {key}: {exc}") from None

    def size(self, name: str) -> int | None:
        key = self.prefix + name
        try:
            answer = self._call(
                f"look up {key}", lambda: self._client.head_object(Bucket=self.bucket, Key=key), key=key
            )
        except _Missing:
            return None
        return int(answer["ContentLength"])

    def check(self) -> None:
        """The bucket answers, takes our credentials, and refuses a second write of a key (If-None-Match): the
        probe object (a few fixed bytes under :data:`WRITE_ONCE_PROBE`) is written on the first start, and must be
        refused from then on."""
        try:
            self._call("reach the bucket", lambda: self._client.head_bucket(Bucket=self.bucket), pause=False)
        except _Missing:
            raise ContentStoreUnavailable(f"{self.description}: there is no bucket {self.bucket!r}") from None
        probe = b"write-once probe of the court seal server\n"
        self._write_once(WRITE_ONCE_PROBE, probe, pause=False)
        if self._write_once(WRITE_ONCE_PROBE, probe, pause=False):
            raise ContentStoreUnavailable(
                f"{self.description}: the store wrote {self.prefix}{WRITE_ONCE_PROBE} again despite If-None-Match: *, "
                "so it could overwrite evidence; use a store that honours conditional writes"
            )

    def _write_once(self, name: str, data: bytes, *, pause: bool) -> bool:
        key = self.prefix + name
        try:
            self._call(
                f"write {key}",
                lambda: self._client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*"),
                pause=pause,
                key=key,
                writing=True,
            )
        except _Exists:
            return False
        return True

    def _chunks(self, key: str, body: Any, sent_after: int) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(CHUNK_BYTES)
        except (BotoCoreError, OSError) as exc:
            self._failed(f"reading {key} failed: {exc}", sent_after)
            raise ContentStoreUnavailable(f"{self.description}: reading {key} failed: {exc}") from exc
        finally:
            body.close()

    def _call(
        self, what: str, request: Callable[[], T], *, pause: bool = True, writing: bool = False, key: str = ""
    ) -> T:
        """``request``'s answer; raise :class:`_Exists` (412, 409), :class:`_Missing` (404 to a read; to a write,
        there is no bucket or endpoint to write to: unavailable) or an :class:`OSError` — a
        :class:`~server.errors.ContentStoreUnavailable` (and a pause) only if the store as a whole cannot be used."""
        return self._send(what, request, pause=pause, writing=writing, key=key)[0]

    def _send(
        self, what: str, request: Callable[[], T], *, pause: bool = True, writing: bool = False, key: str = ""
    ) -> tuple[T, int]:
        """As :meth:`_call`, with the number of pauses the request was sent under (for a failure met later, while
        the answer's body is read)."""
        with self._lock:
            left = self._paused_until - time.monotonic()
            failure = self._failure
            sent_after = self._pauses
        if pause and left > 0:
            raise ContentStoreUnavailable(f"{self.description}: {failure} (tried again in {left:.1f} s)")
        try:
            answer = request()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in _EXISTS:
                raise _Exists from None
            if code in _MISSING and not writing:
                raise _Missing from None
            reason = f"cannot {what}: {code or status} {error.get('Message', '')}".rstrip()
            in_row = self._server_error(status, key)
            if in_row >= SERVER_ERRORS_IN_ROW:
                reason = f"{reason} ({in_row} objects with server errors in a row: the store's own)"
            if _unavailable(code, status, writing=writing) or in_row >= SERVER_ERRORS_IN_ROW:
                self._failed(reason, sent_after)
                raise ContentStoreUnavailable(f"{self.description}: {reason}") from None
            self._failed_alone(reason, sent_after, server_error=in_row > 0)
            raise ContentStoreError(f"{self.description}: {reason}") from None
        except _NO_ANSWER as exc:
            reason = f"cannot {what}: {exc}"
            self._failed(reason, sent_after)
            raise ContentStoreUnavailable(f"{self.description}: {reason}") from None
        except BotoCoreError as exc:  # botocore's own refusal of this request (a parameter, an unreadable answer)
            self._failed_alone(f"cannot {what}: {exc}", sent_after)
            raise ContentStoreError(f"{self.description}: cannot {what}: {exc}") from None
        self._answered(sent_after)
        return answer, sent_after

    def _failed(self, reason: str, sent_after: int) -> None:
        """Pause: ``pause_after_failure_s``, doubled after each further failure in a row up to
        :data:`MAX_PAUSE_S`, so that a store that keeps swallowing requests holds the ingest a few seconds in minutes,
        not a few seconds in every few. Only a request sent after the last pause began (``sent_after`` pauses, as
        :meth:`_answered` counts) pauses it again: the others were in flight together with the one that began it,
        and their failures are the same evidence again — ten requests timing out at once against a dead store must
        not double the pause ten times, to its longest."""
        with self._lock:
            stale = sent_after != self._pauses
            if not stale:
                self._pauses += 1
                self._failures += 1
                pause = min(self._pause_s * 2 ** (self._failures - 1), max(self._pause_s, MAX_PAUSE_S))
                self._paused_until = time.monotonic() + pause
                self._failure = reason
            left = max(self._paused_until - time.monotonic(), 0.0)
        if stale:
            logger.warning(
                "%s: %s (a request sent before the store was last paused: the pause is not lengthened, %.1f s left)",
                self.description,
                reason,
                left,
            )
        else:
            logger.warning("%s: %s (not tried again for %.1f s)", self.description, reason, left)

    def _failed_alone(self, reason: str, sent_after: int, *, server_error: bool = False) -> None:
        """A request failed for itself (``reason`` names its object), while the store answers: no pause, and the
        failures in a row end (a server error still counts towards :data:`SERVER_ERRORS_IN_ROW`) — if the request
        was sent after the last pause (:meth:`_answered`)."""
        self._answered(sent_after, server_error=server_error)
        logger.warning(
            "%s: %s (this request alone: the store answers and is tried for the others)", self.description, reason
        )

    def _server_error(self, status: int, key: str) -> int:
        """How many objects got a server error since the last request answered well, this answer's ``status``
        counted (0 if it is none). One damaged object asked for again and again counts once."""
        if status < 500:
            return 0
        with self._lock:
            self._server_errors.add(key)
            return len(self._server_errors)

    def _answered(self, sent_after: int, *, server_error: bool = False) -> None:
        """The store answered a request sent when it had been paused ``sent_after`` times. That ends the pause and
        the failures in a row only if no pause has begun since: a request already in flight when another thread
        found the store down (a request sent before the timeouts ran out, a 503 answered to another object) says
        nothing of the store since then, and must not let every request through the pause just set."""
        with self._lock:
            if sent_after != self._pauses:
                return  # (nor does it end the server errors in a row that paused the store)
            self._paused_until, self._failures = 0.0, 0
            if not server_error:
                self._server_errors.clear()


def _unavailable(code: str, status: int, *, writing: bool) -> bool:
    """Whether an error answer says the store as a whole cannot be used now (busy, down, refusing us; a write's
    404: no bucket there), rather than that this one request failed."""
    if code in _REFUSED or code in _DOWN or status in _DOWN_STATUS:
        return True
    return writing and (code in _MISSING or status == 404)


class _Exists(Exception):
    """An object of the key exists (412), or is being written by another conditional request (409)."""


class _Missing(Exception):
    """No object of the key (404)."""
