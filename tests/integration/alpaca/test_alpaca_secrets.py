"""The API secret never reaches a log, a repr or an error message (alpaca-py's loggers included)."""

from __future__ import annotations

import logging

import pytest

from feeds.alpaca import AlpacaFeed, AlpacaFeedError
from tests.alpaca_fake import FAKE_KEY_ID, FAKE_SECRET
from tests.unit.venues.factories import order
from venues.alpaca import AlpacaVenue

pytestmark = pytest.mark.integration


def test_full_session_when_logged_at_debug_then_neither_key_appears_anywhere(fake_alpaca, caplog):
    caplog.set_level(logging.DEBUG)  # root: alpaca-py, websockets, urllib3 and tapeflow alike
    texts: list[str] = []
    settings = fake_alpaca.settings(request_timeout_s=0.3)
    feed = AlpacaFeed(["AAPL"], settings=settings, market_open=lambda: True, watchdog_s=0.2,
                      backoff_initial_s=0.02, recv_poll_s=0.05)
    with feed:
        fake_alpaca.wait_subscribed("AAPL")
        fake_alpaca.publish_trade("AAPL", 100.0, 1)
        assert feed.poll(5) is not None
        fake_alpaca.drop_market_connections()
        fake_alpaca.wait_subscribed("AAPL")
        texts += [repr(feed), str(feed.stats())]
    venue = AlpacaVenue(settings, account="acct", retry_initial_s=0.01, retry_max_s=0.05)
    with venue:
        fake_alpaca.fail_next(1, status=500, path_prefix="/v2/orders")
        fake_alpaca.stall_next_order(1.0)
        texts += [r.to_json().decode() for r in venue.on_order(order("c-1", qty=1))]
        texts += [repr(venue), str(venue.stats())]
    bad = AlpacaFeed(["AAPL"], settings=fake_alpaca.settings(api_key_id="PKWRONG"), market_open=lambda: True)
    with bad, pytest.raises(AlpacaFeedError) as refused:
        next(bad.ticks())
    texts += [str(refused.value), caplog.text]
    assert "reconnected" in caplog.text and "looking it up" in caplog.text  # the log did see the session
    for text in texts:
        assert FAKE_SECRET not in text
        assert FAKE_KEY_ID not in text
