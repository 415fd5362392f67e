"""The gpiozero PIR adapter on mock pins, and why it is edge-driven rather than a polled MotionSensor."""

from __future__ import annotations

import threading

import pytest
from gpiozero import MotionSensor
from gpiozero.pins.mock import MockFactory

from seal_agent.devices.pir import PirSensor
from seal_agent.errors import HardwareError


def test_edges_call_the_handlers_on_the_edge_itself(mock_pins: MockFactory) -> None:
    started, ended = threading.Event(), threading.Event()
    with PirSensor(17) as sensor:
        sensor.set_handlers(on_start=started.set, on_end=ended.set)
        assert not sensor.is_active
        mock_pins.pin(17).drive_high()
        assert started.wait(1) and sensor.is_active
        mock_pins.pin(17).drive_low()
        assert ended.wait(1) and not sensor.is_active


def test_an_edge_before_any_sample_is_seen_unlike_motion_sensor(mock_pins: MockFactory) -> None:
    """The RECIPES pitfall, measured: a polled MotionSensor misses an edge that comes before its first sample."""
    polled_fired, edge_fired = threading.Event(), threading.Event()
    polled = MotionSensor(5)  # samples every 100 ms; the first sample only sets the starting state
    try:
        polled.when_motion = polled_fired.set
        mock_pins.pin(5).drive_high()
        with PirSensor(17) as sensor:
            sensor.set_handlers(on_start=edge_fired.set, on_end=lambda: None)
            mock_pins.pin(17).drive_high()
            assert edge_fired.is_set()  # synchronously, within drive_high()
            assert not polled_fired.wait(0.5)
    finally:
        polled.close()


def test_closing_releases_the_pin_and_a_busy_pin_is_a_hardware_error(mock_pins: MockFactory) -> None:
    sensor = PirSensor(17)
    with pytest.raises(HardwareError, match="GPIO17"):
        PirSensor(17)
    sensor.close()
    PirSensor(17).close()
