"""Risk with a venue calendar: no new order outside a session (``market_closed``), cancels still
pass, and the loss breaker's trading day follows the sessions."""

from __future__ import annotations

import pickle
from datetime import datetime, timezone

import pytest

from market.calendar import calendar_by_name
from schemas import NANOS_PER_SECOND
from trading.risk import RiskLimits, RiskState, TradingState
from tests.unit.trading.risk_records import ACCOUNT, order, pnl, reasons_of


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()) * NANOS_PER_SECOND


def calendar_risk(calendar: str, priced_at: str, **limits) -> RiskState:
    risk = RiskState(ACCOUNT, RiskLimits(**limits), calendar_by_name(calendar))
    risk.on_trade("AAPL", 100.0, utc(priced_at))
    return risk


@pytest.mark.parametrize("at", ["2024-07-04T15:00", "2024-12-25T15:00", "2024-01-06T15:00",
                                "2024-07-03T17:00", "2024-01-02T21:00", "2024-01-02T14:00"])
def test_new_order_when_xnys_closed_then_denied_market_closed(at):
    risk = calendar_risk("XNYS", "2024-01-02T15:00")
    assert reasons_of(risk.on_order(order("o1", ts=utc(at)))) == ["market_closed"]
    assert risk.stats()["rejected.market_closed"] == 1


@pytest.mark.parametrize("at", ["2024-01-02T14:30", "2024-07-03T16:59:59", "2024-07-05T19:59:59"])
def test_new_order_when_xnys_session_open_then_approved(at):
    risk = calendar_risk("XNYS", "2024-01-02T15:00")
    sent = order("o1", ts=utc(at))
    assert risk.on_order(sent) is sent


def test_cancel_when_market_closed_then_still_passes():
    risk = calendar_risk("XNYS", "2024-07-03T15:00")
    risk.on_order(order("o1", ts=utc("2024-07-03T16:00")))
    cancel = order("o1", action="cancel", ts=utc("2024-07-04T15:00"))
    assert risk.on_order(cancel) is cancel


def test_new_order_when_24_7_then_approved_on_a_saturday():
    risk = calendar_risk("24/7", "2020-02-22T10:00")
    sent = order("o1", ts=utc("2020-02-22T13:05"))
    assert risk.on_order(sent) is sent


def test_breaker_when_xnys_then_daily_loss_rebased_at_the_close_not_at_utc_midnight():
    risk = calendar_risk("XNYS", "2024-01-02T15:00", daily_loss_limit=20_000, max_drawdown_pct=0.5)
    assert risk.on_pnl(pnl(1_000_000, ts=utc("2024-01-02T14:30"))) == []
    assert risk.on_pnl(pnl(990_000, ts=utc("2024-01-02T21:00"))) == []  # the close: still Jan 2's session
    # after the close, the next session: its first snapshot is the new base, so -15k more is no breach
    assert risk.on_pnl(pnl(985_000, ts=utc("2024-01-02T21:00:01"))) == []
    assert risk.on_pnl(pnl(970_000, ts=utc("2024-01-03T15:00"))) == []
    [cmd] = risk.on_pnl(pnl(964_000, ts=utc("2024-01-03T16:00")))
    assert (cmd.name, cmd.detail, cmd.value) == ("reducing", "daily_loss", 21_000)


def test_breaker_when_24_7_then_trading_day_is_the_utc_date():
    risk = calendar_risk("24/7", "2020-02-22T10:00", daily_loss_limit=20_000, max_drawdown_pct=0.5)
    risk.on_pnl(pnl(1_000_000, ts=utc("2020-02-22T21:30")))
    [cmd] = risk.on_pnl(pnl(979_000, ts=utc("2020-02-22T23:59")))  # past 21:00 UTC: the same crypto day
    assert cmd.name == "reducing"
    risk.on_pnl(pnl(979_000, ts=utc("2020-02-23T00:00")))  # UTC midnight: a new day, rebased
    assert risk.utilisation()["daily_loss_limit"][0] == 0.0


def test_risk_when_pickled_then_calendar_kept():
    risk = calendar_risk("XNYS", "2024-07-03T15:00")
    restored = pickle.loads(pickle.dumps(risk))
    assert reasons_of(restored.on_order(order("o1", ts=utc("2024-07-04T15:00")))) == ["market_closed"]
    assert restored.trading_state is TradingState.ACTIVE
