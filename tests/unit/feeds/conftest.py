"""Fixtures for the feed tests: a fake wall clock for pacing, the real-data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.real_data import REAL_DATA



class FakeClock:
    """A monotonic ns clock that only moves when the code under test sleeps (or the test advances it)."""

    def __init__(self, start_ns: int = 1_000_000_000) -> None:
        self.now_ns = start_ns
        self.sleeps: list[float] = []

    def clock(self) -> int:
        return self.now_ns

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now_ns += round(seconds * 1e9)

    def advance(self, seconds: float) -> None:
        self.now_ns += round(seconds * 1e9)


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def real_data() -> Path:
    return REAL_DATA
