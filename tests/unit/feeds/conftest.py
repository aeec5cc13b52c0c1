"""Fixtures for the feed tests: a fake wall clock for pacing, the real-data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[3]
_REAL_DATA_CANDIDATES = [
    Path(os.environ["TAPEFLOW_REAL_DATA"]) if os.environ.get("TAPEFLOW_REAL_DATA") else None,
    _REPO / "data" / "real",
    _REPO.parent / "shared" / "data" / "real",
]


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
    for candidate in _REAL_DATA_CANDIDATES:
        if candidate is not None and (candidate / "README.md").is_file():
            return candidate
    pytest.skip("real market data folder (data/real) not found; set TAPEFLOW_REAL_DATA")
