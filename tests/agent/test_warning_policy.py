"""The warning policy as a pure function of presence and time."""

from __future__ import annotations

from seal_agent.behaviour.warning import WarningPolicy, WarningSettings


def policy(repeat_s: float = 10, max_repeats: int = 3, cooldown_s: float = 30) -> WarningPolicy:
    return WarningPolicy(WarningSettings(repeat_s=repeat_s, max_repeats=max_repeats, cooldown_s=cooldown_s))


def plays_during(p: WarningPolicy, start: float, end: float, step: float = 0.5) -> list[float]:
    """Run the policy's schedule from ``start`` to ``end`` the way the agent's timer does."""
    played = []
    now = start
    while now <= end:
        due = p.next_due()
        if due is None or due > end:
            break
        now = max(now, due)
        if p.due(now):
            played.append(now)
        now += step
    return played


def test_plays_on_entry_then_repeats_at_most_max_repeats() -> None:
    p = policy(repeat_s=10, max_repeats=3)
    assert p.motion_started(100.0)
    assert plays_during(p, 100.0, 1000.0) == [110.0, 120.0, 130.0]
    assert p.next_due() is None


def test_no_repeat_when_presence_ends() -> None:
    p = policy()
    assert p.motion_started(0.0)
    p.motion_ended(5.0)
    assert p.next_due() is None
    assert not p.due(10.0)


def test_cooldown_suppresses_then_warns_if_still_present() -> None:
    p = policy(repeat_s=10, max_repeats=1, cooldown_s=30)
    assert p.motion_started(0.0)
    p.motion_ended(2.0)  # cool-down until 32
    assert not p.motion_started(10.0)
    assert p.next_due() == 32.0
    assert not p.due(31.9)
    assert p.due(32.0)  # still present when the cool-down ends
    assert p.next_due() == 42.0


def test_entry_after_cooldown_warns_at_once() -> None:
    p = policy(cooldown_s=30)
    assert p.motion_started(0.0)
    p.motion_ended(1.0)
    assert p.motion_started(31.0)


def test_unwarned_presence_does_not_extend_cooldown() -> None:
    p = policy(cooldown_s=30)
    assert p.motion_started(0.0)
    p.motion_ended(1.0)
    assert not p.motion_started(5.0)
    p.motion_ended(6.0)
    assert p.motion_started(31.0)


def test_zero_repeats_and_reset() -> None:
    p = policy(max_repeats=0, cooldown_s=30)
    assert p.motion_started(0.0)
    assert p.next_due() is None
    p.motion_ended(1.0)
    p.reset()
    assert p.motion_started(2.0)
