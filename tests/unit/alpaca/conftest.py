"""Registers the fake Alpaca fixture for these tests."""

from tests.alpaca_fake.fixtures import fake_alpaca  # noqa: F401
