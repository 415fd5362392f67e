"""The client of an RFC 3161 time-stamping authority (``[evidence] tsa_url``): asks for a token over SHA-256 of some
bytes (a checkpoint's note), and returns it only once it verifies.

The query (``rfc3161-client``) asks for SHA-256, a random nonce and the TSA's certificates; it is POSTed as
``application/timestamp-query`` (stdlib ``http.client``: one request, no session to keep; ``tsa_timeout_s`` bounds
the whole exchange). The answer must be a granted ``TimeStampResp`` with the query's nonce, and
:func:`seal_verify.timestamp.verify_timestamp` must accept it: the imprint, the TSA's signature, and its chain at the
token's genTime — to the roots of ``[evidence] tsa_ca_file`` when set, else to the chain's own self-signed root
(self-consistent only, not pinned).
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    TimeStampResponse,
    decode_timestamp_response,
)

from seal_verify.timestamp import MALFORMED, TimestampVerdict, verify_timestamp
from server.config import EvidenceSettings
from server.evidence.errors import TimestampFailed

logger = logging.getLogger(__name__)

#: The largest answer read from a TSA (a token with a long chain is a few kilobytes).
MAX_RESPONSE_BYTES = 1 << 20
HEADERS = {"Content-Type": "application/timestamp-query", "Accept": "application/timestamp-reply"}


@dataclass(frozen=True)
class Stamp:
    """A verified time stamp: the TSA's answer as it came (DER TimeStampResp), the chain kept with it (PEM), and
    the verdict on it."""

    response: bytes
    chain_pem: bytes
    verdict: TimestampVerdict


class TsaClient:
    """Asks the TSA at ``url`` for verified time stamps; ``roots_file``: PEM roots its chain must lead to."""

    def __init__(self, url: str, *, roots_file: Path | None = None, timeout_s: float = 10.0) -> None:
        self.url = url
        self.roots_file = roots_file
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: EvidenceSettings) -> TsaClient | None:
        """The client of ``[evidence] tsa_url``, or ``None`` when no TSA is configured."""
        if settings.tsa_url is None:
            return None
        return cls(settings.tsa_url, roots_file=settings.tsa_ca_file, timeout_s=settings.tsa_timeout_s)

    def stamp(self, data: bytes) -> Stamp:
        """A time stamp of ``data`` that verifies; else :class:`TimestampFailed` with the reason."""
        roots = self._roots()
        request = (
            TimestampRequestBuilder()
            .data(data)
            .hash_algorithm(HashAlgorithm.SHA256)
            .nonce(nonce=True)
            .cert_request(cert_request=True)
            .build()
        )
        body = self._post(request.as_bytes())
        response = _decode(body)
        if response.status != PKIStatus.GRANTED:
            said = "; ".join(response.status_string) or "no reason given"
            raise TimestampFailed("refused", f"the TSA refused the time stamp (status {response.status}: {said})")
        try:
            nonce = response.tst_info.nonce
        except MALFORMED as exc:
            raise TimestampFailed("malformed", f"the TSA's token is malformed: {exc}") from None
        if nonce != request.nonce:
            raise TimestampFailed("unverified", "the TSA's answer does not carry the query's nonce")
        chain = _chain_pem(response, roots)
        verdict = verify_timestamp(body, data, chain, roots)
        if not verdict.ok:
            raise TimestampFailed("unverified", f"the TSA's time stamp does not verify: {verdict.reason}")
        return Stamp(body, chain, verdict)

    def _roots(self) -> bytes | None:
        if self.roots_file is None:
            return None
        try:
            return self.roots_file.read_bytes()
        except OSError as exc:
            raise TimestampFailed(
                "roots", f"cannot read [evidence] tsa_ca_file {self.roots_file}: {exc.strerror}"
            ) from None

    def _post(self, query: bytes) -> bytes:
        """POST ``query``; the answer's body. The whole exchange is bounded by ``timeout_s`` (a watchdog shuts the
        socket down then), not only each read: a TSA trickling its answer is given up like one that is down."""
        url = urllib.parse.urlsplit(self.url)
        kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        connection = kind(url.hostname or "", url.port, timeout=self.timeout_s)
        late = threading.Event()
        watchdog: threading.Timer | None = None
        started = time.monotonic()
        try:
            connection.connect()  # within timeout_s; the socket is the watchdog's (the connection lets go of it)
            remaining = max(self.timeout_s - (time.monotonic() - started), 0.0)
            watchdog = threading.Timer(remaining, _cut, args=(connection.sock, late))
            watchdog.start()
            connection.request("POST", (url.path or "/") + (f"?{url.query}" if url.query else ""), query, HEADERS)
            answer = connection.getresponse()
            body = answer.read(MAX_RESPONSE_BYTES + 1)
        except (OSError, http.client.HTTPException) as exc:
            why = f"did not answer within {self.timeout_s:g} s" if late.is_set() else f"cannot be reached: {exc!r}"
            raise TimestampFailed("unreachable", f"the TSA {self.url} {why}") from None
        finally:
            if watchdog is not None:
                watchdog.cancel()
            connection.close()
        if late.is_set():  # cut off at the end: what was read may be short
            raise TimestampFailed("unreachable", f"the TSA {self.url} did not answer within {self.timeout_s:g} s")
        if answer.status != 200:
            raise TimestampFailed("http_error", f"the TSA {self.url} answered HTTP {answer.status} {answer.reason}")
        if len(body) > MAX_RESPONSE_BYTES:
            raise TimestampFailed("malformed", f"the TSA's answer is larger than {MAX_RESPONSE_BYTES} bytes")
        return body


def _cut(sock: socket.socket, late: threading.Event) -> None:
    """The watchdog's act: wake the read under way (shutdown, unlike close, does that from another thread)."""
    late.set()
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _decode(body: bytes) -> TimeStampResponse:
    try:
        response = decode_timestamp_response(body)
    except MALFORMED as exc:
        raise TimestampFailed("malformed", f"the TSA's answer is not an RFC 3161 TimeStampResp: {exc}") from None
    return response


def _chain_pem(response: TimeStampResponse, roots_pem: bytes | None) -> bytes:
    """The certificates the token carries, and the pinned roots that issued one of them, as PEM."""
    try:
        certs = [x509.load_der_x509_certificate(der) for der in response.signed_data.certificates]
        roots = x509.load_pem_x509_certificates(roots_pem) if roots_pem else []
    except MALFORMED as exc:
        raise TimestampFailed("malformed", f"a certificate of the TSA or of tsa_ca_file is malformed: {exc}") from None
    issuers = {cert.issuer for cert in certs}
    certs += [root for root in roots if root.subject in issuers and root not in certs]
    certs.sort(key=lambda cert: cert.issuer == cert.subject)  # the TSA's own first, roots last
    return b"".join(cert.public_bytes(Encoding.PEM) for cert in certs)
