"""Fixtures of the reliability suites: the short/full switch, a court server, seals, and their clean-up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from seal_dev.broker import PrivateBroker
from tests.conftest import full_run
from tests.reliability.harness import Court, Seal, court_key

LONG_ENV = "SEAL_LONG_TESTS"
#: pytest-timeout's limit of one test in the full run (the default of pyproject.toml holds in the short run).
LONG_TIMEOUT_S = 1800


long_run = full_run


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not long_run(config):
        skip = pytest.mark.skip(reason=f"a variant of the full run only: pytest --long or {LONG_ENV}=1")
        for item in items:
            if item.get_closest_marker("long_only") is not None:
                item.add_marker(skip)
        return
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.timeout(LONG_TIMEOUT_S))


@dataclass(frozen=True)
class Scale:
    """How big a run is: ``short`` (the default test run) or ``full`` (``--long``)."""

    long: bool

    def pick(self, short: int, full: int) -> int:
        return full if self.long else short

    def pick_s(self, short: float, full: float) -> float:
        return full if self.long else short


@pytest.fixture
def scale(request: pytest.FixtureRequest) -> Scale:
    return Scale(long_run(request.config))


@pytest.fixture
def court_key_file(tmp_path: Path) -> Path:
    """The court's signing key (of commands and receipts), shared by every court server of the test."""
    path = tmp_path / "court-command.key"
    court_key(path)
    return path


@pytest.fixture
def court(tmp_path: Path, broker: PrivateBroker, court_key_file: Path) -> Iterator[Court]:
    """A court server on SQLite and the test's broker; not started (``court.prepare(...)``, ``court.start()``)."""
    instance = Court(tmp_path / "court", broker, f"sqlite:///{tmp_path / 'court.db'}", court_key_file)
    try:
        yield instance
    finally:
        instance.close()


SealFactory = Callable[..., Seal]


@pytest.fixture
def make_seal(tmp_path: Path, broker: PrivateBroker, court_key_file: Path) -> Iterator[SealFactory]:
    """``make_seal(device_id, **Seal fields)``: a seal with its broker account and key, pinning the court's key;
    stopped at the end."""
    made: list[Seal] = []
    court_public_key = court_key(court_key_file)

    def make(device_id: str, **kwargs: object) -> Seal:
        seal = Seal(tmp_path / device_id, device_id, broker, court_public_key, **kwargs)  # type: ignore[arg-type]
        made.append(seal)
        return seal

    try:
        yield make
    finally:
        for seal in made:
            seal.stop()
