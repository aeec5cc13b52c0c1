"""The desk's side of reconciliation: adoption records booked as positions (not fills), the booked
view a live venue keeps, and the halt a reconciliation difference sends."""

from __future__ import annotations

import pytest

from schemas import ExecutionReport, OrderState, PositionSnapshot, Side
from tapeflow.alpaca_run import halt_command
from tests.unit.venues.factories import order
from trading.desk import T_CONTROL, T_POSITIONS, T_REJECTED, T_REPORTS, DeskConfig, TradingDesk
from trading.risk_breaker import TradingState
from venues.reconcile import ReconcileReport, adoption_record
from venues.reconcile_loop import BookedView
from venues.sim import SimVenue


class BookingSimVenue(SimVenue):
    """The simulated venue with the hook a live venue has: it keeps the desk's booked view."""

    def __init__(self) -> None:
        super().__init__()
        self.booked = BookedView()

    def on_booked(self, report: ExecutionReport) -> None:
        self.booked.on_report(report)


def adopted(symbol: str = "AAPL", qty: float = 10.0, price: float = 187.5) -> ExecutionReport:
    return adoption_record("acct", "alpaca", "adopted", symbol, qty, qty, price, 1_000)


def fill(coid: str, qty: float, price: float, fill_id: str, state: OrderState = OrderState.FILLED) -> ExecutionReport:
    return ExecutionReport(id=f"r-{fill_id}", ts_event=2_000, ts_ingest=0, account="acct", venue="alpaca",
                           client_order_id=coid, strategy="strat", symbol="AAPL", side=Side.BUY, state=state,
                           order_qty=qty, cum_qty=qty, leaves_qty=0.0, avg_price=price, fill_id=fill_id,
                           last_qty=qty, last_price=price, ts_tick_ingest=2_000)


@pytest.fixture
def desk() -> TradingDesk:
    return TradingDesk(DeskConfig(account="acct"), BookingSimVenue())


def test_adoption_when_booked_then_position_at_brokers_price_landed_and_not_counted_as_fill(desk):
    out = desk.on_item(adopted())
    assert [t for t, _ in out if t == T_REPORTS] == [T_REPORTS]
    [position] = [r for t, r in out if t == T_POSITIONS and type(r) is PositionSnapshot]
    assert (position.strategy, position.quantity, position.avg_cost) == ("adopted", 10.0, 187.5)
    assert desk.ledger.positions() == {("adopted", "AAPL"): pytest.approx(10.0)}
    assert desk.risk.position("AAPL") == pytest.approx(10.0)  # counts against the limits
    assert desk.counts["fills"] == 0 and desk.ledger.stats()["fills_booked"] == 0
    assert desk.ledger.check_balance()


def test_adoption_when_delivered_again_then_booked_once(desk):
    desk.on_item(adopted())
    again = desk.on_item(adopted())
    assert [t for t, _ in again] == [T_REPORTS]  # lands again (same id: the warehouse keeps one), books nothing
    assert desk.ledger.positions() == {("adopted", "AAPL"): pytest.approx(10.0)}
    assert desk.risk.position("AAPL") == pytest.approx(10.0)


def test_booked_view_when_desk_books_then_it_sees_positions_and_working_orders_as_the_ledger(desk):
    desk.on_item(adopted(qty=-4.0))
    desk.on_item(fill("c-1", 6.0, 190.0, "x-1"))
    desk.on_item(fill("c-1", 6.0, 190.0, "x-1"))  # a redelivered fill: once, as in the ledger
    working = fill("c-2", 5.0, 0.0, "", OrderState.ACCEPTED).model_copy(update={"cum_qty": 0.0, "leaves_qty": 5.0,
                                                                               "last_qty": 0.0, "avg_price": 0.0})
    desk.on_item(working)
    view = desk.venue.booked
    assert view.positions() == {"AAPL": pytest.approx(2.0)}
    assert sum(q for (_, s), q in desk.ledger.positions().items() if s == "AAPL") == pytest.approx(2.0)
    assert [o.client_order_id for o in view.working_orders()] == ["c-2"]
    desk.on_item(working.model_copy(update={"id": "r-c2-x", "state": OrderState.CANCELED, "leaves_qty": 0.0}))
    assert view.working_orders() == []


def test_booked_view_when_adoption_awaited_then_unsettled_until_the_desk_books_it(desk):
    record = adopted()
    desk.venue.booked.expect([record.id])
    assert not desk.venue.booked.settled
    desk.on_item(record)
    assert desk.venue.booked.settled


def test_halt_when_reconciliation_differs_then_audited_and_later_orders_rejected(desk):
    desk.risk.on_trade("AAPL", 100.0, 0)
    before: list = []
    desk.submit(order("c-before", qty=1.0, account="acct"), before)
    assert [t for t, _ in before if t == T_REJECTED] == []
    command = halt_command("acct", ReconcileReport(orders_missing_there=["c-9"]), "k1")
    out = desk.on_item(command)
    assert [(t, r.issued_by, r.name) for t, r in out] == [(T_CONTROL, "reconcile", "halted")]
    assert desk.risk.trading_state is TradingState.HALTED
    later: list = []
    desk.submit(order("c-after", qty=1.0, account="acct"), later)
    [rejected] = [r for t, r in later if t == T_REJECTED]
    assert rejected.reasons == ["trading_halted"]
