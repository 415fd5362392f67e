"""Fixtures for the agent tests: gpiozero mock pins and the court's MQTT subscriber."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from seal_agent.config import load_config
from seal_agent.runtime import SealRuntime
from seal_dev.broker import PrivateBroker
from tests.agent.helpers import CourtSubscriber, RecordingSpeaker, RuntimeFactory


@pytest.fixture
def mock_pins() -> Iterator[MockFactory]:
    """gpiozero's mock pin factory as the default; tests close their devices before it is reset."""
    previous = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        factory.reset()
        Device.pin_factory = previous


@pytest.fixture
def court(broker: PrivateBroker) -> Iterator[CourtSubscriber]:
    """A subscriber with the court server's account, receiving every seal's events and status."""
    subscriber = CourtSubscriber(broker).start()
    try:
        yield subscriber
    finally:
        subscriber.close()


@pytest.fixture
def runtimes(mock_pins: MockFactory) -> Iterator[RuntimeFactory]:
    """Build ``SealRuntime``s on the mock pins; every one is closed (pins first released) before the reset.

    A tamper pin reads "open" (its pull-up) from the moment the runtime is built until the test drives it low.
    """
    built: list[SealRuntime] = []

    def make(config_path: Path, *, speaker: RecordingSpeaker | None = None, **kwargs: object) -> SealRuntime:
        kwargs.setdefault("reconnect_max_s", 2)  # quick tests; reconnect_max_s=None: the configured back-off
        runtime = SealRuntime(
            load_config(config_path),
            pin_factory=mock_pins,
            speaker=speaker or RecordingSpeaker(),
            **kwargs,  # type: ignore[arg-type]
        )
        built.append(runtime)
        return runtime

    try:
        yield make
    finally:
        for runtime in built:
            runtime.close()
