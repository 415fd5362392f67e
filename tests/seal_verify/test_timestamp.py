"""Offline verification of RFC 3161 tokens (seal_verify.timestamp) against tokens of a real ``openssl ts`` TSA:
a token verifies over its data, pinned or only self-consistent; other data, another root, a token whose bytes were
altered or a chain that is not the TSA's do not; the chain is judged at the token's genTime, not now."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from rfc3161_client import HashAlgorithm, TimestampRequestBuilder

from seal_dev.tsa import TsaPki, make_tsa_pki, refusal, sign_query
from seal_verify.timestamp import verify_timestamp

#: A checkpoint note's bytes (the data a log's time stamp covers).
NOTE = "seal.example/log\n7\nq7Jc0mTyhKXF3Q8m9q7Jc0mTyhKXF3Q8m9q7Jc0mTyg=\n\n\u2014 seal.example/log AAAA\n".encode()


def token_of(pki: TsaPki, data: bytes, *, algorithm: HashAlgorithm = HashAlgorithm.SHA256, certs: bool = True) -> bytes:
    query = TimestampRequestBuilder().data(data).hash_algorithm(algorithm).cert_request(cert_request=certs).build()
    return sign_query(pki, query.as_bytes())


def chain_of(pki: TsaPki) -> bytes:
    return pki.tsa_pem.read_bytes() + pki.ca_pem.read_bytes()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TsaPki:
    return make_tsa_pki(tmp_path_factory.mktemp("tsa"))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> TsaPki:
    return make_tsa_pki(tmp_path_factory.mktemp("other-tsa"), name="Seal Test TSA")  # the same names, other keys


def test_a_token_verifies_pinned_and_unpinned(pki: TsaPki) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    token = token_of(pki, NOTE)
    pinned = verify_timestamp(token, NOTE, chain_of(pki), pki.ca_pem.read_bytes())
    assert pinned.ok, pinned.reason
    assert pinned.pinned and pinned.reason == ""
    assert pinned.tsa_subject == "O=Seal Tests,CN=Seal Test TSA"
    assert pinned.gen_time is not None and before <= pinned.gen_time <= datetime.now(UTC)
    unpinned = verify_timestamp(token, NOTE, chain_of(pki), None)
    assert unpinned.ok and not unpinned.pinned
    # The chain kept may hold only the TSA's certificate when the root is pinned.
    assert verify_timestamp(token, NOTE, pki.tsa_pem.read_bytes(), pki.ca_pem.read_bytes()).ok


def test_other_data_fails(pki: TsaPki) -> None:
    token = token_of(pki, NOTE)
    verdict = verify_timestamp(token, NOTE.replace(b"7", b"8", 1), chain_of(pki), pki.ca_pem.read_bytes())
    assert not verdict.ok
    assert "imprint" in verdict.reason


def test_a_token_over_another_hash_than_sha256_fails(pki: TsaPki) -> None:
    verdict = verify_timestamp(token_of(pki, NOTE, algorithm=HashAlgorithm.SHA512), NOTE, chain_of(pki), None)
    assert not verdict.ok and "SHA-256" in verdict.reason


def test_another_root_fails_even_when_the_chain_carries_the_tsas_own(pki: TsaPki, other_pki: TsaPki) -> None:
    token = token_of(pki, NOTE)
    verdict = verify_timestamp(token, NOTE, chain_of(pki), other_pki.ca_pem.read_bytes())
    assert not verdict.ok and verdict.pinned
    assert "does not verify" in verdict.reason


def test_a_chain_of_another_tsa_fails(pki: TsaPki, other_pki: TsaPki) -> None:
    token = token_of(pki, NOTE)
    for roots in (None, other_pki.ca_pem.read_bytes()):
        verdict = verify_timestamp(token, NOTE, chain_of(other_pki), roots)
        assert not verdict.ok, roots
    # The token carries the TSA's root: a kept chain without it was cut.
    cut = verify_timestamp(token, NOTE, pki.tsa_pem.read_bytes(), None)
    assert not cut.ok and "not in the kept chain" in cut.reason
    # A token without certificates: unpinned, the kept chain must end in a root, the TSA's certificate alone is
    # not enough; pinned, it is.
    bare = token_of(pki, NOTE, certs=False)
    alone = verify_timestamp(bare, NOTE, pki.tsa_pem.read_bytes(), None)
    assert not alone.ok and "self-signed root" in alone.reason
    assert verify_timestamp(bare, NOTE, pki.tsa_pem.read_bytes(), pki.ca_pem.read_bytes()).ok
    assert not verify_timestamp(bare, NOTE, b"", pki.ca_pem.read_bytes()).ok


def test_a_refusal_is_no_time_stamp(pki: TsaPki) -> None:
    verdict = verify_timestamp(refusal(pki), NOTE, chain_of(pki), pki.ca_pem.read_bytes())
    assert not verdict.ok and "did not grant" in verdict.reason and "not supported" in verdict.reason


def test_garbage_is_a_verdict_not_a_crash(pki: TsaPki) -> None:
    for token in (b"", b"\x30\x03abc", b"not DER at all"):
        verdict = verify_timestamp(token, NOTE, chain_of(pki), None)
        assert not verdict.ok and "TimeStampResp" in verdict.reason
    bad_chain = verify_timestamp(token_of(pki, NOTE), NOTE, b"-----BEGIN CERTIFICATE-----\nAAAA\n", None)
    assert not bad_chain.ok


def test_every_altered_byte_of_the_signed_parts_fails_and_none_crashes(pki: TsaPki) -> None:
    """Each byte of the token flipped in turn. The TSA's signature covers the TSTInfo (with the imprint and the
    genTime) and the signature value itself; flips there must all fail. A few bytes of the unsigned CMS envelope
    (SignedData version, the signature algorithm's identifier) are parsed leniently by OpenSSL: the bundle's
    manifest, not the token, covers those — counted and reported, never silently."""
    days = {datetime.now(UTC).strftime("%Y%m%d").encode()}
    token = token_of(pki, NOTE)
    days.add(datetime.now(UTC).strftime("%Y%m%d").encode())  # (midnight may pass while the token is made)
    digest = hashlib.sha256(NOTE).digest()
    imprint_at = token.index(digest)
    signed = set(range(imprint_at, imprint_at + len(digest))) | set(range(len(token) - 64, len(token)))
    gen_time = min(token.index(day) for day in days if day in token)  # the GeneralizedTime's digits
    signed |= set(range(gen_time, gen_time + 14))
    still_ok = []
    for index in range(len(token)):
        altered = bytearray(token)
        altered[index] ^= 0x01
        if verify_timestamp(bytes(altered), NOTE, chain_of(pki), pki.ca_pem.read_bytes()).ok:
            still_ok.append(index)
    print(f"{len(token)} flips tried; {len(still_ok)} in the unsigned envelope still verify: {still_ok}")
    assert not signed & set(still_ok)
    assert len(still_ok) < 0.02 * len(token)


def test_an_embedded_certificate_altered_fails(pki: TsaPki) -> None:
    token = bytearray(token_of(pki, NOTE))
    root_der = x509.load_pem_x509_certificate(pki.ca_pem.read_bytes()).tbs_certificate_bytes
    at = bytes(token).index(root_der[-40:])  # in the root certificate the token carries (not signed by the TSA)
    token[at + 5] ^= 0x01
    verdict = verify_timestamp(bytes(token), NOTE, chain_of(pki), pki.ca_pem.read_bytes())
    assert not verdict.ok


def test_a_tsa_certificate_expired_since_still_verifies_at_gen_time(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    pki = make_tsa_pki(tmp_path / "short", not_before=now - timedelta(hours=1), not_after=now + timedelta(seconds=5))
    token = token_of(pki, NOTE)
    expiry = x509.load_pem_x509_certificate(pki.tsa_pem.read_bytes()).not_valid_after_utc
    time.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds()) + 1.1)
    assert datetime.now(UTC) > expiry  # expired now...
    verdict = verify_timestamp(token, NOTE, chain_of(pki), pki.ca_pem.read_bytes())
    assert verdict.ok, verdict.reason  # ...valid when it signed
    assert verdict.gen_time is not None and verdict.gen_time <= expiry


def test_a_tsa_certificate_not_valid_at_gen_time_fails(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    later = make_tsa_pki(tmp_path / "later", not_before=now + timedelta(days=1), not_after=now + timedelta(days=2))
    earlier = make_tsa_pki(tmp_path / "earlier", not_before=now - timedelta(days=2), not_after=now - timedelta(days=1))
    for pki in (later, earlier):
        verdict = verify_timestamp(token_of(pki, NOTE), NOTE, chain_of(pki), pki.ca_pem.read_bytes())
        assert not verdict.ok
        assert "not yet valid" in verdict.reason or "expired" in verdict.reason, verdict.reason


def test_a_certificate_the_library_cannot_parse_fails_without_a_panic(pki: TsaPki) -> None:
    """A pinned root whose issuer's UTF8String is not UTF-8: cryptography loads it (names are parsed when read),
    then rfc3161-client's Rust code unwrapped OpenSSL's parse error and panicked — pyo3's PanicException, a
    BaseException that went through every ``except Exception`` and ended seal-verify with a traceback."""
    token = token_of(pki, NOTE)
    der = bytearray(x509.load_pem_x509_certificate(pki.ca_pem.read_bytes()).public_bytes(Encoding.DER))
    at = der.find(b"Seal Test TSA Root")  # the issuer's, before the subject's
    der[at + 2] = 0xA1  # a UTF-8 continuation byte with nothing to continue
    root = x509.load_der_x509_certificate(bytes(der)).public_bytes(Encoding.PEM)
    verdict = verify_timestamp(token, NOTE, chain_of(pki), root)
    assert not verdict.ok and verdict.pinned
    assert "cannot parse" in verdict.reason, verdict.reason


def test_a_chain_of_thousands_of_certificates_is_refused_before_they_are_compared(pki: TsaPki) -> None:
    """Each certificate of the kept chain was compared with every one before it (and with the token's, and checked
    for a self-signature): 20,000 distinct ones (12 MiB, 200 KB zipped) took 27 s, the 256 MiB a member may hold
    hours. A chain and the token hold at most MAX_CERTIFICATES certificates, pinned roots MAX_ROOTS."""
    token = token_of(pki, NOTE)
    der = x509.load_pem_x509_certificate(pki.ca_pem.read_bytes()).public_bytes(Encoding.DER)
    serial = x509.load_der_x509_certificate(der).serial_number.to_bytes(20, "big")
    at = der.find(serial[-8:])
    others = []
    for n in range(5000):  # the root with another serial number: distinct certificates that parse
        changed = der[:at] + n.to_bytes(4, "big") + der[at + 4 :]
        others.append(x509.load_der_x509_certificate(changed).public_bytes(Encoding.PEM))
    for chain, roots, most in ((chain_of(pki) + b"".join(others), None, 100), (chain_of(pki), b"".join(others), 1000)):
        verdict = verify_timestamp(token, NOTE, chain, roots)
        assert not verdict.ok and f"more than {most} certificates" in verdict.reason, verdict.reason
    assert verify_timestamp(token, NOTE, chain_of(pki) + b"".join(others[:90]), None).ok
