"""Sections of the server's settings (:mod:`server.config`) about the HTTP listener, alarms, liveness, the pages'
live stream and the court's live feed, the ingest workers' metrics, the evidence log and the printed notice."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network

from pydantic import BaseModel, ConfigDict, Field, field_validator

from seal_protocol.errors import SignatureError
from seal_protocol.signing import verify_key_from_b64
from seal_verify.notes import key_name_problem
from server.config_types import Networks, OptionalHttpUrl, OptionalPath, OptionalPort, PublicUrl, Texts


class HttpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", min_length=1, description="Address the REST API listens on.")
    port: int = Field(8080, ge=1, le=65535, description="TCP port of the REST API.")
    trusted_proxies: Networks = Field(
        (),
        max_length=64,
        description="Reverse proxies (their exact IP addresses, or CIDR networks) whose X-Forwarded-For is "
        "believed: a request from one of them is the right-most address of that header that is not one of them; "
        "one that names no such address (the proxy does not append it) has an unknown client, who may not sign in "
        "nor read /metrics (a warning is logged). A peer not listed is the client itself, whatever it sends: "
        "forwarding headers (X-Forwarded-For, Forwarded, X-Real-IP) from it are ignored and logged, it may sign in "
        "(so the clients of a proxy left out of this list share its address and one login throttle) but not read "
        "/metrics. Empty (the default): every client is the socket's peer. See docs/deploy.md.",
    )
    metrics_from: Networks = Field(
        (IPv4Network("127.0.0.0/8"), IPv6Network("::1/128")),
        max_length=64,
        description="Networks (IP addresses or CIDR networks) whose clients may read /metrics (Prometheus), the "
        "client being what trusted_proxies makes of the request; any other client, or an unknown one, gets 404. "
        "Default: this machine "
        "only — the counts (seals online, messages refused) are the court's, not the public's.",
    )
    limit_concurrency: int = Field(
        1000,
        ge=16,
        le=60000,
        description="Connections open at once (idle ones too) past which a request is answered 503 at once instead "
        "of being served (uvicorn's limit_concurrency): a flood of connections costs the server no more than this. "
        "Below the unit's LimitNOFILE (65536). A connection whose request headers never end is not answered at all: "
        "the proxy's client_header_timeout closes it (docs/deploy.md).",
    )
    body_deadline_s: float = Field(
        30.0,
        ge=1,
        le=3600,
        description="A request's body (any route's but a removal upload's, which has [removal] upload_deadline_s) "
        "must have arrived within this many seconds, or it is answered 408 and the connection closed; and, as an "
        "upload, bring [removal] upload_progress_bytes within every upload_progress_window_s of waiting for it. "
        "A body is at most 1 MiB there (a few kilobytes of JSON or a form).",
    )


class AlarmSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fold_window_s: int = Field(
        300,
        ge=0,
        le=7 * 24 * 3600,
        description="A repeat (same kind, same seal) within this long of the alarm's last occurrence is counted in "
        "the open or acknowledged alarm instead of opening a new one. Offline and missing events always fold.",
    )
    offline_grace_s: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="A seal that says it is offline (its Last Will, or a clean shutdown) gets its offline alarm only "
        "if it is not back (a new signed event) within this long: a seal that restarts pages nobody. 0: at once.",
    )


class LivenessSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    check_interval_s: float = Field(
        15.0, ge=0.05, le=3600, description="How often the server looks for seals silent for offline_after_s."
    )
    mark_forget_s: float = Field(
        600.0,
        ge=10,
        le=7 * 24 * 3600,
        description="An ingest worker whose caught-up mark was not written for this long is gone: it no longer holds "
        "back the liveness check and the commands' expiry.",
    )
    caught_up_wait_max_s: float = Field(
        900.0,
        ge=10,
        le=7 * 24 * 3600,
        description="The liveness check and the commands' expiry wait for a lagging ingest (one that has not stored "
        "what the broker held) at most this long in a row, then judge by the court's clock again.",
    )


class WebSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    heartbeat_s: float = Field(
        5.0,
        ge=0.05,
        le=60,
        description="A page's live stream sends a heartbeat this often; a page that hears nothing for three times "
        "as long shows that its data may be stale.",
    )
    stream_max_s: float = Field(
        300.0,
        ge=0.05,
        le=24 * 3600,
        description="A live stream ends after this long and the browser reconnects at once, missing nothing: "
        "a browser that vanished without a word holds its stream no longer than this.",
    )
    write_timeout_s: float = Field(
        10.0,
        ge=0.05,
        le=600,
        description="A live stream whose browser takes longer than this to take a message is dropped.",
    )
    replay_size: int = Field(
        2048,
        ge=16,
        le=1_000_000,
        description="How many recent changes the server keeps to replay to a reconnecting page; a page that missed "
        "more is told to reload.",
    )
    max_streams: int = Field(
        256,
        ge=1,
        le=100_000,
        description="The most live streams the server process holds at once, all users' together (besides 8 per "
        "sign-in session and 16 per user): one more is refused (429, Retry-After) and its page retries later. "
        "Every change is rendered once per stream, at most 4 at once: many streams make every page's update late.",
    )


class LiveSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    feed: bool = Field(
        True,
        description="Share what each court process commits (seal-server run, each seal-server ingest worker, on any "
        "machine) over the court's broker (topic court/v1/live, the court's account only), so that every process's "
        "pages show it live. false: a page shows only what its own process commits until it is reloaded (right "
        "only for one process).",
    )


class IngestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metrics_host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address each `seal-server ingest` worker serves its Prometheus /metrics on (seal-server run "
        "serves its own on the API's listener). Only an address Prometheus must reach: not a public one.",
    )
    metrics_port: OptionalPort = Field(
        None,
        ge=1,
        le=65535,
        description="Port of the first `seal-server ingest` worker's /metrics; worker i (1..N) serves on "
        "metrics_port + i - 1. Unset: the workers serve no metrics (each logs a warning at start).",
    )
    quarantine_seal_bytes: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="Bytes of refused messages the quarantine keeps per seal account; past it a refused message's "
        "row is still written (reason, topic, size, SHA-256, detail) without its bytes, logged and counted in "
        "seal_quarantine_bytes_not_kept_total. One seal's account cannot fill the court's disk.",
    )
    quarantine_total_bytes: int = Field(
        1024 * 1024 * 1024,
        ge=0,
        description="Bytes of refused messages the quarantine keeps in all, every seal account together; past it "
        "as past quarantine_seal_bytes. With several ingest workers each may pass it by an eighth.",
    )
    quarantine_seal_rows: int = Field(
        1000,
        ge=0,
        description="Refused messages each seal account may add as quarantine rows of their own per "
        "quarantine_window_s (refusals of the seal's own signed events, such as wrong_case, never count). Past it "
        "its refused messages are only counted, per reason and window (seal-server quarantine list shows them: "
        "N more refused, bytes not kept), its refusal_flood alarm is raised and one log line a minute says so; "
        "its valid signed events are still verified and stored. A flood of distinct garbage from one password costs "
        "the court a counter, not a row and a log line per message.",
    )
    quarantine_window_s: int = Field(
        3600, ge=60, le=7 * 24 * 3600, description="The window of quarantine_seal_rows, in seconds."
    )
    unnamed_snapshot_seal_bytes: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="Bytes of pictures no stored signed event of their seal names (filed provisionally under the "
        "seal's case: a picture may come before the snapshot_taken event that names it) that each seal account may "
        "add in a day; past it such a picture is refused as unnamed_snapshots (not written, not receipted: the seal "
        "keeps it and sends it again, and once its naming event is stored it gets in), logged and counted in "
        "seal_messages_rejected_total. A named picture never counts. Pictures are not signed: one seal's password "
        "cannot fill the court's disk with pictures no event names.",
    )


class EvidenceSettings(BaseModel):
    """The server's Merkle log over the stored events: its signing key, its name, how often it is signed, and the
    time-stamping authority that stamps its checkpoints."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    log_key_file: OptionalPath = Field(
        None,
        description="The log's own Ed25519 private key (base64, mode 0600; not the court's command key), created "
        "on first use or by `seal-server log-key`, which prints the public key to publish; back it up. Unset: the "
        "log is kept but no checkpoint is signed.",
    )
    log_origin: str = Field(
        "seal-server.invalid/log",
        min_length=1,
        max_length=255,
        description="The log's name in its checkpoints (and its key's name): unique to this server, such as "
        "`<court host name>/seal-log`; no spaces, '+' or control characters (a C2SP signed-note key name).",
    )
    checkpoint_interval_s: float = Field(
        10.0, ge=0.1, le=24 * 3600, description="How often a checkpoint is signed while the log grows."
    )
    tsa_url: OptionalHttpUrl = Field(
        None,
        description="An RFC 3161 time-stamping authority (http or https URL, POST application/timestamp-query): "
        "each signed checkpoint gets its token, verified and kept with the TSA's certificate chain; a TSA that is "
        "down is asked again on the next rounds, and the checkpoint is never held back. Unset: no time stamps.",
    )
    tsa_ca_file: OptionalPath = Field(
        None,
        description="PEM root certificate(s) the TSA's chain must lead to. Unset: a token is accepted when the "
        "chain the TSA returned is self-consistent (ends in its own self-signed root), which does not say who the "
        "TSA is; set it for a TSA you trust.",
    )
    tsa_timeout_s: float = Field(
        10.0, ge=0.5, le=300, description="How long to wait for the TSA's whole answer (connecting, sending, reading)."
    )

    @field_validator("log_origin")
    @classmethod
    def _origin_is_a_key_name(cls, value: str) -> str:
        """The origin is the key name of the log's signed notes: one that C2SP forbids makes checkpoints that every
        standard verifier (seal-verify, Go's sumdb/note) refuses."""
        if (problem := key_name_problem(value)) is not None:
            raise ValueError(
                f"not a log origin: {problem}; it names the log's key in its signed checkpoints (C2SP signed-note: "
                "non-empty, no Unicode spaces, '+' or ASCII control characters)"
            )
        return value


class NoticeSettings(BaseModel):
    """The printed seal notice (查封公告): its signing key, the public address its QR code points to, the font."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_file: OptionalPath = Field(
        None,
        description="The notice key: Ed25519 private key (base64, mode 0600; neither the command key nor the log's) "
        "that signs the token in each notice's QR code. Made by `seal-server init` or `seal-server notice-key`, "
        "which prints the public key to publish; back it up: notices signed with a lost key no longer verify. "
        "Unset or unreadable: no notice is issued.",
    )
    retired_public_keys: Texts = Field(
        (),
        max_length=16,
        description="The public keys (standard base64, as `seal-server notice-key` printed them) of the court's "
        "earlier notice keys, replaced but not compromised: notices already on doors, signed with one of them, "
        "still verify. Never list a key that may have leaked: its notices must be reissued instead "
        "(docs/notice.md).",
    )
    public_base_url: PublicUrl = Field(
        None,
        description="The address the public reaches this server at, such as `https://seal.court.example` (no "
        "trailing slash, query or fragment): the QR code of a notice holds `<public_base_url>/notice/<token>`. "
        "Unset: no notice is printed, rather than one with a wrong address.",
    )
    default_validity_days: int = Field(
        365,
        ge=1,
        le=3650,
        description="A notice's token expires at the end of its case's seizure term (查封期限) or, for a case with no "
        "term recorded, this many days after it is issued.",
    )
    font_file: OptionalPath = Field(
        None,
        description="A CJK font with TrueType outlines (.ttf, or .ttc with font_index) embedded in the notice PDF. "
        "Unset: WenQuanYi Zen Hei (Debian fonts-wqy-zenhei) or another known one where the system keeps it. "
        "CFF-outline OpenType fonts (Noto CJK) cannot be embedded.",
    )
    font_index: int = Field(0, ge=0, le=63, description="The font's index in a .ttc collection (font_file).")

    @field_validator("retired_public_keys")
    @classmethod
    def _public_keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            try:
                verify_key_from_b64(text)
            except (ValueError, SignatureError) as exc:
                raise ValueError(f"not an Ed25519 public key in standard base64: {text!r} ({exc})") from None
        return value


class NotifySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook_secret_file: OptionalPath = Field(
        None,
        description="File holding the HMAC-SHA256 key of webhooks without a key of their own (first line), shared "
        "by all their receivers. There is no default: without it, every target needs its own key (`seal-server "
        "notify add-target --secret-file`), which is better.",
    )
    max_attempts: int = Field(8, ge=1, le=100, description="Attempts per notification before it is recorded failed.")
    retry_base_s: float = Field(
        5.0, ge=0.01, le=3600, description="Wait after the first failed attempt; doubles with each further failure."
    )
    retry_max_s: float = Field(600.0, ge=0.01, le=24 * 3600, description="Longest wait between two attempts.")
    timeout_s: float = Field(
        10.0,
        ge=0.1,
        le=120,
        description="Time allowed for one webhook request, all of it (resolving, connecting, sending, the status and "
        "headers): a receiver answering slowly is cut off then, and the attempt retried later.",
    )
    allow_private_targets: bool = Field(
        True,
        description="Webhooks may go to private addresses (10/8, 172.16/12, 192.168/16, fc00::/7), e.g. the court's "
        "own notification relay. Loopback, link-local (cloud metadata), unspecified and multicast ones never may.",
    )
    allow_loopback_targets: bool = Field(
        False, description="Webhooks may go to loopback addresses (127.0.0.0/8, ::1, localhost): for tests only."
    )
    poll_interval_s: float = Field(
        1.0, ge=0.01, le=60, description="How often the notification worker looks for notifications due."
    )
