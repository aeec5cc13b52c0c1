"""A fake Alpaca (REST v2 trading, market-data and trade_updates websockets) on 127.0.0.1.

It follows the wire formats alpaca-py 0.44 speaks (see each module's docstring) and misbehaves on
demand: dropped connections, silent streams, 429/5xx answers, orders accepted but answered after
the client's timeout, partial fills, replayed events. Start it with :class:`FakeAlpaca` (or the
``fake_alpaca`` fixture of :mod:`tests.alpaca_fake.fixtures`).
"""

from tests.alpaca_fake.server import FAKE_KEY_ID, FAKE_SECRET, FakeAlpaca

__all__ = ["FAKE_KEY_ID", "FAKE_SECRET", "FakeAlpaca"]
