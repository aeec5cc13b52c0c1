"""AlpacaVenue against the fake Alpaca: submits, ambiguity, 429s, fills into the ledger, reconciliation."""

from __future__ import annotations

import pytest

from trading.ledger import Ledger
from schemas import OrderState, Side, TimeInForce
from tests.unit.venues.factories import cancel, order
from venues.alpaca import AlpacaVenue, LiveTradingNotEnabled

pytestmark = pytest.mark.integration


@pytest.fixture
def venue(fake_alpaca):
    venue = AlpacaVenue(fake_alpaca.settings(request_timeout_s=0.3), account="acct",
                        retry_initial_s=0.01, retry_max_s=0.05)
    with venue:
        fake_alpaca.wait_listening()
        yield venue


def test_order_when_submitted_then_accepted_with_alpacas_id_and_tapeflows_client_order_id(fake_alpaca, venue):
    [report] = venue.on_order(order("base-AAPL-buy-1-0", qty=10, limit=187.0, tif=TimeInForce.GTC))
    [placed] = fake_alpaca.orders_for("base-AAPL-buy-1-0")
    assert (report.state, report.venue_order_id, report.leaves_qty) == (OrderState.ACCEPTED, placed["id"], 10.0)
    assert (placed["type"], placed["time_in_force"], placed["limit_price"], placed["qty"]) == ("limit", "gtc", "187", "10")
    assert [o.client_order_id for o in venue.open_orders()] == ["base-AAPL-buy-1-0"]
    assert venue.drain_reports() == []  # the stream's "new" event raced the answer and was merged into it


def test_submit_when_accepted_but_answer_times_out_then_looked_up_and_never_sent_twice(fake_alpaca, venue):
    fake_alpaca.stall_next_order(1.0)  # past the 0.3 s client timeout
    [report] = venue.on_order(order("c-timeout", qty=5))
    assert report.state is OrderState.ACCEPTED
    assert len(fake_alpaca.orders_for("c-timeout")) == 1
    assert fake_alpaca.rest.count("POST", "/v2/orders") == 1
    assert fake_alpaca.rest.count("GET", "/v2/orders:by_client_order_id") == 1
    assert venue.stats()["found_after_ambiguous"] == 1


def test_submit_when_5xx_and_order_absent_then_retried_after_lookup_and_placed_once(fake_alpaca, venue):
    fake_alpaca.fail_next(1, status=503, path_prefix="/v2/orders")
    [report] = venue.on_order(order("c-503", qty=5))
    assert report.state is OrderState.ACCEPTED
    methods = [r for r in fake_alpaca.rest.requests if r[1].startswith("/v2/orders")]
    assert methods == [("POST", "/v2/orders"), ("GET", "/v2/orders:by_client_order_id"), ("POST", "/v2/orders")]
    assert len(fake_alpaca.orders_for("c-503")) == 1


def test_submit_when_rate_limited_then_backs_off_and_succeeds(fake_alpaca, venue):
    fake_alpaca.fail_next(2, status=429)
    [report] = venue.on_order(order("c-429", qty=5))
    assert report.state is OrderState.ACCEPTED
    assert fake_alpaca.rest.count("POST", "/v2/orders") == 3
    assert venue.stats()["rate_limited"] == 2 and len(fake_alpaca.orders_for("c-429")) == 1


def test_partial_fills_when_streamed_then_reports_book_position_and_average_price(fake_alpaca, venue):
    venue.on_order(order("c-fill", qty=10))
    fake_alpaca.fill("c-fill", 4, 100.0)
    fake_alpaca.fill("c-fill", 6, 101.0)
    partial, filled = venue.wait_reports(2, timeout=5)
    assert (partial.state, partial.last_qty, partial.last_price, partial.cum_qty, partial.leaves_qty) == (
        OrderState.PARTIALLY_FILLED, 4.0, 100.0, 4.0, 6.0)
    assert (filled.state, filled.last_qty, filled.last_price, filled.cum_qty, filled.leaves_qty) == (
        OrderState.FILLED, 6.0, 101.0, 10.0, 0.0)
    assert partial.fill_id == fake_alpaca.broker.events[-2]["execution_id"] and partial.fee == 0.0
    ledger = Ledger("acct")
    for report in (partial, filled):
        ledger.on_fill(report)
    assert ledger.positions() == {("strat", "AAPL"): pytest.approx(10.0)}
    assert ledger.avg_cost("AAPL", "strat") == pytest.approx(100.6)
    assert venue.open_orders() == [] and venue.position("AAPL") == pytest.approx(10.0)


def test_trade_updates_when_replayed_after_reconnect_then_fills_are_not_booked_twice(fake_alpaca, venue):
    venue.on_order(order("c-dup", qty=10))
    fake_alpaca.fill("c-dup", 4, 100.0)
    first = venue.wait_reports(1, timeout=5)
    fake_alpaca.drop_updates_connections()
    fake_alpaca.wait_listening()
    fake_alpaca.replay_updates(2)  # "new" and the partial fill again
    fake_alpaca.fill("c-dup", 6, 101.0)
    second = venue.wait_reports(1, timeout=5)
    fake_alpaca.wait_for(lambda: venue.stats()["events"] >= 5, "the venue to receive all 5 events")
    assert venue.drain_reports() == []
    ledger = Ledger("acct")
    booked = [ledger.on_fill(r) for r in first + second]
    assert all(booked) and ledger.positions() == {("strat", "AAPL"): pytest.approx(10.0)}
    assert venue.stats()["duplicate_events"] >= 2 and venue.stats()["stream_reconnects"] == 1


def test_fill_when_missed_during_disconnect_then_caught_up_on_reconnect(fake_alpaca, venue):
    venue.on_order(order("c-gap", qty=10))
    fake_alpaca.drop_updates_connections()
    fake_alpaca.fill("c-gap", 10, 99.5)  # nobody listens: the event is lost
    [report] = venue.wait_reports(1, timeout=5)  # the reconnect's catch-up finds it
    assert (report.state, report.last_qty, report.last_price) == (OrderState.FILLED, 10.0, 99.5)


def test_cancel_when_requested_then_canceled_report_arrives_from_the_stream(fake_alpaca, venue):
    venue.on_order(order("c-cxl", qty=10, limit=50.0, tif=TimeInForce.GTC))
    assert venue.on_order(cancel("c-cxl")) == []
    [report] = venue.wait_reports(1, timeout=5)
    assert (report.state, report.leaves_qty, report.reason) == (OrderState.CANCELED, 0.0, "venue:canceled")


def test_order_when_rejected_after_acceptance_then_rejected_report_with_alpacas_reason(fake_alpaca, venue):
    venue.on_order(order("c-rej", qty=10))
    fake_alpaca.reject("c-rej", "insufficient buying power")
    [report] = venue.wait_reports(1, timeout=5)
    assert (report.state, report.reason) == (OrderState.REJECTED, "venue:insufficient buying power")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        (dict(qty=1.5, tif=TimeInForce.GTC), "fractional_requires_day"),
        (dict(qty=0.5, side=Side.SELL), "fractional_short_not_allowed"),
        (dict(qty=0.5, symbol="BTC/USD"), "crypto_requires_gtc_or_ioc"),
    ],
)
def test_order_when_alpaca_would_refuse_it_then_rejected_here_with_reason_and_not_sent(fake_alpaca, venue, kwargs, reason):
    [report] = venue.on_order(order("c-frac", **kwargs))
    assert (report.state, report.reason) == (OrderState.REJECTED, reason)
    assert fake_alpaca.rest.count("POST", "/v2/orders") == 0


def test_fractional_day_order_when_within_rules_then_sent(fake_alpaca, venue):
    [report] = venue.on_order(order("c-frac-ok", qty=1.25))
    assert report.state is OrderState.ACCEPTED and fake_alpaca.orders_for("c-frac-ok")[0]["qty"] == "1.25"


def test_live_trading_when_not_explicitly_enabled_then_refused(fake_alpaca):
    with pytest.raises(LiveTradingNotEnabled, match="live=True"):
        AlpacaVenue(fake_alpaca.settings(), paper=False)


def test_reconcile_when_alpaca_has_unknown_order_and_position_then_reported_and_adopted(fake_alpaca, venue):
    fake_alpaca.broker.add_open_order("manual-1", "NVDA", "buy", 3, limit_price=800.0)
    fake_alpaca.broker.set_position("TSLA", -2, 250.0)
    report = venue.reconcile({("strat", "AAPL"): 5.0}, [], adopt=True)
    assert [o["client_order_id"] for o in report.orders_missing_here] == ["manual-1"]
    assert [(d.symbol, d.difference) for d in report.position_diffs] == [("AAPL", -5.0), ("TSLA", -2.0)]
    assert {r.client_order_id for r in report.adjustments} == {"manual-1", "adopt-TSLA--2"}
    assert "manual-1" in {o.client_order_id for o in venue.open_orders()}
    fake_alpaca.fill("manual-1", 3, 799.0)  # the adopted order's fill now reaches tapeflow
    [fill] = venue.wait_reports(1, timeout=5)
    assert (fill.client_order_id, fill.strategy, fill.last_qty) == ("manual-1", "adopted", 3.0)
