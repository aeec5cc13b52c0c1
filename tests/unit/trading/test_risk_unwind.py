"""Risk's part in stop, unwind and re-arm: reducing (flatten) orders and RESUME."""

from __future__ import annotations

from trading.risk import TradingState
from schemas import ControlKind
from tests.unit.trading.risk_records import T0, approved, control, fill, new_risk, order, pnl, reasons_of


def test_reducing_order_when_kill_switch_on_and_halted_then_approved():
    risk = new_risk()
    fill(risk, "buy-1", "buy", 300)
    risk.on_control(control(ControlKind.KILL_SWITCH, value=1.0))
    risk.on_control(control(ControlKind.TRADING_STATE, name="halted"))
    close = order("close-1", side="sell", qty=300)
    assert reasons_of(risk.on_order(close)) == ["kill_switch", "trading_halted"]
    close_again = order("close-2", side="sell", qty=300)
    assert approved(risk.on_reducing_order(close_again), close_again)
    assert risk.open_order_ids == {"close-2"}


def test_reducing_order_when_it_would_flip_or_grow_the_position_then_reduce_only():
    risk = new_risk()
    fill(risk, "buy-1", "buy", 300)
    assert reasons_of(risk.on_reducing_order(order("flip", side="sell", qty=301))) == ["reduce_only"]
    assert reasons_of(risk.on_reducing_order(order("grow", side="buy", qty=10))) == ["reduce_only"]
    assert approved(risk.on_reducing_order(first := order("half", side="sell", qty=150)), first)
    # the working half counts: another 151 would cross zero
    assert reasons_of(risk.on_reducing_order(order("over", side="sell", qty=151))) == ["reduce_only"]


def test_reducing_order_when_over_the_per_order_limits_or_a_known_id_then_rejected_with_each_reason():
    risk = new_risk(max_order_qty=100, max_order_notional=5_000)
    fill(risk, "buy-1", "buy", 300)
    assert reasons_of(risk.on_reducing_order(order("big", side="sell", qty=200))) == ["max_order_qty", "max_order_notional"]
    assert reasons_of(risk.on_reducing_order(order("big", side="sell", qty=10))) == ["duplicate_order_id"]


def test_resume_when_halted_and_the_loss_is_within_the_limit_then_active_with_who_and_why():
    risk = new_risk(daily_loss_limit=50_000, max_drawdown_pct=0.05)
    risk.on_pnl(pnl(1_000_000, ts=T0))
    risk.on_pnl(pnl(945_000, ts=T0 + 1))  # reducing
    risk.on_control(control(ControlKind.SET_LIMIT, name="daily_loss_limit", value=100_000))
    resume = control(ControlKind.RESUME, issued_by="alice").model_copy(update={"detail": "feed glitch, checked"})
    [record] = risk.on_control(resume)
    assert risk.trading_state is TradingState.ACTIVE
    assert (record.kind, record.name, record.issued_by) == (ControlKind.TRADING_STATE, "active", "risk")
    assert record.detail == "resumed from reducing by alice: feed glitch, checked"
    assert risk.on_control(record) == [] and risk.trading_state is TradingState.ACTIVE  # its echo changes nothing
    assert risk.on_pnl(pnl(945_000, ts=T0 + 2)) == []  # re-armed: drawdown measured from here


def test_resume_when_the_breaker_would_trip_again_at_once_then_refused_and_stays_tripped():
    risk = new_risk(daily_loss_limit=50_000, max_drawdown_pct=0.05)
    risk.on_pnl(pnl(1_000_000, ts=T0))
    risk.on_pnl(pnl(945_000, ts=T0 + 1))
    risk.on_control(control(ControlKind.TRADING_STATE, name="halted"))
    [alert] = risk.on_control(control(ControlKind.RESUME, issued_by="alice"))
    assert risk.trading_state is TradingState.HALTED
    assert (alert.kind, alert.name) == (ControlKind.ALERT, "resume_refused")
    assert "would trip again" in alert.detail and "55,000.00" in alert.detail and "stays halted" in alert.detail
    assert reasons_of(risk.on_order(order("after", side="buy", qty=1))) == ["trading_halted"]


def test_resume_when_already_active_then_says_so_and_changes_nothing():
    risk = new_risk()
    [alert] = risk.on_control(control(ControlKind.RESUME))
    assert alert.name == "resume_not_needed" and risk.trading_state is TradingState.ACTIVE
