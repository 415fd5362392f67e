"""The live bus: what changed, published after it was committed, for the browsers' streams to pick up.

Whoever commits something a screen shows (the ingest, the liveness check, a person acknowledging an alarm) publishes
a :class:`Change` *after* the commit — never inside the transaction, so nobody is told of a row that may yet be rolled
back. A change says only *which* seal or case changed, never what: each stream reads the current state from the
database with its own user's access checks (:mod:`server.web.live`), so a change carries nothing a user may not see.

Every change gets the next number of this process's sequence; ``<epoch>.<seq>`` is the id a browser's stream
reconnects with (``Last-Event-ID``). The last ``ring_size`` changes are kept, so a stream that missed a few is
replayed; one that missed more — or comes from another epoch (the server restarted) — is told so, never left with a
silent hole (:meth:`LiveHub.since` returns ``None``: "gap, reload").

Changes cross processes through the court's live feed (:mod:`server.core.live_feed`): :meth:`LiveHub.publish` hands
what this process committed to the feed too (:meth:`LiveHub.forward_to`), and the feed hands what other processes
committed to :meth:`LiveHub.relay`, which delivers it here and sends it nowhere. When the feed cannot say what this
process missed (its connection dropped, a message of another process went missing), it calls :meth:`LiveHub.gap`:
every open stream is told "gap, reload" and the epoch changes, so no position given out before is replayed.

:meth:`LiveHub.publish` is thread-safe (the ingest publishes from its MQTT thread); a :class:`Subscription` is woken
on the event loop it was made on. A subscription that does not keep up (more than ``max_pending`` changes waiting) is
marked with the gap ``overflow``: its stream says "gap" and ends instead of holding memory for a reader that is gone.
A subscription may name its *owners* (a sign-in session, a user) with the most subscriptions each may hold at once:
one more is refused (:class:`TooManySubscriptions`), so that one session cannot multiply the work of every change.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


@dataclass(frozen=True, slots=True)
class Change:
    """Something a screen shows changed: a seal's (``device_id``) state, events, snapshots or alarms, or a case's."""

    what: str  # "event", "status", "snapshot", "alarm", "command", "case", …: what kind of thing changed
    device_id: str | None = None
    case_no: str | None = None


class TooManySubscriptions(Exception):
    """An owner of the new subscription holds as many as it may already (:meth:`LiveHub.subscribe`)."""

    def __init__(self, owner: str) -> None:
        super().__init__(f"{owner} holds as many live subscriptions as it may")
        self.owner = owner


@dataclass(frozen=True, slots=True)
class Position:
    """A point in the live sequence: ``<epoch>.<seq>`` on the wire."""

    epoch: str
    seq: int

    def __str__(self) -> str:
        return f"{self.epoch}.{self.seq}"

    @classmethod
    def parse(cls, text: str | None) -> Position | None:
        """The position in ``text``, or ``None`` if there is none or it is malformed."""
        if not text or len(text) > 64:
            return None
        epoch, _, seq = text.strip().rpartition(".")
        if not epoch or not seq.isascii() or not seq.isdigit():
            return None
        return cls(epoch, int(seq))


@dataclass(eq=False)
class Subscription:
    """One stream's inbox of numbered changes; :meth:`wait` on the event loop it was made on."""

    hub: LiveHub
    loop: asyncio.AbstractEventLoop
    max_pending: int
    pending: list[tuple[int, Change]] = field(default_factory=list)
    #: Why this stream cannot go on without a reload ("overflow", "feed", …), or ``None``.
    gap: str | None = None
    closed: bool = False
    #: Who holds it (:meth:`LiveHub.subscribe`'s ``owners``).
    owners: tuple[str, ...] = ()
    #: What a later subscription with the same key takes its place by (:meth:`LiveHub.subscribe`), or ``None``.
    key: str | None = None
    #: A later subscription of the same key took its place: it holds nothing any more, and its stream ends.
    displaced: bool = False
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def overflowed(self) -> bool:
        """Changes were missed (:attr:`gap` says why): the stream must say "gap" and end."""
        return self.gap is not None

    def _deliver(self, numbered: list[tuple[int, Change]]) -> None:
        """Called with the hub's lock held, from any thread."""
        if len(self.pending) + len(numbered) > self.max_pending:
            self._missed("overflow")
        else:
            self.pending.extend(numbered)
            self._wake()

    def _missed(self, reason: str) -> None:
        """Called with the hub's lock held, from any thread."""
        if self.gap is None:
            self.gap = reason
        self.pending.clear()
        self._wake()

    def _wake(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    async def wait(self, timeout: float) -> list[tuple[int, Change]]:
        """The changes published since the last call (perhaps none: ``timeout`` passed, or the hub closed)."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            pass
        self._ready.clear()
        with self.hub.lock:
            taken, self.pending = self.pending, []
        return taken


class LiveHub:
    """The numbered changes of this server process, its last ``ring_size`` kept; the streams subscribed to it."""

    def __init__(self, *, ring_size: int = 1024, max_pending: int = 4096) -> None:
        self.epoch = secrets.token_hex(4)  # a new one per process: ids of a former process are never replayed
        self.lock = threading.Lock()
        self._seq = 0
        self._ring: deque[tuple[int, Change]] = deque(maxlen=ring_size)
        self._subscriptions: set[Subscription] = set()
        self._owned: dict[str, int] = {}  # owner → how many subscriptions it holds
        self._keyed: dict[str, Subscription] = {}  # key → the subscription that holds it
        self._max_pending = max_pending
        self._forward: Callable[[list[Change]], None] | None = None
        self.closed = False
        self._token_key = secrets.token_bytes(16)

    def token(self, position: Position) -> str:
        """``position`` as the browser is given it: one AES block under this process's key, so that the number of
        changes between two positions (anywhere in the court), or whether there were any, cannot be read from them."""
        # 4 random bytes first: two tokens of one position differ too (a page loaded twice says nothing).
        plain = secrets.token_bytes(4) + bytes.fromhex(position.epoch) + position.seq.to_bytes(8, "big")
        encryptor = Cipher(algorithms.AES(self._token_key), modes.ECB()).encryptor()  # one block: the bare cipher
        return (encryptor.update(plain) + encryptor.finalize()).hex()

    def position_of(self, token: str | None) -> Position | None:
        """The position a :meth:`token` stands for (``None``: ``token`` is no token at all)."""
        if not token or len(token) != 32:
            return None
        try:
            cipher = bytes.fromhex(token)
        except ValueError:
            return None
        decryptor = Cipher(algorithms.AES(self._token_key), modes.ECB()).decryptor()
        plain = decryptor.update(cipher) + decryptor.finalize()
        # Another process's token, one of an earlier epoch or one made up decrypts to some other epoch: "gap".
        return Position(plain[4:8].hex(), int.from_bytes(plain[8:], "big"))

    @property
    def position(self) -> Position:
        """The position of the last change published: a page rendered after reading this misses nothing later."""
        with self.lock:
            return Position(self.epoch, self._seq)

    def forward_to(self, send: Callable[[list[Change]], None] | None) -> None:
        """Hand what :meth:`publish` gets to ``send`` as well (the live feed; it must not block), or to nobody."""
        with self.lock:
            self._forward = send

    def publish(self, changes: Iterable[Change]) -> None:
        """Number ``changes`` and hand them to every subscription, and to the feed for the court's other processes
        (call after the commit; any thread)."""
        changes = list(changes)
        self.relay(changes)
        forward = self._forward
        if forward is not None and changes:
            forward(changes)

    def relay(self, changes: Iterable[Change]) -> None:
        """Number ``changes`` and hand them to every subscription of this process only (what another process
        committed, received from the feed; any thread)."""
        with self.lock:
            numbered = []
            for change in changes:
                self._seq += 1
                numbered.append((self._seq, change))
            if not numbered:
                return
            self._ring.extend(numbered)
            for subscription in self._subscriptions:
                subscription._deliver(numbered)

    def subscribe(
        self, owners: Mapping[str, int] | None = None, *, key: str | None = None
    ) -> tuple[Subscription, Position]:
        """A new subscription (on the running event loop), and the position it starts after. ``owners``: who holds
        it (e.g. ``session:12``, ``user:3``), each with the most subscriptions it may hold at once; raise
        :class:`TooManySubscriptions` if one of them holds that many already. ``key``: the subscription of the same
        key, if any, is displaced — released, its places freed for this one, and told to end (:attr:`displaced`) —
        rather than counted; the caller makes the key its owners' own (e.g. ``session:12 tab:…``), so that nobody
        else can displace it."""
        owners = dict(owners or {})
        subscription = Subscription(self, asyncio.get_running_loop(), self._max_pending, owners=tuple(owners), key=key)
        with self.lock:
            former = self._keyed.get(key) if key is not None else None
            for owner, most in owners.items():
                held = self._owned.get(owner, 0) - (former is not None and owner in former.owners)
                if held >= most:
                    raise TooManySubscriptions(owner)
            if former is not None:
                self._release(former)
                former.displaced = former.closed = True
                former._wake()
            for owner in owners:
                self._owned[owner] = self._owned.get(owner, 0) + 1
            subscription.closed = self.closed
            self._subscriptions.add(subscription)
            if key is not None:
                self._keyed[key] = subscription
            return subscription, Position(self.epoch, self._seq)

    def unsubscribe(self, subscription: Subscription) -> None:
        with self.lock:
            self._release(subscription)

    def _release(self, subscription: Subscription) -> None:
        """Called with the lock held: ``subscription`` holds nothing any more (once only)."""
        if subscription not in self._subscriptions:
            return
        self._subscriptions.discard(subscription)
        if subscription.key is not None and self._keyed.get(subscription.key) is subscription:
            del self._keyed[subscription.key]
        for owner in subscription.owners:
            left = self._owned.get(owner, 0) - 1
            if left > 0:
                self._owned[owner] = left
            else:
                self._owned.pop(owner, None)

    @property
    def subscribers(self) -> int:
        with self.lock:
            return len(self._subscriptions)

    def since(self, after: Position, until: Position) -> list[tuple[int, Change]] | None:
        """The changes after ``after`` up to ``until`` (a position of this epoch), or ``None`` if they cannot all be
        given: ``after`` is of another epoch, in the future, or older than the ring."""
        with self.lock:
            if after.epoch != self.epoch or after.seq > until.seq:
                return None
            if after.seq == until.seq:
                return []
            oldest = self._ring[0][0] if self._ring else self._seq + 1
            if after.seq + 1 < oldest:
                return None
            return [(seq, change) for seq, change in self._ring if after.seq < seq <= until.seq]

    def gap(self, reason: str) -> None:
        """Changes may have been missed (``reason``: what the streams are told): every open stream says "gap" and
        ends (its page reloads), and a new epoch begins, so that no position given out before is replayed."""
        with self.lock:
            self.epoch = secrets.token_hex(4)
            # A number skipped: a stream that read the new epoch with a number of the old one (it took changes just
            # before the gap) cannot be replayed from there, even when nothing is published after the gap.
            self._seq += 1
            self._ring.clear()
            for subscription in self._subscriptions:
                subscription._missed(reason)

    def nudge(self) -> None:
        """Wake every open stream without a change: something each stream looks at besides the changes moved (the
        court's receiving state, :mod:`server.core.receiving`). Any thread."""
        with self.lock:
            for subscription in self._subscriptions:
                subscription._wake()

    def close(self) -> None:
        """The server is stopping: every stream ends (its browser shows the stale banner and reconnects later)."""
        with self.lock:
            self.closed = True
            for subscription in self._subscriptions:
                subscription.closed = True
                subscription._wake()
