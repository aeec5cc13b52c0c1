"""IOC, DAY and GTC at the simulated venue, all in event time."""

import pickle
from datetime import datetime, timezone

import pytest

from schemas import NANOS_PER_SECOND, OrderState, Side, TimeInForce
from tests.unit.venues.factories import LATENCY, SESSION_CLOSE, T0, cancel, order, quote, trade
from venues import SimVenue, SimVenueConfig

LIVE = T0 + LATENCY
DAY = 86_400 * NANOS_PER_SECOND


def test_ioc_market_when_partially_filled_then_remainder_canceled():
    venue = SimVenue()
    venue.on_order(order("o1", qty=100, tif=TimeInForce.IOC))
    fill, cancel = venue.on_trade(trade(100.0, 30, ts=LIVE, tick_ingest=5))
    assert (fill.state, fill.last_qty) == (OrderState.PARTIALLY_FILLED, 30.0)
    assert (cancel.state, cancel.reason) == (OrderState.CANCELED, "ioc_remainder")
    assert (cancel.cum_qty, cancel.leaves_qty, cancel.ts_event, cancel.ts_tick_ingest) == (30.0, 0.0, LIVE, 5)
    assert venue.open_orders() == []
    assert venue.stats()["ioc_canceled"] == 1


def test_ioc_limit_when_partially_filled_then_remainder_canceled():
    venue = SimVenue()
    venue.on_order(order("o1", Side.BUY, qty=100, limit=100.0, tif=TimeInForce.IOC))
    fill, cancel = venue.on_trade(trade(99.9, 40, ts=LIVE))
    assert (fill.last_qty, fill.last_price) == (40.0, 100.0)
    assert (cancel.state, cancel.reason, cancel.cum_qty) == (OrderState.CANCELED, "ioc_remainder", 40.0)


def test_ioc_when_fully_filled_on_first_event_then_no_cancel():
    venue = SimVenue()
    venue.on_order(order("o1", qty=10, tif=TimeInForce.IOC))
    [fill] = venue.on_trade(trade(100.0, 50, ts=LIVE))
    assert fill.state is OrderState.FILLED


def test_ioc_limit_when_first_event_does_not_cross_then_canceled_without_fill():
    venue = SimVenue()
    venue.on_order(order("o1", Side.BUY, qty=10, limit=99.0, tif=TimeInForce.IOC))
    [cancel] = venue.on_trade(trade(100.0, 50, ts=LIVE))
    assert (cancel.state, cancel.cum_qty, cancel.reason) == (OrderState.CANCELED, 0.0, "ioc_remainder")
    assert venue.on_trade(trade(98.0, 50, ts=LIVE + 1)) == []


def test_ioc_when_first_opportunity_is_a_quote_then_decided_there():
    venue = SimVenue()
    venue.on_order(order("o1", Side.BUY, qty=10, limit=99.0, tif=TimeInForce.IOC))
    [cancel] = venue.on_quote(quote(99.5, 99.6, ts=LIVE))
    assert cancel.reason == "ioc_remainder"


def test_ioc_when_events_precede_live_time_then_not_yet_its_opportunity():
    venue = SimVenue()
    venue.on_order(order("o1", qty=10, tif=TimeInForce.IOC))
    assert venue.on_trade(trade(100.0, 50, ts=LIVE - 1)) == []
    assert venue.on_quote(quote(99.9, 100.1, ts=LIVE - 1)) == []
    assert venue.on_trade(trade(100.0, 50, ts=LIVE))[0].state is OrderState.FILLED


def test_day_order_when_event_at_session_close_then_expired_before_matching():
    venue = SimVenue()
    venue.on_order(order("o1", Side.BUY, qty=10, limit=90.0, tif=TimeInForce.DAY))
    assert venue.on_trade(trade(95.0, 50, ts=SESSION_CLOSE - 1)) == []
    [expiry] = venue.on_trade(trade(89.0, 50, ts=SESSION_CLOSE, tick_ingest=3))
    assert (expiry.state, expiry.reason) == (OrderState.CANCELED, "day_expired")
    assert (expiry.ts_event, expiry.ts_tick_ingest) == (SESSION_CLOSE, 3)
    assert venue.open_orders() == []


def test_day_order_when_another_symbol_trades_after_close_then_expired_too():
    venue = SimVenue()
    venue.on_order(order("o1", limit=90.0, symbol="AAPL"))
    [expiry] = venue.on_quote(quote(10.0, 10.01, ts=SESSION_CLOSE + 5, symbol="MSFT"))
    assert (expiry.client_order_id, expiry.reason) == ("o1", "day_expired")


def test_day_order_when_no_market_event_then_on_time_expires_it():
    venue = SimVenue()
    venue.on_order(order("o1", limit=90.0, tick_ingest=7))
    assert venue.on_time(SESSION_CLOSE - 1) == []
    [expiry] = venue.on_time(SESSION_CLOSE + 1)
    assert (expiry.state, expiry.reason, expiry.ts_event) == (OrderState.CANCELED, "day_expired", SESSION_CLOSE + 1)
    assert expiry.ts_tick_ingest == 7  # no tick caused it: the order's own
    assert venue.on_time(SESSION_CLOSE + 2) == []


def test_day_order_when_partially_filled_at_close_then_remainder_expires():
    venue = SimVenue()
    venue.on_order(order("o1", qty=100))
    venue.on_trade(trade(100.0, 10, ts=LIVE))
    [expiry] = venue.on_time(SESSION_CLOSE)
    assert (expiry.cum_qty, expiry.state) == (10.0, OrderState.CANCELED)


def test_day_order_when_live_after_close_then_belongs_to_next_session():
    venue = SimVenue()
    venue.on_order(order("o1", limit=90.0, ts=SESSION_CLOSE + 1))
    [open_order] = venue.open_orders()
    assert open_order.expire_at == SESSION_CLOSE + DAY
    assert venue.on_time(SESSION_CLOSE + DAY - 1) == []
    assert venue.on_time(SESSION_CLOSE + DAY)[0].reason == "day_expired"


def _utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()) * NANOS_PER_SECOND


@pytest.mark.parametrize("sent, close", [
    ("2024-01-02T15:00", "2024-01-02T21:00"),  # winter: 16:00 New York is 21:00 UTC
    ("2024-07-05T15:00", "2024-07-05T20:00"),  # summer: 16:00 New York is 20:00 UTC
    ("2024-07-03T15:00", "2024-07-03T17:00"),  # early close before Independence Day, 13:00 New York
    ("2024-11-29T15:00", "2024-11-29T18:00"),  # the day after Thanksgiving, 13:00 New York (winter)
    ("2024-07-03T17:30", "2024-07-05T20:00"),  # after the early close: the next session, past the holiday
    ("2024-07-06T12:00", "2024-07-08T20:00"),  # a Saturday: Monday's close
])
def test_day_order_when_xnys_calendar_then_expires_at_the_real_close(sent, close):
    venue = SimVenue()
    venue.on_order(order("o1", limit=90.0, ts=_utc(sent)))
    assert venue.open_orders()[0].expire_at == _utc(close)
    assert venue.on_time(_utc(close) - 1) == []
    assert venue.on_time(_utc(close))[0].reason == "day_expired"


def test_day_order_when_24_7_calendar_then_expires_at_utc_midnight():
    venue = SimVenue(SimVenueConfig(calendar="24/7"))
    venue.on_order(order("o1", limit=90.0, ts=_utc("2020-02-22T21:30")))  # a Saturday: crypto trades
    assert venue.open_orders()[0].expire_at == _utc("2020-02-23T00:00")


def test_venue_when_pickled_then_calendar_travels_by_name():
    venue = SimVenue()
    venue.on_order(order("o1", limit=90.0, ts=_utc("2024-07-03T15:00")))
    restored = pickle.loads(pickle.dumps(venue))
    assert restored.on_time(_utc("2024-07-03T17:00"))[0].reason == "day_expired"


def test_venue_config_when_unknown_calendar_then_refused():
    with pytest.raises(ValueError, match="unknown calendar 'XLON'"):
        SimVenueConfig(calendar="XLON")


def test_gtc_order_when_session_closes_then_stays_working():
    venue = SimVenue()
    venue.on_order(order("o1", Side.BUY, qty=10, limit=90.0, tif=TimeInForce.GTC))
    assert venue.on_time(SESSION_CLOSE + 3 * DAY) == []
    assert venue.on_trade(trade(95.0, 50, ts=SESSION_CLOSE + 3 * DAY)) == []
    [fill] = venue.on_trade(trade(89.0, 50, ts=SESSION_CLOSE + 3 * DAY + 1))
    assert fill.state is OrderState.FILLED and fill.last_price == 90.0


def test_day_order_when_canceled_before_close_then_no_expiry_report():
    venue = SimVenue()
    venue.on_order(order("o1", limit=90.0))
    venue.on_order(cancel("o1", ts=T0 + 1))
    assert venue.on_time(SESSION_CLOSE) == []
