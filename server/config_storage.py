"""The ``[storage]`` section of the server's settings (:mod:`server.config`): where snapshots and removal proofs are
kept — a directory (the default) or an S3-compatible bucket (Garage, Ceph RGW, SeaweedFS, AWS S3)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from server.config_types import BucketName, OptionalHttpUrl, OptionalName, OptionalPath

#: The environment variable holding the S3 secret access key when ``secret_access_key_file`` is not set.
S3_SECRET_ENV = "SEAL_S3_SECRET_ACCESS_KEY"


class StorageSettings(BaseModel):
    """Where the files named by their SHA-256 live: snapshots and the proof files of removal requests."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["directory", "s3"] = Field(
        "directory",
        description='"directory": snapshot_dir and [removal] proof_dir on this machine. "s3": a bucket of an '
        "S3-compatible store (Garage, Ceph RGW, SeaweedFS, AWS S3), keys <key_prefix>snapshots/<sha256>.jpg and "
        "<key_prefix>removal-proofs/<sha256>.<ext>, each written once (PUT with If-None-Match: *); the server "
        "refuses to start if the bucket cannot be reached, the credentials are refused or the store does not "
        "honour If-None-Match.",
    )
    endpoint_url: OptionalHttpUrl = Field(
        None,
        description="The S3 endpoint, such as https://s3.court.example:3900 (Garage) or https://rgw.court.example "
        '(Ceph RGW). "": AWS S3 itself, in region.',
    )
    bucket: BucketName = Field(None, description='The bucket (created beforehand); required with backend = "s3".')
    region: str = Field(
        "us-east-1",
        min_length=1,
        max_length=64,
        description='The region the requests are signed for (Garage: its s3_region, often "garage").',
    )
    key_prefix: str = Field(
        "",
        max_length=200,
        pattern=r"^(?:[A-Za-z0-9._-]+/)*$",
        description='Put before every key, ending with "/" (e.g. "court-0214/"), so that several courts can share '
        'a bucket; no segment may be "." or "..". "": none.',
    )
    access_key_id: OptionalName = Field(
        None, max_length=128, description='The access key id; required with backend = "s3".'
    )
    secret_access_key_file: OptionalPath = Field(
        None,
        description="File holding the secret access key (first line; mode 0600). Unset: the environment variable "
        f"{S3_SECRET_ENV}. There is no default, and the secret is never logged.",
    )
    verify_tls: bool = Field(
        True, description="Verify the endpoint's TLS certificate; turn off only for a test store, never in production."
    )
    ca_file: OptionalPath = Field(
        None,
        description="CA certificate(s) of the endpoint's TLS certificate, if not a public CA's. Unset: the system's.",
    )
    addressing_style: Literal["path", "virtual"] = Field(
        "path",
        description='"path": https://endpoint/bucket/key (Garage, Ceph RGW, SeaweedFS, and AWS too). "virtual": '
        "https://bucket.endpoint/key.",
    )
    connect_timeout_s: float = Field(3.0, ge=0.1, le=60, description="Time allowed to connect to the endpoint.")
    read_timeout_s: float = Field(
        5.0, ge=0.1, le=300, description="Time allowed for the endpoint's answer (each read of it, not the whole)."
    )
    max_attempts: int = Field(
        2,
        ge=1,
        le=10,
        description="Attempts per request (the first included) when the endpoint fails or times out: a dead "
        "endpoint holds a snapshot's ingest at most this many times connect_timeout_s + read_timeout_s (a write "
        "waits a second more for the store's 100 Continue), never inside a database transaction.",
    )
    pause_after_failure_s: float = Field(
        10.0,
        ge=0,
        le=600,
        description="After the store failed as a whole (no answer, 503, refused credentials), requests fail at "
        "once for this long (doubled after each further failure in a row, up to 5 minutes) instead of each waiting "
        "for its timeouts: the snapshots are quarantined unreceipted, and the seals send them again. An error about "
        "one object fails that request alone. 0: always try.",
    )

    @field_validator("endpoint_url")
    @classmethod
    def _no_credentials_in_the_url(cls, url: str | None) -> str | None:
        # The address is shown (check-config) and logged with every failure of the store: it must hold no secret.
        if url is not None and "@" in urlsplit(url).netloc:
            raise ValueError(
                "地址中不得含用户名或密码（地址会写入日志），请使用 access_key_id 与 secret_access_key_file / "
                "the endpoint's URL holds a user name or password: give them as access_key_id and "
                "secret_access_key_file, never in the URL (it is logged)"
            )
        return url

    @field_validator("key_prefix")
    @classmethod
    def _no_dot_segments(cls, prefix: str) -> str:
        # A store or a proxy in front of it that normalises the request's path would take "a/../" out of the prefix
        # (and "../" out of the bucket): keys go exactly where they are named, or nowhere.
        if any(segment in (".", "..") for segment in prefix.split("/")):
            raise ValueError(
                f'key_prefix 的各级不得为 "." 或 ".." / a segment of {prefix!r} is "." or "..": name the prefix\'s '
                "directories plainly"
            )
        return prefix

    @model_validator(mode="after")
    def _s3_needs_a_bucket_and_a_key(self) -> StorageSettings:
        if self.backend == "s3":
            missing = [name for name in ("bucket", "access_key_id") if getattr(self, name) is None]
            if missing:
                raise ValueError(f'backend = "s3" needs {" and ".join(missing)}')
        return self
