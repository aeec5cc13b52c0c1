"""Pytest fixtures for the fake Alpaca; conftest.py files of the alpaca test folders import them."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.alpaca_fake.server import FakeAlpaca


@pytest.fixture
def fake_alpaca() -> Iterator[FakeAlpaca]:
    """A started fake on random 127.0.0.1 ports, stopped after the test."""
    with FakeAlpaca() as fake:
        yield fake
