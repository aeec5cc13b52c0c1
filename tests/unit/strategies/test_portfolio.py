"""PortfolioConstructor: sizing, caps, lot rounding, netting against the book, minimum sizes; passive
execution: limit orders at the touch, kept, re-quoted or canceled bar by bar."""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import OrderAction, OrderType, Side, TimeInForce
from strategies.ids import client_order_id, signal_id
from strategies.portfolio import PortfolioConfig, PortfolioConstructor, round_to_lot
from tests.unit.strategies.fixtures import T0


def orders(targets, prices, positions=None, open_qty=None, config=None, bar_end=T0):
    constructor = PortfolioConstructor(config or PortfolioConfig(capital=100_000.0))
    return constructor.orders_for(
        targets, prices, positions or {}, open_qty or {}, bar_end, "paper", "baseline", ts_tick_ingest=42
    )


def test_flat_book_buys_weight_times_capital_over_price():
    (order,) = orders({"A": 0.2}, {"A": 100.0})
    assert (order.symbol, order.side, order.quantity) == ("A", Side.BUY, 200.0)


def test_negative_weight_sells_short():
    (order,) = orders({"A": -0.1}, {"A": 50.0})
    assert (order.side, order.quantity) == (Side.SELL, 200.0)


def test_order_is_a_day_market_order_with_deterministic_ids_and_times():
    (order,) = orders({"A": 0.2}, {"A": 100.0})
    coid = client_order_id("baseline", "A", Side.BUY, T0, 0)
    assert order.id == order.client_order_id == coid
    assert order.order_type is OrderType.MARKET and order.limit_price is None
    assert order.time_in_force is TimeInForce.DAY
    assert order.ts_event == T0 and order.ts_tick_ingest == 42 and order.ts_ingest > 0
    assert order.signal_id == signal_id("baseline", "A", T0)
    assert (order.account, order.strategy) == ("paper", "baseline")


def test_same_inputs_give_the_same_orders():
    first = orders({"A": 0.2, "B": -0.2}, {"A": 100.0, "B": 20.0})
    second = orders({"A": 0.2, "B": -0.2}, {"A": 100.0, "B": 20.0})
    assert [o.content() for o in first] == [o.content() for o in second]


def test_existing_position_is_netted_to_a_delta_order():
    (order,) = orders({"A": 0.2}, {"A": 100.0}, positions={"A": 150.0})
    assert (order.side, order.quantity) == (Side.BUY, 50.0)


def test_open_order_quantity_is_netted_so_the_same_delta_is_not_resent():
    assert orders({"A": 0.2}, {"A": 100.0}, positions={"A": 150.0}, open_qty={"A": 50.0}) == []


def test_open_sell_quantity_counts_against_the_position():
    (order,) = orders({"A": 0.0}, {"A": 100.0}, positions={"A": 100.0}, open_qty={"A": -40.0})
    assert (order.side, order.quantity) == (Side.SELL, 60.0)


def test_zero_weight_closes_the_position():
    (order,) = orders({"A": 0.0}, {"A": 100.0}, positions={"A": -30.0})
    assert (order.side, order.quantity) == (Side.BUY, 30.0)


def test_long_to_short_flip_is_one_order():
    (order,) = orders({"A": -0.1}, {"A": 100.0}, positions={"A": 100.0})
    assert (order.side, order.quantity) == (Side.SELL, 200.0)


def test_symbols_without_a_target_are_left_alone():
    assert orders({}, {"A": 100.0}, positions={"A": 100.0}) == []


def test_symbols_without_a_price_are_not_sized():
    (order,) = orders({"A": 0.1, "B": 0.1}, {"A": 100.0})
    assert order.symbol == "A"


def test_target_quantity_rounds_toward_zero_to_the_lot():
    (buy,) = orders({"A": 0.2}, {"A": 300.0})  # 66.67 shares
    (sell,) = orders({"A": -0.2}, {"A": 300.0})
    assert buy.quantity == 66.0 and sell.quantity == 66.0


def test_fractional_lots_round_without_float_noise():
    cfg = PortfolioConfig(capital=1200.0, qty_increment=0.1, min_order_qty=0.1)
    (order,) = orders({"A": 0.25}, {"A": 1000.0}, config=cfg)  # 0.25 * 1200 / 1000 = 0.3 lots of 0.1
    assert order.quantity == 0.3


def test_round_to_lot_never_rounds_up():
    assert round_to_lot(2.999, 1.0) == 2.0
    assert round_to_lot(-2.999, 1.0) == -2.0
    assert round_to_lot(0.3, 0.1) == 0.3
    assert round_to_lot(0.05, 0.1) == 0.0
    assert round_to_lot(1234.5678, 0.01) == 1234.56


def test_per_name_cap_limits_a_large_weight():
    cfg = PortfolioConfig(capital=100_000.0, max_weight_per_name=0.25)
    (order,) = orders({"A": 1.0}, {"A": 100.0}, config=cfg)
    assert order.quantity == 250.0


def test_gross_cap_scales_all_names_pro_rata():
    cfg = PortfolioConfig(capital=100_000.0, max_weight_per_name=0.5, gross_cap=0.5)
    result = {o.symbol: o.quantity for o in orders({"A": 0.5, "B": -0.5}, {"A": 100.0, "B": 100.0}, config=cfg)}
    assert result == {"A": 250.0, "B": 250.0}


def test_shorts_are_flat_when_shorting_is_not_allowed():
    cfg = PortfolioConfig(allow_short=False)
    assert orders({"A": -0.2}, {"A": 100.0}, config=cfg) == []
    (order,) = orders({"A": -0.2}, {"A": 100.0}, positions={"A": 10.0}, config=cfg)
    assert (order.side, order.quantity) == (Side.SELL, 10.0)


def test_delta_below_min_quantity_is_not_sent():
    cfg = PortfolioConfig(capital=100_000.0, min_order_qty=5.0)
    assert orders({"A": 0.2}, {"A": 100.0}, positions={"A": 196.0}, config=cfg) == []
    assert len(orders({"A": 0.2}, {"A": 100.0}, positions={"A": 195.0}, config=cfg)) == 1


def test_delta_below_min_notional_is_not_sent():
    cfg = PortfolioConfig(capital=100_000.0, min_order_notional=500.0)
    assert orders({"A": 0.2}, {"A": 100.0}, positions={"A": 196.0}, config=cfg) == []
    assert len(orders({"A": 0.2}, {"A": 100.0}, positions={"A": 195.0}, config=cfg)) == 1


def test_orders_are_sorted_by_symbol():
    result = orders({"C": 0.1, "A": -0.1, "B": 0.1}, {"A": 10.0, "B": 10.0, "C": 10.0})
    assert [o.symbol for o in result] == ["A", "B", "C"]


def test_non_finite_weight_is_an_error():
    with pytest.raises(ValueError):
        orders({"A": float("nan")}, {"A": 100.0})


def test_constructor_pickles():
    constructor = PortfolioConstructor(PortfolioConfig(capital=5e4))
    assert pickle.loads(pickle.dumps(constructor)).config == constructor.config


@settings(max_examples=200, deadline=None)
@given(
    weight=st.floats(-1.0, 1.0),
    price=st.floats(0.5, 5000.0),
    position=st.integers(-2000, 2000),
    working=st.integers(-500, 500),
)
def test_book_after_the_order_never_exceeds_the_capped_target(weight, price, position, working):
    cfg = PortfolioConfig(capital=100_000.0, max_weight_per_name=0.25, min_order_qty=1.0, min_order_notional=0.0)
    result = orders({"A": weight}, {"A": price}, {"A": float(position)}, {"A": float(working)}, config=cfg)
    target = PortfolioConstructor(cfg).target_quantities({"A": weight}, {"A": price})["A"]
    assert abs(target) * price <= 0.25 * cfg.capital + 1e-6
    book = position + working + sum(o.side.sign * o.quantity for o in result)
    assert book == pytest.approx(target)  # whole-share lots: the delta lands exactly on the target
    assert len(result) <= 1


# ---------------------------------------------------------------------------------- passive execution

PASSIVE = PortfolioConfig(capital=100_000.0, execution="passive")
TOUCH = {"A": (99.98, 100.02)}


@dataclass
class Working:
    """A working order as the venue lists it (``venues.order_book.OpenOrder`` has these fields)."""

    client_order_id: str
    symbol: str
    side: Side
    leaves_qty: float
    limit_price: float | None
    order_type: OrderType = OrderType.LIMIT


def passive(targets, positions=None, working=(), touches=TOUCH, prices=None, config=PASSIVE, bar_end=T0):
    return PortfolioConstructor(config).passive_orders_for(
        targets, prices or {"A": 100.0}, touches, positions or {}, list(working), bar_end, "paper", "lgbm",
        ts_tick_ingest=42,
    )


def test_passive_when_the_book_is_flat_then_one_day_limit_buy_at_the_bid_for_the_delta():
    (order,) = passive({"A": 0.2})
    assert (order.side, order.quantity, order.order_type, order.limit_price) == (Side.BUY, 200.0, OrderType.LIMIT, 99.98)
    assert order.id == order.client_order_id == client_order_id("lgbm", "A", Side.BUY, T0, 0)
    assert order.action is OrderAction.NEW and order.time_in_force is TimeInForce.DAY
    assert order.signal_id == signal_id("lgbm", "A", T0) and order.ts_event == T0 and order.ts_tick_ingest == 42


def test_passive_when_reducing_a_long_then_limit_sell_at_the_ask():
    (order,) = passive({"A": 0.1}, positions={"A": 300.0})
    assert (order.side, order.quantity, order.limit_price) == (Side.SELL, 200.0, 100.02)


def test_passive_when_the_working_order_already_rests_at_the_touch_for_the_delta_then_nothing_is_sent():
    resting = Working("c1", "A", Side.BUY, 200.0, 99.98)
    assert passive({"A": 0.2}, working=[resting]) == []


def test_passive_when_a_partly_filled_order_still_covers_the_rest_of_the_delta_then_it_is_kept():
    resting = Working("c1", "A", Side.BUY, 80.0, 99.98)
    assert passive({"A": 0.2}, positions={"A": 120.0}, working=[resting]) == []


def test_passive_when_the_touch_moved_then_cancel_first_and_requote_at_the_new_bid():
    stale = Working("c1", "A", Side.BUY, 200.0, 99.90)
    cancel, requote = passive({"A": 0.2}, working=[stale])
    assert cancel.action is OrderAction.CANCEL and cancel.client_order_id == "c1" and cancel.id == "c1:cancel"
    assert (cancel.side, cancel.quantity, cancel.limit_price) == (Side.BUY, 200.0, 99.90)
    assert (requote.action, requote.side, requote.quantity, requote.limit_price) == (OrderAction.NEW, Side.BUY, 200.0, 99.98)


def test_passive_when_the_target_flips_then_the_working_buy_is_canceled_and_a_sell_rests_at_the_ask():
    working = Working("c1", "A", Side.BUY, 200.0, 99.98)
    cancel, sell = passive({"A": -0.1}, working=[working])
    assert cancel.action is OrderAction.CANCEL and cancel.client_order_id == "c1"
    assert (sell.side, sell.quantity, sell.limit_price) == (Side.SELL, 100.0, 100.02)


def test_passive_when_the_position_reached_the_target_then_leftover_orders_are_only_canceled():
    leftover = Working("c1", "A", Side.BUY, 50.0, 99.98)
    (cancel,) = passive({"A": 0.2}, positions={"A": 200.0}, working=[leftover])
    assert cancel.action is OrderAction.CANCEL and cancel.client_order_id == "c1"


def test_passive_when_two_orders_work_then_both_are_canceled_and_one_replaces_them():
    both = [Working("c2", "A", Side.BUY, 100.0, 99.98), Working("c1", "A", Side.BUY, 100.0, 99.98)]
    out = passive({"A": 0.2}, working=both)
    assert [(o.action, o.client_order_id) for o in out[:2]] == [(OrderAction.CANCEL, "c1"), (OrderAction.CANCEL, "c2")]
    assert (out[2].action, out[2].quantity) == (OrderAction.NEW, 200.0)


def test_passive_when_a_working_market_order_is_canceled_then_the_cancel_carries_no_limit_price():
    market = Working("c1", "A", Side.SELL, 10.0, None, OrderType.MARKET)
    cancel, _ = passive({"A": 0.2}, working=[market])
    assert cancel.order_type is OrderType.MARKET and cancel.limit_price is None


def test_passive_when_no_quote_was_seen_then_no_order_is_priced_but_stale_ones_are_canceled():
    assert passive({"A": 0.2}, touches={}) == []
    stale = Working("c1", "A", Side.BUY, 200.0, 99.90)
    (cancel,) = passive({"A": 0.2}, working=[stale], touches={})
    assert cancel.action is OrderAction.CANCEL


def test_passive_when_the_delta_is_dust_then_no_order():
    config = PortfolioConfig(capital=100_000.0, execution="passive", min_order_notional=500.0)
    assert passive({"A": 0.2}, positions={"A": 197.0}, config=config) == []


def test_passive_when_a_symbol_has_no_target_then_its_working_orders_are_left_alone():
    other = Working("c9", "B", Side.SELL, 10.0, 50.02)
    (order,) = passive({"A": 0.2}, working=[other])
    assert order.symbol == "A" and order.action is OrderAction.NEW


def test_passive_when_caps_apply_then_they_size_the_limit_order_as_for_market_orders():
    config = PortfolioConfig(capital=100_000.0, max_weight_per_name=0.05, execution="passive")
    (order,) = passive({"A": 0.5}, config=config)
    assert order.quantity == 50.0
