"""A throw-away RFC 3161 time-stamping authority for the tests and the demo, made with ``openssl`` alone.

:func:`make_tsa_pki` writes, in a directory, a root CA (``ca.pem``) and a TSA certificate it issued (``tsa.pem``,
extendedKeyUsage critical timeStamping), with the validity asked for (``openssl ca -startdate/-enddate``: a TSA
certificate that expires in a few seconds is how a test shows a token still verifies at its genTime).
:class:`LocalTsa` serves ``POST application/timestamp-query`` on 127.0.0.1 and answers each query with ``openssl ts
-reply`` (the signer certificate and the CA in the token when the query asks for them). Nothing is fetched from
anywhere.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

CA_CONFIG = """\
[ ca ]
default_ca = local_ca

[ local_ca ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/ca.serial
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
policy = any_name
unique_subject = no
copy_extensions = none

[ any_name ]
commonName = supplied
organizationName = optional

[ tsa_cert ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ tsa ]
default_tsa = local_tsa

[ local_tsa ]
dir = {dir}
serial = $dir/tsa.serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
certs = $dir/ca.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
other_policies = 1.2.3.4.5.6
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def _openssl(*args: str | Path, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(["openssl", *map(str, args)], input=stdin, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def _asn1_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")


@dataclass(frozen=True)
class TsaPki:
    """The files of a throw-away TSA: its root CA and its signing certificate (PEM) and keys."""

    directory: Path

    @property
    def ca_pem(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def tsa_pem(self) -> Path:
        return self.directory / "tsa.pem"

    @property
    def config(self) -> Path:
        return self.directory / "openssl.cnf"


def make_tsa_pki(
    directory: Path,
    *,
    name: str = "Seal Test TSA",
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> TsaPki:
    """A root CA and a TSA certificate it issued, in ``directory`` (created). The TSA certificate is valid from
    ``not_before`` (default: an hour ago) to ``not_after`` (default: in a year)."""
    now = datetime.now(UTC)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "newcerts").mkdir(exist_ok=True)
    (directory / "index.txt").write_text("")
    (directory / "ca.serial").write_text("1000\n")
    (directory / "tsa.serial").write_text("01\n")
    pki = TsaPki(directory)
    pki.config.write_text(CA_CONFIG.format(dir=directory))
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", directory / "ca.key", "-out", pki.ca_pem, "-days", "3650",
        "-subj", f"/O=Seal Tests/CN={name} Root",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    _openssl("req", "-new", *ec, "-keyout", directory / "tsa.key", "-out", directory / "tsa.csr",
             "-subj", f"/O=Seal Tests/CN={name}")  # fmt: skip
    _openssl(
        "ca", "-batch", "-config", pki.config, "-in", directory / "tsa.csr", "-out", pki.tsa_pem, "-notext",
        "-extensions", "tsa_cert",
        "-startdate", _asn1_time(not_before or now - timedelta(hours=1)),
        "-enddate", _asn1_time(not_after or now + timedelta(days=365)),
    )  # fmt: skip
    return pki


def sign_query(pki: TsaPki, query: bytes) -> bytes:
    """``openssl ts -reply`` to ``query`` (DER TimeStampReq): the DER TimeStampResp."""
    with tempfile.NamedTemporaryFile(suffix=".tsq", dir=pki.directory) as tsq:
        tsq.write(query)
        tsq.flush()
        return _openssl("ts", "-reply", "-config", pki.config, "-queryfile", tsq.name, "-out", "-")


def refusal(pki: TsaPki) -> bytes:
    """A TimeStampResp that refuses (status rejection, badAlg): ``openssl ts -reply`` to a SHA-1 query."""
    with tempfile.NamedTemporaryFile(suffix=".txt", dir=pki.directory) as data:
        query = _openssl("ts", "-query", "-data", data.name, "-sha1", "-cert")
    return sign_query(pki, query)


#: How the local TSA answers: as a TSA does, with HTTP 500, with bytes that are no TimeStampResp, or with a refusal.
#: ``trickle``: the right answer, a byte every :data:`TRICKLE_S` seconds (a TSA that answers, slowly).
Fault = Literal["none", "http-500", "garbage", "refuse", "trickle"]
TRICKLE_S = 0.2


class LocalTsa:
    """An HTTP time-stamping authority on 127.0.0.1 backed by ``openssl ts -reply``; a context manager.

    :attr:`fault` makes it answer wrongly; :attr:`queries` counts the queries it received; :attr:`before_reply`, if
    set, is called (once, then cleared) before the next answer — a test's way to act while a client waits."""

    def __init__(self, pki: TsaPki) -> None:
        self.pki = pki
        self.fault: Fault = "none"
        self.queries = 0
        self.before_reply: Callable[[], object] | None = None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/tsa"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server name)
                query = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                tsa.queries += 1
                hook, tsa.before_reply = tsa.before_reply, None
                if hook is not None:
                    hook()
                if tsa.fault == "http-500":
                    self.send_error(500, "the TSA is out of order")
                    return
                try:
                    if tsa.fault == "refuse":
                        body = refusal(tsa.pki)
                    else:
                        body = b"\x30\x03garbage" if tsa.fault == "garbage" else sign_query(tsa.pki, query)
                except RuntimeError as exc:
                    self.send_error(400, str(exc)[:200])
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if tsa.fault != "trickle":
                    self.wfile.write(body)
                    return
                try:
                    for byte in body:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(TRICKLE_S)
                except OSError:  # the client gave up
                    pass

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the http.server name)
                logger.debug("local TSA: " + format, *args)

        return Handler

    def start(self) -> LocalTsa:
        serve = lambda: self._server.serve_forever(poll_interval=0.05)  # noqa: E731 (stops within 50 ms)
        self._thread = threading.Thread(target=serve, name="local-tsa", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        self._thread = None

    def __enter__(self) -> LocalTsa:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
