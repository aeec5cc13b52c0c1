"""Specs for pre-trade risk (trading/risk.py): limits, every order check, execution reports."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading.risk import RejectReason, RiskLimits, RiskState, TradingState
from schemas import NANOS_PER_SECOND, ControlKind, RiskReject
from tests.unit.trading.risk_records import (
    ACCOUNT, MS, T0, approved, control, fill, new_risk, order, reasons_of, report,
)


# ---------------------------------------------------------------------------------- RiskLimits

def test_risk_limits_defaults_are_sized_for_a_million_dollar_paper_account():
    limits = RiskLimits()
    assert limits.max_order_notional == 100_000
    assert limits.max_gross_notional == 1_000_000
    assert limits.daily_loss_limit == 20_000
    assert limits.max_drawdown_pct == 0.05
    assert limits.reduce_then_halt is True


def test_with_limit_when_valid_then_new_limits_and_original_unchanged():
    limits = RiskLimits()
    changed = limits.with_limit("max_open_orders", 7.0)
    assert changed.max_open_orders == 7
    assert limits.max_open_orders == 50


def test_with_limit_when_unknown_name_then_error_lists_valid_names():
    with pytest.raises(ValueError, match="unknown risk limit 'max_leverage'.*max_order_qty.*daily_loss_limit"):
        RiskLimits().with_limit("max_leverage", 2.0)


@pytest.mark.parametrize("name,value", [("max_order_notional", -1.0), ("max_open_orders", 10.5),
                                        ("price_collar_pct", 2.0), ("halt_multiplier", 0.5)])
def test_with_limit_when_invalid_value_then_error(name, value):
    with pytest.raises(ValueError, match=f"invalid value .* for risk limit '{name}'"):
        RiskLimits().with_limit(name, value)


# ------------------------------------------------------------------------------ approve / deny

def test_submit_order_within_limits_then_approved_unchanged():
    risk = new_risk()
    sent = order("c1")
    assert risk.on_order(sent) is sent
    assert risk.open_order_ids == {"c1"}
    assert risk.stats()["approved"] == 1


def test_submit_order_when_denied_then_reject_carries_order_and_times():
    risk = new_risk()
    risk.on_control(control(ControlKind.KILL_SWITCH, value=1.0))
    sent = order("c1", ts=T0 + 42)
    reject = risk.on_order(sent)
    assert isinstance(reject, RiskReject)
    assert reject.id == "reject:c1"
    assert reject.account == ACCOUNT and reject.order == sent
    assert reject.ts_event == T0 + 42 and reject.ts_tick_ingest == sent.ts_tick_ingest
    assert reject.ts_ingest > 0


def test_submit_order_when_kill_switch_on_then_denied():
    risk = new_risk()
    risk.on_control(control(ControlKind.KILL_SWITCH, value=1.0))
    assert risk.kill_switch
    assert reasons_of(risk.on_order(order("c1"))) == ["kill_switch"]


def test_submit_order_when_global_kill_switch_on_then_denied_and_account_off_does_not_clear_it():
    risk = new_risk()
    risk.on_control(control(ControlKind.KILL_SWITCH, value=1.0, target="global"))
    risk.on_control(control(ControlKind.KILL_SWITCH, value=0.0))
    assert reasons_of(risk.on_order(order("c1"))) == ["kill_switch"]
    risk.on_control(control(ControlKind.KILL_SWITCH, value=0.0, target="global"))
    sent = order("c2")
    assert risk.on_order(sent) is sent


def test_cancel_when_kill_switch_on_then_allowed():
    risk = new_risk()
    risk.on_order(order("c1"))
    risk.on_control(control(ControlKind.KILL_SWITCH, value=1.0))
    cancel = order("c1", action="cancel")
    assert risk.on_order(cancel) is cancel


def test_cancel_when_halted_then_allowed_and_new_order_denied():
    risk = new_risk()
    risk.on_order(order("c1"))
    risk.on_control(control(ControlKind.TRADING_STATE, name="halted"))
    cancel = order("c1", action="cancel")
    assert risk.on_order(cancel) is cancel
    assert reasons_of(risk.on_order(order("c2"))) == ["trading_halted"]


def test_cancel_when_order_unknown_or_closed_then_denied_unknown_order():
    risk = new_risk()
    reject = risk.on_order(order("nope", action="cancel"))
    assert reasons_of(reject) == ["unknown_order"]
    assert reject.id == "reject:nope:cancel"
    risk.on_order(order("c1"))
    fill(risk, "c1", "buy", 100)
    assert reasons_of(risk.on_order(order("c1", action="cancel"))) == ["unknown_order"]


def test_submit_order_when_qty_at_limit_then_approved_over_then_denied():
    risk = new_risk(max_order_qty=100)
    assert approved(risk.on_order(sent := order("c1", qty=100)), sent)
    assert reasons_of(risk.on_order(order("c2", qty=101))) == ["max_order_qty"]


def test_submit_market_order_notional_priced_at_last_trade():
    risk = new_risk(max_order_notional=10_000)
    assert approved(risk.on_order(sent := order("c1", qty=100)), sent)  # 100 x 100 = limit
    risk.on_trade("AAPL", 101.0, T0)
    assert reasons_of(risk.on_order(order("c2", qty=100))) == ["max_order_notional"]


def test_submit_limit_order_notional_priced_at_limit_price():
    risk = new_risk(max_order_notional=10_000)
    assert reasons_of(risk.on_order(order("c1", qty=100, limit=100.5))) == ["max_order_notional"]
    assert approved(risk.on_order(sent := order("c2", qty=100, limit=99.5)), sent)


def test_submit_limit_order_when_outside_price_collar_then_denied():
    risk = new_risk(price_collar_pct=0.05)
    assert approved(risk.on_order(sent := order("c1", limit=105.0, qty=1)), sent)
    assert approved(risk.on_order(sent := order("c2", limit=95.0, qty=1)), sent)
    assert reasons_of(risk.on_order(order("c3", limit=105.01, qty=1))) == ["price_collar"]
    assert reasons_of(risk.on_order(order("c4", side="sell", limit=94.99, qty=1))) == ["price_collar"]


def test_submit_order_when_no_trade_seen_then_denied_no_reference_price():
    risk = new_risk()
    assert reasons_of(risk.on_order(order("c1", symbol="MSFT"))) == ["no_reference_price"]
    assert reasons_of(risk.on_order(order("c2", symbol="MSFT", limit=300.0))) == ["no_reference_price"]


def test_trade_older_than_last_then_reference_price_unchanged():
    risk = new_risk(price_collar_pct=0.01)
    risk.on_trade("AAPL", 200.0, T0 - 2 * NANOS_PER_SECOND)  # late print
    assert approved(risk.on_order(sent := order("c1", limit=100.0, qty=1)), sent)


def test_submit_order_when_open_orders_same_side_push_position_over_limit_then_denied():
    risk = new_risk(max_position_qty=1_000)
    risk.on_order(order("c1", qty=400))
    fill(risk, "c1", "buy", 400)
    assert risk.on_order(order("c2", qty=400)).client_order_id == "c2"  # open: 400 + 400 = 800
    assert reasons_of(risk.on_order(order("c3", qty=300))) == ["max_position"]  # 400 + 400 + 300
    # A sell reduces the long position, so it passes even though buys are working.
    assert approved(risk.on_order(sent := order("c4", side="sell", qty=200)), sent)


def test_submit_order_when_short_position_over_limit_then_denied():
    risk = new_risk(max_position_qty=1_000, max_order_notional=1_000_000)
    assert reasons_of(risk.on_order(order("c1", side="sell", qty=1_001))) == ["max_position"]


def test_submit_order_when_position_notional_over_limit_then_denied():
    risk = new_risk(max_position_notional=50_000)
    risk.on_order(order("c1", qty=400))
    fill(risk, "c1", "buy", 400)
    assert reasons_of(risk.on_order(order("c2", qty=101))) == ["max_position_notional"]
    assert approved(risk.on_order(sent := order("c3", qty=100)), sent)


def test_submit_order_when_gross_over_limit_counting_other_symbols_open_orders_then_denied():
    risk = new_risk({"AAPL": 100.0, "MSFT": 200.0}, max_gross_notional=100_000)
    risk.on_order(order("c1", qty=300))  # 30k working in AAPL
    risk.on_order(order("c2", side="sell", qty=200, symbol="MSFT"))  # 40k working short MSFT
    assert reasons_of(risk.on_order(order("c3", qty=301))) == ["max_gross_notional"]
    assert approved(risk.on_order(sent := order("c4", qty=300)), sent)  # 60k + 40k = 100k


def test_submit_order_when_net_over_limit_then_denied_and_offsetting_short_allows_it():
    risk = new_risk({"AAPL": 100.0, "MSFT": 200.0}, max_net_notional=50_000)
    risk.on_order(order("c1", qty=400))
    fill(risk, "c1", "buy", 400)  # +40k
    assert reasons_of(risk.on_order(order("c2", qty=101, symbol="MSFT"))) == ["max_net_notional"]
    risk.on_order(order("c3", side="sell", qty=100, symbol="MSFT"))
    fill(risk, "c3", "sell", 100, price=200.0, symbol="MSFT")  # -20k: net +20k
    assert approved(risk.on_order(sent := order("c4", qty=300)), sent)  # net +50k


def test_submit_order_when_max_open_orders_reached_then_denied_until_one_closes():
    risk = new_risk(max_open_orders=2)
    risk.on_order(order("c1", qty=1))
    risk.on_order(order("c2", qty=1))
    assert reasons_of(risk.on_order(order("c3", qty=1))) == ["max_open_orders"]
    risk.on_execution_report(report("c1", "canceled", order_qty=1))
    assert approved(risk.on_order(sent := order("c4", qty=1)), sent)


def test_submit_order_when_rate_limit_per_second_hit_then_denied_until_window_slides():
    risk = new_risk(max_orders_per_second=3, max_open_orders=100)
    for i in range(3):
        assert approved(risk.on_order(sent := order(f"c{i}", qty=1, ts=T0 + i * 100 * MS)), sent)
    assert reasons_of(risk.on_order(order("c3", qty=1, ts=T0 + 999 * MS))) == ["rate_limit_second"]
    # The window is (t - 1s, t]: at T0 + 1s the order sent at T0 has left it.
    assert approved(risk.on_order(sent := order("c4", qty=1, ts=T0 + NANOS_PER_SECOND)), sent)


def test_rate_limit_counts_approved_orders_only():
    risk = new_risk(max_orders_per_second=2, max_order_qty=10)
    risk.on_order(order("c0", qty=1))
    for i in range(5):
        risk.on_order(order(f"big{i}", qty=11, ts=T0 + i * MS))  # denied: max_order_qty
    assert approved(risk.on_order(sent := order("c1", qty=1, ts=T0 + 10 * MS)), sent)


def test_submit_order_when_rate_limit_per_minute_hit_then_denied_until_window_slides():
    risk = new_risk(max_orders_per_minute=3)
    for i in range(3):
        risk.on_order(order(f"c{i}", qty=1, ts=T0 + i * 10 * NANOS_PER_SECOND))
    assert reasons_of(risk.on_order(order("c3", qty=1, ts=T0 + 59 * NANOS_PER_SECOND))) == ["rate_limit_minute"]
    assert approved(risk.on_order(sent := order("c4", qty=1, ts=T0 + 60 * NANOS_PER_SECOND)), sent)


def test_submit_order_when_client_order_id_seen_then_denied_duplicate_even_if_first_was_rejected():
    risk = new_risk(max_order_qty=10)
    risk.on_order(order("c1", qty=1))
    assert reasons_of(risk.on_order(order("c1", qty=1))) == ["duplicate_order_id"]
    risk.on_order(order("c2", qty=11))
    assert reasons_of(risk.on_order(order("c2", qty=1))) == ["duplicate_order_id"]


def test_submit_order_when_many_checks_fail_then_all_reasons_in_declaration_order():
    risk = new_risk(max_order_qty=10, max_order_notional=500, max_position_qty=10,
                    max_position_notional=500, max_gross_notional=500, max_net_notional=500,
                    max_orders_per_second=1, max_orders_per_minute=1, max_open_orders=1)
    risk.on_order(order("c1", qty=1))
    risk.on_control(control(ControlKind.KILL_SWITCH, value=1.0))
    risk.on_control(control(ControlKind.TRADING_STATE, name="halted"))
    reasons = reasons_of(risk.on_order(order("c1", qty=20, limit=200.0)))
    assert reasons == ["kill_switch", "trading_halted", "max_order_qty", "max_order_notional", "price_collar",
                       "max_position", "max_position_notional", "max_gross_notional", "max_net_notional",
                       "max_open_orders", "rate_limit_second", "rate_limit_minute", "duplicate_order_id"]
    stats = risk.stats()
    assert stats["rejected"] == 1 and stats["rejected.price_collar"] == 1


# --------------------------------------------------------------------------- reduce-only state

@pytest.fixture
def reducing_long_500() -> RiskState:
    risk = new_risk()
    risk.on_order(order("open", qty=500))
    fill(risk, "open", "buy", 500)
    risk.on_control(control(ControlKind.TRADING_STATE, name="reducing"))
    assert risk.trading_state is TradingState.REDUCING
    return risk


def test_submit_order_when_reducing_and_order_reduces_then_approved(reducing_long_500):
    assert approved(reducing_long_500.on_order(sent := order("c1", side="sell", qty=500)), sent)


def test_submit_order_when_reducing_and_order_increases_then_denied_reduce_only(reducing_long_500):
    assert reasons_of(reducing_long_500.on_order(order("c1", side="buy", qty=1))) == ["reduce_only"]


def test_submit_order_when_reducing_and_order_would_flip_then_denied_reduce_only(reducing_long_500):
    assert reasons_of(reducing_long_500.on_order(order("c1", side="sell", qty=501))) == ["reduce_only"]


def test_submit_order_when_reducing_and_working_sells_already_cover_position_then_denied(reducing_long_500):
    reducing_long_500.on_order(order("c1", side="sell", qty=300))
    assert reasons_of(reducing_long_500.on_order(order("c2", side="sell", qty=201))) == ["reduce_only"]


def test_submit_order_when_reducing_and_flat_then_denied_reduce_only():
    risk = new_risk()
    risk.on_control(control(ControlKind.TRADING_STATE, name="reducing"))
    assert reasons_of(risk.on_order(order("c1", side="sell", qty=1))) == ["reduce_only"]


# ---------------------------------------------------------------------------- execution reports

def test_fill_replayed_with_same_fill_id_then_position_counted_once():
    risk = new_risk()
    risk.on_order(order("c1", qty=100))
    partial = report("c1", "partially_filled", cum=40, last_qty=40, fill_id="F1")
    risk.on_execution_report(partial)
    risk.on_execution_report(partial)
    assert risk.position("AAPL") == 40
    assert risk.stats()["fills_duplicate"] == 1


def test_partial_fill_then_leaves_shrink_and_position_check_counts_fill_plus_leaves():
    risk = new_risk(max_position_qty=150)
    risk.on_order(order("c1", qty=100))
    risk.on_execution_report(report("c1", "partially_filled", cum=40, last_qty=40, fill_id="F1"))
    # 40 filled + 60 leaves + 50 = 150: at the limit.
    assert approved(risk.on_order(sent := order("c2", qty=50)), sent)
    assert reasons_of(risk.on_order(order("c3", qty=1))) == ["max_position"]
    risk.on_execution_report(report("c1", "canceled", cum=40))
    assert risk.open_order_ids == {"c2"}
    assert approved(risk.on_order(sent := order("c4", qty=60)), sent)


def test_venue_reject_then_order_no_longer_open():
    risk = new_risk(max_open_orders=1)
    risk.on_order(order("c1"))
    risk.on_execution_report(report("c1", "rejected"))
    assert risk.open_order_ids == frozenset()


def test_records_of_another_account_then_error():
    risk = new_risk()
    with pytest.raises(ValueError, match="account 'other'"):
        risk.on_order(order("c1", account="other"))


_DECLARED = [reason.value for reason in RejectReason]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 400),
                          st.sampled_from(["AAPL", "MSFT"]), st.booleans()), max_size=40))
def test_any_order_stream_then_reasons_ordered_and_approved_orders_within_position_limit(stream):
    risk = new_risk({"AAPL": 100.0, "MSFT": 200.0}, max_position_qty=1_000, max_open_orders=10,
                    max_orders_per_second=1_000, max_orders_per_minute=1_000)
    working = {"AAPL": [0, 0], "MSFT": [0, 0]}  # buy, sell leaves: nothing fills in this stream
    for i, (side, qty, symbol, cancel_first) in enumerate(stream):
        if cancel_first and risk.open_order_ids:
            coid = sorted(risk.open_order_ids)[0]
            sent_cancel = order(coid, action="cancel")
            assert risk.on_order(sent_cancel) is sent_cancel
        result = risk.on_order(order(f"c{i}", side=side, qty=qty, symbol=symbol, ts=T0 + i))
        if isinstance(result, RiskReject):
            assert result.reasons == sorted(result.reasons, key=_DECLARED.index)
            assert len(set(result.reasons)) == len(result.reasons)
        else:
            working[symbol][0 if side == "buy" else 1] += qty
            assert max(working[symbol]) <= 1_000
        assert len(risk.open_order_ids) <= 10
