"""Password hashing with argon2id (argon2-cffi's defaults: 64 MiB, 3 passes) and the password rules.

Each hash or verification takes 64 MiB for its duration; the API serves requests on a thread pool of ~40, so at
most :data:`MAX_CONCURRENT_HASHES` run at once (:data:`hashing_slots`) and the others wait their turn, instead of a
burst of logins taking gigabytes.
"""

from __future__ import annotations

import threading
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256

MAX_CONCURRENT_HASHES = 4

_hasher = PasswordHasher()
hashing_slots = threading.BoundedSemaphore(MAX_CONCURRENT_HASHES)


@cache
def _dummy_hash() -> str:
    """Verified against when the username is unknown, so that a wrong username costs as long as a wrong password."""
    return _hasher.hash("no user has this password, it only burns time")


def check_password_rules(password: str) -> None:
    """Raise ``ValueError`` unless ``password`` is acceptable."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(
            f"密码至少 {MIN_PASSWORD_LENGTH} 个字符。 / a password needs at least {MIN_PASSWORD_LENGTH} characters"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(
            f"密码最多 {MAX_PASSWORD_LENGTH} 个字符。 / a password has at most {MAX_PASSWORD_LENGTH} characters"
        )


def hash_password(password: str) -> str:
    """The argon2id hash of ``password``, after checking the rules."""
    check_password_rules(password)
    with hashing_slots:
        return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Does ``password`` match? With ``None`` (no such user) spend the same time and answer no."""
    against = password_hash or _dummy_hash()
    try:
        with hashing_slots:
            return _hasher.verify(against, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def rehashed(password_hash: str, password: str) -> str | None:
    """A new hash of ``password`` (which matches ``password_hash``) if ``password_hash`` was made with other argon2
    parameters than the current ones, else ``None``. The rules are not checked again: it is the password in use."""
    if not _hasher.check_needs_rehash(password_hash):
        return None
    with hashing_slots:
        return _hasher.hash(password)
