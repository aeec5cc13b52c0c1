"""Specs for the loss breaker (trading/risk_breaker.py via RiskState.on_pnl), control commands,
utilisation and recovery."""

from __future__ import annotations

import pickle

import pytest

from trading.risk import BreakerTrip, RiskLimits, TradingState
from schemas import ControlKind
from tests.unit.trading.risk_records import ACCOUNT, DAY, T0, control, new_risk, order, pnl, reasons_of


# ------------------------------------------------------------------------------------- breaker

def test_daily_loss_over_limit_then_reducing_then_second_trip_halted():
    risk = new_risk(daily_loss_limit=20_000, max_drawdown_pct=0.5)
    assert risk.on_pnl(pnl(1_000_000, ts=T0)) == []
    [cmd] = risk.on_pnl(pnl(979_000, ts=T0 + 1))
    assert (cmd.kind, cmd.target, cmd.name, cmd.detail, cmd.issued_by) == (
        ControlKind.TRADING_STATE, ACCOUNT, "reducing", "daily_loss", "risk")
    assert cmd.value == pytest.approx(21_000) and cmd.ts_event == T0 + 1
    assert risk.trading_state is TradingState.REDUCING
    assert risk.on_pnl(pnl(978_000, ts=T0 + 2)) == []  # still breached: not a new trip
    assert risk.on_pnl(pnl(990_000, ts=T0 + 3)) == []  # recovered: re-armed, still REDUCING
    assert risk.trading_state is TradingState.REDUCING
    [cmd] = risk.on_pnl(pnl(975_000, ts=T0 + 4))
    assert (cmd.name, cmd.detail) == ("halted", "daily_loss")
    assert risk.trading_state is TradingState.HALTED
    assert risk.stats()["breaker_trips"] == 2


def test_drawdown_from_peak_over_limit_then_reducing():
    risk = new_risk(daily_loss_limit=1_000_000, max_drawdown_pct=0.05)
    risk.on_pnl(pnl(1_000_000, ts=T0))
    risk.on_pnl(pnl(1_100_000, ts=T0 + 1))  # new peak
    assert risk.on_pnl(pnl(1_045_000, ts=T0 + 2)) == []  # exactly 5%: at the limit
    [cmd] = risk.on_pnl(pnl(1_040_000, ts=T0 + 3))
    assert (cmd.name, cmd.detail) == ("reducing", BreakerTrip.DRAWDOWN.value)
    assert cmd.value == pytest.approx(60_000 / 1_100_000)


def test_drawdown_trip_while_reducing_for_daily_loss_then_halted():
    risk = new_risk(daily_loss_limit=20_000, max_drawdown_pct=0.03)
    risk.on_pnl(pnl(1_000_000, ts=T0))
    assert risk.on_pnl(pnl(979_000, ts=T0 + 1))[0].name == "reducing"
    [cmd] = risk.on_pnl(pnl(969_000, ts=T0 + 2))
    assert (cmd.name, cmd.detail) == ("halted", "drawdown")


def test_loss_beyond_halt_multiplier_then_halted_at_once():
    risk = new_risk(daily_loss_limit=20_000, halt_multiplier=2.0, max_drawdown_pct=0.5)
    risk.on_pnl(pnl(1_000_000, ts=T0))
    [cmd] = risk.on_pnl(pnl(960_000, ts=T0 + 1))
    assert (cmd.name, cmd.detail) == ("halted", "daily_loss_halt")


def test_breaker_when_reduce_then_halt_off_then_first_trip_halts():
    risk = new_risk(reduce_then_halt=False, max_drawdown_pct=0.5)
    risk.on_pnl(pnl(1_000_000, ts=T0))
    assert risk.on_pnl(pnl(979_000, ts=T0 + 1))[0].name == "halted"


def test_new_utc_day_then_daily_loss_rebased_but_halted_not_reset():
    risk = new_risk(daily_loss_limit=20_000, max_drawdown_pct=0.5)
    risk.on_pnl(pnl(1_000_000, ts=T0))
    risk.on_pnl(pnl(975_000, ts=T0 + 1))
    risk.on_control(control(ControlKind.TRADING_STATE, name="halted"))
    next_day = (T0 // DAY + 1) * DAY
    assert risk.on_pnl(pnl(960_000, ts=next_day)) == []
    assert risk.trading_state is TradingState.HALTED
    assert risk.utilisation()["daily_loss_limit"] == (0.0, 20_000)


def test_new_utc_day_then_loss_measured_from_first_snapshot_of_the_day():
    risk = new_risk(daily_loss_limit=20_000, max_drawdown_pct=0.5)
    risk.on_pnl(pnl(1_000_000, ts=T0))
    risk.on_pnl(pnl(985_000, ts=T0 + 1))  # -15k: no trip
    next_day = (T0 // DAY + 1) * DAY
    assert risk.on_pnl(pnl(985_000, ts=next_day)) == []
    assert risk.on_pnl(pnl(970_000, ts=next_day + 1)) == []  # -15k today, -30k over two days
    assert risk.on_pnl(pnl(964_000, ts=next_day + 2))[0].name == "reducing"


def test_breaker_ignores_per_strategy_and_stale_snapshots():
    risk = new_risk(daily_loss_limit=20_000, max_drawdown_pct=0.5)
    risk.on_pnl(pnl(1_000_000, ts=T0 + 10))
    assert risk.on_pnl(pnl(900_000, ts=T0 + 11, strategy="baseline")) == []
    assert risk.on_pnl(pnl(900_000, ts=T0 + 5)) == []
    assert risk.trading_state is TradingState.ACTIVE


def test_operator_sets_active_then_breaker_rearmed_and_own_echo_ignored():
    risk = new_risk(daily_loss_limit=50_000, max_drawdown_pct=0.05)
    risk.on_pnl(pnl(1_000_000, ts=T0))
    emitted = risk.on_pnl(pnl(945_000, ts=T0 + 1))  # daily loss and drawdown at once
    assert (emitted[0].name, emitted[0].detail) == ("reducing", "daily_loss,drawdown")
    risk.on_control(control(ControlKind.TRADING_STATE, name="halted"))
    assert risk.on_control(emitted[0]) == []  # risk's own "reducing" coming back on the topic
    assert risk.trading_state is TradingState.HALTED
    risk.on_control(control(ControlKind.SET_LIMIT, name="daily_loss_limit", value=200_000))
    risk.on_control(control(ControlKind.TRADING_STATE, name="active"))
    assert risk.trading_state is TradingState.ACTIVE
    assert risk.on_pnl(pnl(945_000, ts=T0 + 2)) == []  # drawdown now measured from 945k
    assert risk.on_pnl(pnl(890_000, ts=T0 + 3))[0].detail == "drawdown"


# ------------------------------------------------------------------------------------- control

def test_set_limit_via_control_when_valid_then_applied():
    risk = new_risk()
    assert risk.on_control(control(ControlKind.SET_LIMIT, name="max_order_qty", value=10)) == []
    assert risk.limits.max_order_qty == 10
    assert reasons_of(risk.on_order(order("c1", qty=11))) == ["max_order_qty"]


@pytest.mark.parametrize("name,value", [("max_order_qty", -5.0), ("max_leverage", 3.0)])
def test_set_limit_via_control_when_invalid_then_alert_and_limits_unchanged(name, value):
    risk = new_risk()
    before = risk.limits
    [alert] = risk.on_control(control(ControlKind.SET_LIMIT, name=name, value=value))
    assert (alert.kind, alert.name, alert.target, alert.issued_by) == (
        ControlKind.ALERT, "invalid_set_limit", ACCOUNT, "risk")
    assert name in alert.detail
    assert risk.limits is before


def test_control_for_another_account_then_ignored():
    risk = new_risk()
    assert risk.on_control(control(ControlKind.KILL_SWITCH, value=1.0, target="other")) == []
    assert not risk.kill_switch


@pytest.mark.parametrize("cmd", [control(ControlKind.KILL_SWITCH, value=0.5),
                                 control(ControlKind.TRADING_STATE, name="paused")])
def test_control_when_value_invalid_then_alert_and_nothing_changed(cmd):
    risk = new_risk()
    [alert] = risk.on_control(cmd)
    assert alert.kind is ControlKind.ALERT
    assert not risk.kill_switch and risk.trading_state is TradingState.ACTIVE


# ----------------------------------------------------------------------- reporting and recovery

def test_utilisation_reports_value_and_limit_for_each_limit():
    risk = new_risk({"AAPL": 100.0, "MSFT": 200.0})
    risk.on_order(order("c1", qty=100))
    risk.on_order(order("c2", side="sell", qty=50, symbol="MSFT", ts=T0 + 1))
    use = risk.utilisation()
    assert use["max_gross_notional"] == (20_000.0, 1_000_000.0)
    assert use["max_net_notional"] == (0.0, 500_000.0)
    assert use["max_open_orders"] == (2.0, 50.0)
    assert use["max_orders_per_second"] == (2.0, 10.0)
    assert use["max_position_qty"] == (100.0, 10_000.0)
    assert set(use) == set(RiskLimits.limit_names()) - {"reduce_then_halt", "halt_multiplier"}


def test_risk_state_pickled_and_restored_then_same_decisions():
    risk = new_risk(max_open_orders=1)
    risk.on_order(order("c1"))
    restored = pickle.loads(pickle.dumps(risk))
    assert reasons_of(restored.on_order(order("c1"))) == ["max_open_orders", "duplicate_order_id"]
    assert restored.stats() == {**risk.stats(), "rejected": 1, "rejected.max_open_orders": 1,
                                "rejected.duplicate_order_id": 1}
