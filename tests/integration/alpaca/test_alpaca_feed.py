"""AlpacaFeed against the fake Alpaca on 127.0.0.1: ticks, reconnects, the silence watchdog."""

from __future__ import annotations

import pytest

from feeds.alpaca import AlpacaFeed, AlpacaFeedError
from market.normalize import NormalizeState
from schemas import Aggressor, Quote, RawTick, Trade

pytestmark = pytest.mark.integration


def make_feed(fake, symbols=("AAPL",), **options) -> AlpacaFeed:
    options.setdefault("watchdog_s", 0.3)
    return AlpacaFeed(list(symbols), settings=fake.settings(), market_open=lambda: True,
                      backoff_initial_s=0.02, backoff_max_s=0.1, recv_poll_s=0.05, **options)


def next_tick(feed: AlpacaFeed, timeout: float = 5.0):
    item = feed.poll(timeout)
    assert item is not None, f"no tick from the Alpaca feed within {timeout}s; stats {feed.stats()}"
    return item


def test_trades_and_quotes_when_streamed_then_raw_ticks_normalize_to_records(fake_alpaca):
    with make_feed(fake_alpaca) as feed:
        ticks = feed.ticks(start_seq=10)
        fake_alpaca.wait_subscribed("AAPL", "quotes")
        fake_alpaca.publish_quote("AAPL", 187.49, 187.51, 2, 3, ts_ns=1_704_205_800_000_000_000)
        fake_alpaca.publish_trade("AAPL", 187.5, 100, trade_id=4242, ts_ns=1_704_205_800_123_456_789)
        raws = [next(ticks), next(ticks)]
    assert all(type(r) is RawTick and r.payload_format == "alpaca.v2" and r.source == "alpaca:iex" for r in raws)
    assert [r.seq for r in raws] == [10, 11] and raws[0].id == "alpaca:iex:10"
    assert raws[1].payload["t"] == "2024-01-02T14:30:00.123456789Z"
    state = NormalizeState()
    records = [rec for raw in raws for rec in state.on_raw(raw)]
    assert [type(r) for r in records] == [Quote, Trade]
    assert (records[1].trade_id, records[1].ts_event, records[1].aggressor) == ("4242", 1_704_205_800_123_456_789, Aggressor.UNKNOWN)


def test_connection_when_dropped_then_feed_reconnects_resubscribes_and_counts_it(fake_alpaca):
    with make_feed(fake_alpaca, watchdog_s=30) as feed:
        fake_alpaca.wait_subscribed("AAPL")
        fake_alpaca.publish_trade("AAPL", 100.0, 1)
        next_tick(feed)
        assert fake_alpaca.drop_market_connections() == 1
        fake_alpaca.wait_subscribed("AAPL")
        fake_alpaca.publish_trade("AAPL", 100.5, 2)
        _, _, symbol, payload = next_tick(feed)
        stats = feed.stats()
    assert (symbol, payload["p"]) == ("AAPL", 100.5)
    assert stats["reconnects"] == 1 and stats["connects"] == 2 and stats["gaps"] == 0
    assert fake_alpaca.streams.market_connects == 2


def test_stream_when_silent_but_connected_then_watchdog_resubscribes_and_counts_a_gap(fake_alpaca):
    with make_feed(fake_alpaca) as feed:
        fake_alpaca.wait_subscribed("AAPL")
        fake_alpaca.publish_trade("AAPL", 100.0, 1)
        next_tick(feed)
        fake_alpaca.go_silent(cured_by_resubscribe=True)
        fake_alpaca.wait_for(lambda: fake_alpaca.streams.subscribe_messages >= 2, "the feed to resubscribe")
        fake_alpaca.wait_subscribed("AAPL")
        fake_alpaca.publish_trade("AAPL", 101.0, 1)
        _, _, _, payload = next_tick(feed)
        stats = feed.stats()
    assert payload["p"] == 101.0
    assert stats["gaps"] >= 1 and stats["resubscribes"] >= 1 and stats["reconnects"] == 0


def test_stream_when_silent_after_resubscribing_then_connection_is_replaced(fake_alpaca):
    with make_feed(fake_alpaca) as feed:
        fake_alpaca.wait_subscribed("AAPL")
        fake_alpaca.go_silent(cured_by_resubscribe=False)
        fake_alpaca.wait_for(lambda: feed.stats()["reconnects"] >= 1, "the watchdog to replace the connection")
        fake_alpaca.wait_subscribed("AAPL")
        fake_alpaca.publish_trade("AAPL", 99.0, 1)
        next_tick(feed)
        stats = feed.stats()
    assert stats["gaps"] >= 2 and stats["resubscribes"] >= 1


def test_market_closed_when_silent_then_watchdog_stays_quiet(fake_alpaca):
    feed = AlpacaFeed(["AAPL"], settings=fake_alpaca.settings(), market_open=lambda: False, watchdog_s=0.05,
                      recv_poll_s=0.02)
    with feed:
        fake_alpaca.wait_subscribed("AAPL")
        assert feed.poll(0.3) is None
        assert feed.stats()["gaps"] == 0


def test_crypto_trades_when_streamed_then_taker_side_becomes_the_aggressor(fake_alpaca):
    with make_feed(fake_alpaca, symbols=("BTC/USD",), crypto=True) as feed:
        ticks = feed.ticks()
        fake_alpaca.wait_subscribed("BTC/USD")
        fake_alpaca.publish_trade("BTC/USD", 42000.5, 0.0125, taker="S")
        raw = next(ticks)
        path = fake_alpaca.streams.market[0].path
    assert raw.source == "alpaca:crypto" and path == "/v1beta3/crypto/us"
    trade = NormalizeState().on_raw(raw)[0]
    assert (trade.aggressor, trade.size) == (Aggressor.SELL, 0.0125)


def test_wrong_keys_when_streaming_then_ticks_raise_an_error_naming_the_keys(fake_alpaca):
    settings = fake_alpaca.settings(api_secret_key="wrong")
    feed = AlpacaFeed(["AAPL"], settings=settings, market_open=lambda: True, backoff_initial_s=0.02)
    with feed, pytest.raises(AlpacaFeedError, match="APCA_API_KEY_ID/APCA_API_SECRET_KEY"):
        next(feed.ticks())
    assert feed.stats()["connects"] == 0
