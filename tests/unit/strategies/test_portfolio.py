"""PortfolioConstructor: sizing, caps, lot rounding, netting against the book, minimum sizes."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import OrderType, Side, TimeInForce
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
