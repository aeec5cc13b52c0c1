"""Reconciliation during a run against the fake Alpaca: a real desk books what AlpacaVenue reports,
the fake drifts on purpose (a position or an open order appears or disappears with no event), and
the reconciler sees it, once, confirmed; --adopt books the broker's positions at start."""

from __future__ import annotations

import pytest

from config.settings import Settings
from schemas import ControlCommand, ExecutionReport
from sinks.alerts import AlertMonitor
from tapeflow.alpaca_run import start_alpaca_venue
from tests.unit.venues.factories import order
from trading.desk import T_REPORTS, DeskConfig, TradingDesk
from venues.alpaca import AlpacaVenue
from venues.reconcile_loop import Reconciler

pytestmark = pytest.mark.integration


@pytest.fixture
def venue(fake_alpaca):
    venue = AlpacaVenue(fake_alpaca.settings(request_timeout_s=0.5), account="acct", retry_initial_s=0.01,
                        retry_max_s=0.05)
    yield venue
    venue.stop()


def book_pending(desk: TradingDesk) -> list:
    """What the embedded flow's venue source does: hand the venue's queued items to the desk."""
    return [pair for item in desk.venue.drain_reports() for pair in desk.on_item(item)]


def started_desk(venue) -> TradingDesk:
    venue.start()
    desk = TradingDesk(DeskConfig(account="acct"), venue)
    desk.risk.on_trade("AAPL", 100.0, 0)  # risk sizes an order against a reference price
    return desk


def submit(desk: TradingDesk, coid: str, qty: float = 10.0) -> None:
    out: list = []
    desk.submit(order(coid, qty=qty, account="acct", limit=100.0), out)
    assert [r.state.value for t, r in out if t == T_REPORTS] == ["accepted"]


def reconciler(desk: TradingDesk, raised: list, **kwargs) -> Reconciler:
    kwargs.setdefault("sleep", lambda seconds: False)
    return Reconciler(desk.venue, raised.append, interval_s=0, **kwargs)


def test_check_when_desk_and_alpaca_agree_after_fills_then_clean(fake_alpaca, venue):
    desk, raised = started_desk(venue), []
    submit(desk, "c-1")
    submit(desk, "c-2")
    fake_alpaca.fill("c-1", 10, 99.5)
    fake_alpaca.wait_for(lambda: venue.stats()["fills"] == 1, "the fill on the stream")
    book_pending(desk)
    report = reconciler(desk, raised).check()
    assert report.clean and raised == []
    assert venue.booked.positions() == {"AAPL": pytest.approx(10.0)}
    assert [o.client_order_id for o in venue.booked.working_orders()] == ["c-2"]


def test_check_when_a_fill_is_in_flight_then_confirmation_sees_no_difference(fake_alpaca, venue):
    desk, raised = started_desk(venue), []
    submit(desk, "c-1")
    fake_alpaca.fill("c-1", 10, 99.5)  # at Alpaca at once; the desk has not booked it yet
    fake_alpaca.wait_for(lambda: venue.stats()["fills"] == 1, "the fill on the stream")

    def meanwhile(seconds: float) -> bool:
        book_pending(desk)  # the report reaches the desk between the two looks
        return False

    loop = reconciler(desk, raised, sleep=meanwhile)
    assert not loop.look().clean  # one look alone would have raised it
    assert loop.check().clean and raised == []


def test_check_when_position_drifts_then_raised_once_until_it_changes(fake_alpaca, venue):
    desk, raised = started_desk(venue), []
    loop = reconciler(desk, raised)
    assert loop.check().clean
    fake_alpaca.drift_position("TSLA", 5, 250.0)
    report = loop.check()
    assert [(d.symbol, d.ledger_qty, d.venue_qty) for d in report.position_diffs] == [("TSLA", 0.0, 5.0)]
    assert raised == [report]
    loop.check()
    assert len(raised) == 1  # the same difference lasting is not raised again
    fake_alpaca.drift_position("TSLA", 7, 250.0)
    loop.check()
    assert len(raised) == 2  # it grew: a new difference
    fake_alpaca.drift_position("TSLA", 0)
    assert loop.check().clean and len(raised) == 2


def test_check_when_orders_appear_and_disappear_at_alpaca_then_both_differences_reported(fake_alpaca, venue):
    desk, raised = started_desk(venue), []
    submit(desk, "c-mine")
    fake_alpaca.drift_open_order("manual-7", "NVDA", "buy", 3, limit_price=800.0)
    fake_alpaca.drift_order_gone("c-mine")
    report = reconciler(desk, raised).check()
    assert raised == [report]
    assert [o["client_order_id"] for o in report.orders_missing_here] == ["manual-7"]
    assert report.orders_missing_there == ["c-mine"]


def test_start_when_adopting_then_positions_booked_as_adoption_and_reconciled_clean(fake_alpaca, venue):
    fake_alpaca.drift_position("TSLA", -2, 250.0)
    fake_alpaca.drift_position("AAPL", 3, 180.0)
    fake_alpaca.drift_open_order("manual-1", "NVDA", "buy", 3, limit_price=800.0)
    alerts = AlertMonitor("run-adopt")
    settings = Settings(account="acct", reconcile_interval_s=0, reconcile_halt=True)
    venue, loop = start_alpaca_venue(settings, False, alerts, adopt=True, say=lambda line: None, venue=venue)
    assert not venue.booked.settled  # handed over, not booked yet
    desk = TradingDesk(DeskConfig(account="acct"), venue)
    out = book_pending(desk)
    assert venue.booked.settled
    assert desk.ledger.positions() == {("adopted", "AAPL"): pytest.approx(3.0), ("adopted", "TSLA"): pytest.approx(-2.0)}
    assert desk.ledger.avg_cost("TSLA", "adopted") == pytest.approx(250.0)
    reports = [r for t, r in out if t == T_REPORTS]
    assert not any(r.is_fill for r in reports) and desk.counts["fills"] == 0
    assert {r.reason for r in reports} == {"reconcile:adopt_position", "reconcile:adopt_order"}
    assert loop.check().clean and alerts.alerts == []
    fake_alpaca.fill("manual-1", 3, 799.0)  # the adopted order's fill reaches the ledger as a fill
    fake_alpaca.wait_for(lambda: venue.stats()["fills"] == 1, "the adopted order's fill")
    book_pending(desk)
    assert desk.ledger.position("NVDA") == pytest.approx(3.0) and desk.counts["fills"] == 1
    assert loop.check().clean


def test_start_when_not_adopting_then_brokers_position_alerts_and_halts_the_desk(fake_alpaca, venue):
    fake_alpaca.drift_position("TSLA", -2, 250.0)
    alerts = AlertMonitor("run-no-adopt")
    settings = Settings(account="acct", reconcile_interval_s=0, reconcile_halt=True)
    venue, loop = start_alpaca_venue(settings, False, alerts, adopt=False, say=lambda line: None, venue=venue)
    [alert] = alerts.alerts
    assert (alert.code, alert.severity, alert.target) == ("reconciliation_difference", "critical", "acct")
    assert "position TSLA: ledger 0, Alpaca -2" in alert.text
    desk = TradingDesk(DeskConfig(account="acct"), venue)
    handed = venue.drain_reports()
    assert not any(type(i) is ExecutionReport for i in handed)  # nothing adopted without --adopt
    [command] = [item for item in handed if type(item) is ControlCommand]
    assert (command.name, command.issued_by, command.target) == ("halted", "reconcile", "acct")
    desk.on_item(command)
    assert desk.risk.trading_state.value == "halted"
    assert desk.ledger.positions() == {}
