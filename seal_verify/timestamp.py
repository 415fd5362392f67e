"""Offline verification of an RFC 3161 time stamp over a log checkpoint (the bundle's ``log/checkpoint.tsr``).

A token here is the DER ``TimeStampResp`` as the TSA returned it. It verifies when the TSA granted it, its message
imprint is SHA-256 of the data (the checkpoint note's bytes), the TSA's CMS signature holds, the signing certificate
carries the critical extendedKeyUsage timeStamping, and its chain leads to a trust anchor *at the token's genTime*
(not now: a TSA certificate that expired since still vouches for the times it signed while valid).

The anchor is the pinned roots when given (``roots_pem``: ``pinned`` is true). Without them the anchor is the
self-signed certificate of the kept chain (``chain_pem``): that proves only that the chain is self-consistent, not
who the TSA is, and the verdict says so (``pinned`` false).

Uses ``rfc3161-client`` (Trail of Bits; the CMS check is OpenSSL's, at genTime) and ``cryptography``; never the server.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from rfc3161_client import PKIStatus, TimeStampResponse, VerificationError, VerifierBuilder, decode_timestamp_response

from seal_verify.errors import is_library_panic

SHA256 = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")
#: What parsing hostile bytes may raise (rfc3161-client and cryptography report bad DER as ValueError, a bad X.509
#: version as InvalidVersion, an unknown key or signature algorithm as UnsupportedAlgorithm, a name whose string
#: has an unknown ASN.1 type as KeyError).
MALFORMED = (ValueError, TypeError, KeyError, x509.InvalidVersion, UnsupportedAlgorithm)
#: A token is a few kilobytes and a TSA's chain a few certificates. Each certificate of the chain was compared with
#: every other (and the token's, and checked for a self-signature): 20,000 of them took 27 s, the 256 MiB a bundle's
#: member may hold hours. Larger tokens and chains are refused before they are parsed, and pinned roots of more than a
#: system's whole set of CAs.
MAX_TOKEN_BYTES = 1024 * 1024
MAX_CERTIFICATES = 100
MAX_ROOTS = 1000


@dataclass(frozen=True)
class TimestampVerdict:
    """Whether a token holds, why not (``reason``, English; empty when it holds), when the TSA says the data existed
    (``gen_time``, UTC), who signed (``tsa_subject``, RFC 4514), and whether the chain was checked against pinned
    roots (``pinned``) or only against itself."""

    ok: bool
    reason: str
    gen_time: datetime | None = None
    tsa_subject: str | None = None
    pinned: bool = False


def verify_timestamp(
    token_der: bytes, data: bytes, chain_pem: bytes, roots_pem: bytes | None = None
) -> TimestampVerdict:
    """The verdict on ``token_der`` (a DER TimeStampResp) as a time stamp of ``data``, with the TSA's certificate
    chain ``chain_pem`` (PEM, as kept), against the roots ``roots_pem`` (PEM) if given."""
    try:
        return _verify(token_der, data, chain_pem, roots_pem)
    except BaseException as exc:
        if not is_library_panic(exc):
            raise
        said = str(exc).partition("(")[0][:200]  # the panic's first words, without OpenSSL's error stack
        reason = f"the time stamp library cannot parse a certificate or the token (it panicked: {said})"
        return TimestampVerdict(False, reason, pinned=roots_pem is not None)


def _verify(token_der: bytes, data: bytes, chain_pem: bytes, roots_pem: bytes | None) -> TimestampVerdict:
    pinned = roots_pem is not None
    if len(token_der) > MAX_TOKEN_BYTES:
        return TimestampVerdict(False, f"the token has more than {MAX_TOKEN_BYTES} bytes", pinned=pinned)
    bounds = (("the kept chain holds", chain_pem, MAX_CERTIFICATES), ("the roots hold", roots_pem, MAX_ROOTS))
    for what, pem, most in bounds:
        if pem is not None and pem.count(b"-----BEGIN CERTIFICATE-----") > most:
            return TimestampVerdict(False, f"{what} more than {most} certificates", pinned=pinned)
    try:
        response = decode_timestamp_response(token_der)
        if response.status != PKIStatus.GRANTED:  # no token inside (rfc3161-client refuses grantedWithMods too)
            said = "; ".join(response.status_string) or "no reason given"
            reason = f"the TSA did not grant a time stamp (status {response.status}: {said})"
            return TimestampVerdict(False, reason, pinned=pinned)
        gen_time = response.tst_info.gen_time
        carried = response.signed_data.certificates
        if len(carried) > MAX_CERTIFICATES:
            reason = f"the token carries more than {MAX_CERTIFICATES} certificates"
            return TimestampVerdict(False, reason, pinned=pinned)
        embedded = [x509.load_der_x509_certificate(der) for der in carried]
    except MALFORMED as exc:
        return TimestampVerdict(False, f"not a well-formed RFC 3161 TimeStampResp: {exc}", pinned=pinned)
    try:
        chain = _unique(x509.load_pem_x509_certificates(chain_pem)) if chain_pem.strip() else []
        roots = _unique(x509.load_pem_x509_certificates(roots_pem)) if roots_pem is not None else []
    except MALFORMED as exc:
        return TimestampVerdict(False, f"a certificate is not PEM X.509: {exc}", gen_time, pinned=pinned)
    if any(cert not in chain and cert not in roots for cert in embedded):
        reason = (
            "a certificate the token carries is not in the kept chain (nor pinned): the token or the chain was altered"
        )
        return TimestampVerdict(False, reason, gen_time, pinned=pinned)
    try:
        signer = _signer(response, chain)
        subject = signer.subject.rfc4514_string() if signer is not None else None
        reason = _check(response, data, chain, roots, signer, pinned)
    except MALFORMED as exc:
        return TimestampVerdict(False, f"the time stamp is malformed: {exc}", gen_time, pinned=pinned)
    return TimestampVerdict(not reason, reason, gen_time, subject, pinned)


def _check(
    response: TimeStampResponse,
    data: bytes,
    chain: list[x509.Certificate],
    roots: list[x509.Certificate],
    signer: x509.Certificate | None,
    pinned: bool,
) -> str:
    """Why the token does not hold, or ``""``."""
    imprint = response.tst_info.message_imprint
    if imprint.hash_algorithm != SHA256:
        return f"the message imprint is not SHA-256 (algorithm {imprint.hash_algorithm.dotted_string})"
    if imprint.message != hashlib.sha256(data).digest():
        return "the message imprint is not SHA-256 of the data: the token stamps other bytes"
    if signer is None:
        return "the certificate chain has no certificate matching the token's signer"
    if not pinned:
        roots = [cert for cert in chain if _self_signed(cert)]
        if not roots:
            return "the certificate chain has no self-signed root; pin the TSA's root to verify it"
    elif _self_signed(signer) and signer not in roots:
        return "the TSA's certificate is self-signed and not one of the pinned roots"
    # rfc3161-client puts every certificate it is given in one OpenSSL store, where a self-signed one is an anchor:
    # only the pinned roots may be self-signed, the chain's own root is left out.
    builder = VerifierBuilder(tsa_certificate=signer, roots=roots)
    for cert in chain:
        if cert != signer and cert not in roots and not _self_signed(cert):
            builder = builder.add_intermediate_certificate(cert)
    try:
        builder.build().verify(response, imprint.message)
    except VerificationError as exc:
        return f"the time stamp does not verify at its genTime {response.tst_info.gen_time.isoformat()}: {_said(exc)}"
    return ""


def _said(exc: VerificationError) -> str:
    """What OpenSSL said, without the error stack around it ("Verify error: certificate has expired")."""
    details = re.findall(r'(?:data|reason): "([^"]+)"', str(exc))
    return "; ".join(dict.fromkeys(details)) or str(exc)


def _signer(response: TimeStampResponse, certs: list[x509.Certificate]) -> x509.Certificate | None:
    """The certificate of ``certs`` named by the token's SignerInfo (issuer and serial number)."""
    infos = list(response.signed_data.signer_infos)
    if len(infos) != 1:
        return None
    info = infos[0]
    for cert in certs:
        if cert.issuer == info.issuer and cert.serial_number == info.serial_number:
            return cert
    return None


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _unique(certs: list[x509.Certificate]) -> list[x509.Certificate]:
    return list(dict.fromkeys(certs))  # a certificate hashes and compares by its DER bytes
