"""Cancel-all and flatten of a desk trading at Alpaca (the fake server, Alpaca's wire format): cancels
go out as DELETEs and come back on trade_updates; the closes wait for every cancel's answer."""

from __future__ import annotations

import copy

import pytest

from config.control_channel import make_command
from schemas import ControlKind, OrderAction, OrderState, TimeInForce
from strategies.ids import client_order_id
from tests.unit.venues.factories import T0, order, trade
from trading.desk import T_APPROVED, T_CONTROL, T_REPORTS, DeskConfig, TradingDesk
from venues.alpaca import AlpacaVenue

pytestmark = pytest.mark.integration

BUY = client_order_id("base", "AAPL", "buy", T0, 0)
RESTING = client_order_id("base", "MSFT", "buy", T0, 0)


@pytest.fixture
def venue(fake_alpaca):
    venue = AlpacaVenue(fake_alpaca.settings(request_timeout_s=0.3), account="acct",
                        retry_initial_s=0.01, retry_max_s=0.05)
    with venue:
        fake_alpaca.wait_listening()
        yield venue


def book_next(desk: TradingDesk, venue: AlpacaVenue, n: int) -> list:
    """The next ``n`` reports from Alpaca's stream into the desk, as the embedded run's venue source does."""
    out = []
    for report in venue.wait_reports(n, timeout=5):
        out += desk.on_item(report)
    return out


@pytest.fixture
def trading_desk(fake_alpaca, venue):
    """A desk long 10 AAPL (filled at Alpaca) with a resting MSFT limit buy."""
    desk = TradingDesk(DeskConfig(account="acct"), venue=venue)
    for symbol, price in (("AAPL", 187.0), ("MSFT", 370.0)):
        desk.marked.on_trade(trade(price, 100, symbol=symbol))  # reference prices for risk and marks for the ledger
    out: list = []
    desk.submit(order(BUY, qty=10, strategy="base"), out)
    desk.submit(order(RESTING, qty=5, limit=368.0, tif=TimeInForce.GTC, symbol="MSFT", strategy="base"), out)
    assert [r.state for t, r in out if t == T_REPORTS] == [OrderState.ACCEPTED, OrderState.ACCEPTED]
    fake_alpaca.fill(BUY, 10, 187.0)
    book_next(desk, venue, 1)
    assert desk.ledger.positions() == {("base", "AAPL"): 10.0}
    return desk


def test_flatten_at_alpaca_when_an_order_rests_then_canceled_first_and_the_position_closed_after(
        fake_alpaca, venue, trading_desk):
    desk = trading_desk
    out = desk.on_control(make_command(ControlKind.KILL_SWITCH, value=1.0, issued_by="ops"))
    out += desk.on_control(make_command(ControlKind.FLATTEN, issued_by="ops"))
    assert [o.action for o in (r for t, r in out if t == T_APPROVED)] == [OrderAction.CANCEL]
    assert fake_alpaca.rest.count("DELETE", f"/v2/orders/{fake_alpaca.orders_for(RESTING)[0]['id']}") == 1
    assert len(fake_alpaca.broker.orders) == 2  # no close before the cancel is answered
    out = book_next(desk, venue, 1)  # the canceled report from trade_updates
    reports = [r for t, r in out if t == T_REPORTS]
    assert (reports[0].client_order_id, reports[0].state) == (RESTING, OrderState.CANCELED)
    [close] = [r for t, r in out if t == T_APPROVED]
    assert (close.side.value, close.quantity, close.action) == ("sell", 10.0, OrderAction.NEW)
    [placed] = fake_alpaca.orders_for(close.client_order_id)
    assert (placed["side"], placed["qty"], placed["type"]) == ("sell", "10", "market")
    fake_alpaca.fill(close.client_order_id, 10, 186.5)
    book_next(desk, venue, 1)
    assert desk.ledger.positions() == {} and fake_alpaca.broker.positions["AAPL"].qty == 0.0
    assert venue.open_orders() == []


def test_cancel_all_at_alpaca_then_every_working_order_canceled_through_the_stream(fake_alpaca, venue, trading_desk):
    desk = trading_desk
    out = desk.on_control(make_command(ControlKind.CANCEL_ALL, target="acct", issued_by="ops"))
    assert [(r.client_order_id, r.action) for t, r in out if t == T_APPROVED] == [(RESTING, OrderAction.CANCEL)]
    [canceled] = [r for t, r in book_next(desk, venue, 1) if t == T_REPORTS]
    assert canceled.state is OrderState.CANCELED and venue.open_orders() == []
    assert fake_alpaca.orders_for(RESTING)[0]["status"] == "canceled"
    assert desk.ledger.positions() == {("base", "AAPL"): 10.0}  # cancel-all closes nothing


def test_flatten_at_alpaca_when_replayed_after_a_restart_then_closed_once(fake_alpaca, venue, trading_desk):
    desk = trading_desk
    # the desk's state as a recovery snapshot taken before the command holds it (the venue is live)
    before = copy.deepcopy(desk, memo={id(venue): venue})
    flatten = make_command(ControlKind.FLATTEN, issued_by="ops")
    desk.on_control(flatten)
    book_next(desk, venue, 1)  # canceled: the close goes out
    assert desk.on_control(flatten) == [(T_CONTROL, flatten)]  # redelivered: nothing
    # restarted from the older snapshot, the command replayed: the same close id, refused by the venue
    out = before.on_control(flatten)
    refused = [r for t, r in out if t == T_REPORTS]
    # (the live venue no longer lists the canceled order, so nothing is canceled again)
    assert [r.reason for r in refused] == ["new_rejected:duplicate_client_order_id"]
    sells = [o for o in fake_alpaca.broker.orders.values() if o["side"] == "sell"]
    assert len(sells) == 1 and refused[0].client_order_id == sells[0]["client_order_id"]
