"""``verify_bundle``: every check of ``docs/evidence.md`` on one bundle, in order, into a :class:`BundleVerdict`.

A check that meets something it did not expect fails with the reason; it never stops the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import seal_verify.anchors as anchors
import seal_verify.chain_ends as chain_ends
import seal_verify.event_checks as event_checks
import seal_verify.log_checks as log_checks
import seal_verify.range_checks as range_checks
import seal_verify.records as court_records
import seal_verify.refused_checks as refused_checks
import seal_verify.seal_keys as seal_keys
import seal_verify.snapshot_checks as snapshot_checks
from seal_verify.bundle import Bundle, load_object, open_bundle
from seal_verify.errors import BundleUnreadable, is_library_panic
from seal_verify.event_checks import EventLine
from seal_verify.verdict import BundleVerdict, Check, Status, cut, shown, shown_fact

logger = logging.getLogger(__name__)

#: The checks, in the verdict's order: name, zh-CN, English.
CHECKS = (
    ("bundle", "证据包结构", "the bundle's layout"),
    ("manifest_files", "文件清单与文件一致", "every file matches the manifest"),
    ("log_key", "日志公钥", "the log's key"),
    ("manifest_signature", "清单签名", "the manifest's signature"),
    ("checkpoint", "日志检查点签名", "the checkpoint's signature"),
    ("event_signatures", "封条对事件的签名", "the seals' signatures of the events"),
    ("event_case", "事件所属案号与时间范围", "each event's case number and time range"),
    ("hash_chains", "封条哈希链", "the seals' hash chains"),
    ("event_meta", "事件记录与顺序", "the events' records and order"),
    ("seal_keys", "事件签名公钥与封条登记一致", "each event signed with its seal's key then"),
    ("chain_ends", "封条事件链是否延续至导出", "each bound seal's chain reaches the export"),
    ("inclusion", "默克尔包含证明", "Merkle inclusion proofs"),
    ("snapshots", "照片哈希", "the snapshots' hashes"),
    ("audit", "审计记录", "the audit entries"),
    ("records", "法院记录的格式与完整", "the court's records: every file, of its form"),
    ("consistency", "日志一致性证明", "the log's consistency proofs"),
    ("timestamp", "可信时间戳", "the RFC 3161 time stamp"),
    ("known_checkpoint", "与保存的检查点一致", "consistent with the checkpoint you kept"),
)


def verify_bundle(
    path: str | Path | IO[bytes],
    *,
    known_checkpoint: str | bytes | None = None,
    consistency_proofs: Sequence[bytes] = (),
    tsa_roots_pem: bytes | None = None,
    log_key: str | None = None,
    staged: bool = False,
) -> BundleVerdict:
    """The verdict on the bundle at ``path``. ``known_checkpoint``: a checkpoint note the verifier kept;
    ``consistency_proofs``: proof files (JSON) to or from it; ``log_key``: the log's verifier key, pinned;
    ``staged``: the exporter's staged bundle, which has no report yet (the report states this verdict)."""
    checks = {name: Check(name, zh, en) for name, zh, en in CHECKS}
    name = str(path) if isinstance(path, str | Path) else getattr(path, "name", "<bundle>")
    verdict = BundleVerdict(name, list(checks.values()))
    anchors_given = _Anchors(known_checkpoint, consistency_proofs, tsa_roots_pem, log_key, staged)
    with ExitStack() as opened:  # the JSON-lines files are read from the zip as the checks pass over them
        try:
            bundle = opened.enter_context(open_bundle(Path(path) if isinstance(path, str) else path))
        except BundleUnreadable as exc:
            checks["bundle"].fail(str(exc))
            for check in verdict.checks[1:]:
                check.fail("the bundle cannot be read / 无法读取证据包")
            return verdict
        _run_checks(bundle, checks, verdict, anchors_given)
    return verdict


def _run_checks(bundle: Bundle, checks: dict[str, Check], verdict: BundleVerdict, anchors_given: _Anchors) -> None:
    """Every check on the open ``bundle``, in order, into ``verdict``."""
    log_key = anchors_given.pinned
    for problem in bundle.problems:
        checks["bundle"].fail(problem)
    for note in bundle.notes:
        checks["bundle"].note(note)
    state = _State()
    behind: dict[str, set[str]] = {}  # a key of state: the unread members it was made without
    for step in _steps(bundle, checks, state, anchors_given):
        name, run = step
        bundle.touched.clear()
        state.read.clear()
        state.written.clear()
        try:
            run()
        except MemoryError:  # within the bounds, but more than this machine has: a reason, not a defect's trace
            logger.error("check %s ran out of memory", name)
            checks[name].fail("not enough memory to complete this check / 内存不足，无法完成此项检查")
        except BaseException as exc:  # a defect or an input no rule foresaw: the check fails, the others go on
            if not isinstance(exc, Exception) and not is_library_panic(exc):
                raise  # an interrupt, an exit
            logger.exception("check %s could not be completed", name)
            checks[name].fail(f"could not be checked: {type(exc).__name__}: {exc}")
        inherited = set[str]().union(*(behind.get(key, set()) for key in state.read))
        for key in state.written:  # what the step made, without which members: its own or those it was made of
            made_of = () if key == "key" and log_key is not None else _MADE_OF.get(key)
            own = {p for p in bundle.touched if made_of is None or p.startswith(made_of)}
            behind.setdefault(key, set()).update(own | inherited)
        if bundle.touched or inherited:  # what it says of them (missing, empty, no key) is untrue: they are unread
            checks[name].not_checked(_not_read(bundle, bundle.touched | inherited))
    _nothing_checked(checks, state)
    verdict.facts = {key: shown_fact(value) for key, value in state.get("facts", {}).items()}
    pinned_ok = log_key is not None and checks["log_key"].status is Status.OK
    verdict.unproven = state.get("unproven") or ""
    verdict.signing_keys = state.get("signing_keys") or []
    # a kept checkpoint given but not compared (no proof at hand) leaves the bundle unanchored whatever else anchors
    # it: exit 3 with what to fetch, not 0 with the comparison asked for silently left out
    verdict.anchored = (pinned_ok or checks["known_checkpoint"].status is Status.OK) and not verdict.unproven


#: The members each value of the steps' state is made of (prefixes), where its step reads others too: a value made
#: by a step that asked for a member not read is made without it only if it is made of it. Any other value is made
#: of whatever its step asked for. The log key pinned is made of nothing in the bundle.
_MADE_OF = {
    "manifest": ("manifest.json",),
    "facts": ("manifest.json",),
    "key": ("log/key.txt",),
    "events": ("events.jsonl",),
    "seals": ("seals/",),
    "received": ("events-meta.jsonl",),
    "leaf_indices": ("events-meta.jsonl",),
}


class _State(dict[str, Any]):
    """What the steps share, noting the keys a step reads and writes: a step that reads what was made without a
    member that was not read (``behind``) is not checked either."""

    def __init__(self) -> None:
        super().__init__()
        self.read: set[str] = set()
        self.written: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        self.written.add(key)
        super().__setitem__(key, value)

    def setdefault(self, key: str, default: Any = None) -> Any:  # to add to ("facts"): not read
        self.written.add(key)
        return super().setdefault(key, default)


def _not_read(bundle: Bundle, paths: set[str]) -> str:
    """Why a check that needed the members ``paths`` (in the zip, not read) was not made, Chinese first."""
    first, *more = sorted(paths)
    named = cut(first) + (f" (+{len(more)})" if more else "")
    return (
        f"未检查：所需的 {named} 在 zip 中，但因打包方式未被读取（见“证据包结构”）/ not checked: {named}, which it "
        f"needs, is in the zip but was not read as packed (see the bundle's layout): {bundle.unread[first]}"
    )


def _nothing_checked(checks: dict[str, Check], state: dict[str, Any]) -> None:
    """The checks that held because they had nothing to check (a bundle without events) read "absent", not "ok"."""
    empty = {name: not state.get("events") for name in ("event_signatures", "hash_chains", "event_meta")}
    empty["inclusion"] = not state.get("events") and not state.get("audit_leaves")
    for name, nothing in empty.items():
        if nothing and checks[name].status is Status.OK:
            checks[name].absent("nothing to check: the bundle has no such lines / 无可检查的内容")


@dataclass(frozen=True)
class _Leaves:
    """The log's leaves of the bundle: its event lines (each with its leaf index), then its audit lines; made as
    they are iterated, so that a pass holds one event line, not all."""

    events: Collection[EventLine]
    indices: Sequence[int | None]
    audit: Sequence[log_checks.Leaf]

    def __iter__(self) -> Iterator[log_checks.Leaf]:
        for line, index in zip(self.events, self.indices, strict=False):
            yield log_checks.Leaf(f"event line {line.number}", line.raw, index)
        yield from self.audit


@dataclass(frozen=True)
class _Anchors:
    """What the verifier was given besides the bundle (:func:`verify_bundle`'s arguments)."""

    known: str | bytes | None
    proof_files: Sequence[bytes]
    roots: bytes | None
    pinned: str | None
    staged: bool


def _steps(
    bundle: Bundle, checks: dict[str, Check], state: dict[str, Any], given: _Anchors
) -> list[tuple[str, Callable[[], None]]]:
    """The checks as steps sharing ``state`` (the manifest, the key, the checkpoint, the events, ...)."""
    known, proof_files, roots, pinned = given.known, given.proof_files, given.roots, given.pinned

    def manifest() -> None:
        state["manifest"] = log_checks.read_manifest(checks["manifest_files"], bundle)
        if state["manifest"] is not None:
            log_checks.check_files(checks["manifest_files"], bundle, state["manifest"])
            head = state["manifest"]
            state["facts"] = {k: head.get(k) for k in ("case_no", "exported_at", "exported_by", "range")}

    def key() -> None:
        state["key"] = log_checks.check_log_key(checks["log_key"], bundle, state.get("manifest"), pinned)

    def signature() -> None:
        log_checks.check_manifest_signature(checks["manifest_signature"], bundle, state.get("key"))

    def checkpoint() -> None:
        cp = log_checks.check_checkpoint(checks["checkpoint"], bundle, state.get("key"), state.get("manifest"))
        state["checkpoint"] = cp

    def events() -> None:
        lines, problem = event_checks.read_events(bundle)
        state["events"] = lines
        if problem:
            checks["event_signatures"].fail(problem)
        seals = event_checks.read_seals(bundle, checks["event_signatures"])
        state["seals"] = seals
        state["signed_with"] = signed_with = dict[int, str]()
        simulated = event_checks.check_signatures(checks["event_signatures"], lines, seals, signed_with)
        if simulated:  # among the facts at the verdict's head: a simulated intrusion is no intrusion
            state.setdefault("facts", {})["simulated_events"] = (
                f"{simulated} 个模拟事件 / {simulated} simulated (seal-agent simulate: not on site / 并非现场实际发生)"
            )

    def case() -> None:
        try:
            case_no = load_object(bundle.get("case.json") or b"null", "case.json").get("case_no")
        except ValueError as exc:
            checks["event_case"].fail(str(exc))
            return
        manifest_case = (state.get("manifest") or {}).get("case_no")
        if manifest_case != case_no:
            checks["event_case"].fail(f"case.json is of case {shown(case_no)}, the manifest of {shown(manifest_case)}")
        event_checks.check_case(checks["event_case"], state.get("events", []), case_no)
        range_checks.check_range(checks["event_case"], state.get("events", []), (state.get("manifest") or {}))

    def chains() -> None:
        lines = state.get("events", [])
        received = state["received"] = event_checks.received_times(bundle, lines)
        event_checks.check_chains(checks["hash_chains"], lines, state.get("seals", {}), received)
        found = log_checks.bundle_format(bundle.get("manifest.json"))
        refused_checks.check_quarantine(checks["hash_chains"], bundle, found, set(state.get("seals", {})))

    def meta() -> None:
        state["leaf_indices"] = event_checks.check_meta(checks["event_meta"], bundle, state.get("events", []))

    def keys() -> None:
        seals = state.get("seals", {})
        signed = state.get("signed_with", {})
        seal_keys.check_current_keys(checks["seal_keys"], seals)
        stale, state["signing_keys"] = seal_keys.check_event_keys(
            checks["seal_keys"], state.get("events", []), seals, signed, state.get("received", {})
        )
        case_no = (state.get("manifest") or {}).get("case_no")
        registered = seal_keys.check_registrations(checks["seal_keys"], bundle.jsonl("audit.jsonl"), seals, case_no)
        checks["seal_keys"].summary = (
            f"{len(signed) - stale} of {len(signed)} verified events signed with their seal's key then, "
            f"{registered} registrations in audit.jsonl / {len(signed) - stale}/{len(signed)} 个事件使用当时的封条公钥"
        )

    def ends() -> None:
        events, seals, head = state.get("events", []), state.get("seals", {}), state.get("manifest") or {}
        received = state.get("received", {})
        chain_ends.check_chain_ends(checks["chain_ends"], bundle, events, seals, head, received)

    def audit() -> None:
        case_no = (state.get("manifest") or {}).get("case_no")  # event_case checks case.json's is the same
        state["audit_leaves"] = log_checks.check_audit(checks["audit"], bundle, case_no)

    def records() -> None:
        court_records.check_records(checks["records"], bundle, state.get("manifest") or {}, staged=given.staged)

    def inclusion() -> None:
        events = state.get("events", [])
        leaves = _Leaves(events, state.get("leaf_indices") or [None] * len(events), state.get("audit_leaves", []))
        log_checks.check_inclusion(checks["inclusion"], bundle, leaves, state.get("checkpoint"))

    def snapshots() -> None:
        found = log_checks.bundle_format(bundle.get("manifest.json"))
        seals = frozenset(state.get("seals", {}))
        snapshot_checks.check_snapshots(checks["snapshots"], bundle, state.get("events", []), found, seals)

    def consistency() -> None:
        data = bundle.jsonl("log/consistency.jsonl")
        state["consistency"] = log_checks.read_consistency(checks["consistency"], data, state.get("checkpoint"))

    def timestamp() -> None:
        state.setdefault("facts", {}).update(anchors.check_timestamp(checks["timestamp"], bundle, roots))

    def kept() -> None:
        if known is None:
            checks["known_checkpoint"].absent("no kept checkpoint given (--known-checkpoint) / 未提供保存的检查点")
            return
        note = known.encode("utf-8") if isinstance(known, str) else known
        try:
            given = [anchors.parse_proof_file(data) for data in proof_files]
        except ValueError as exc:
            checks["known_checkpoint"].fail(str(exc))
            return
        state["unproven"] = anchors.check_known(
            checks["known_checkpoint"],
            note,
            state.get("key"),
            state.get("checkpoint"),
            state.get("consistency", {}),
            given,
        )

    return [
        ("manifest_files", manifest),
        ("log_key", key),
        ("manifest_signature", signature),
        ("checkpoint", checkpoint),
        ("event_signatures", events),
        ("event_case", case),
        ("hash_chains", chains),
        ("event_meta", meta),
        ("seal_keys", keys),
        ("chain_ends", ends),
        ("audit", audit),
        ("records", records),
        ("inclusion", inclusion),
        ("snapshots", snapshots),
        ("consistency", consistency),
        ("timestamp", timestamp),
        ("known_checkpoint", kept),
    ]
