"""Fixtures for the agent tests: gpiozero mock pins and the court's MQTT subscriber."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from server.mosquitto import PrivateBroker
from tests.agent.helpers import CourtSubscriber


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
