"""Cancel-all and flatten in the fused desk and the split stages: through the venue, each cancel an
execution report, closes that pass the kill switch, and never twice."""

from __future__ import annotations

import pickle

import pytest

from config.control_channel import make_command
from schemas import ControlKind, OrderAction, OrderState
from strategies.signals import CrossSection
from trading.desk import (
    T_APPROVED, T_CONTROL, T_INTENT, T_REJECTED, T_REPORTS, DeskConfig, TradingDesk, default_portfolio,
)
from trading.risk_limits import default_limits
from trading.unwind import order_slices
from tests.unit.trading.test_desk import SYMBOLS, by_table, desk_inputs, run_desk
from tests.unit.trading.test_stages import Topics

PASSIVE = DeskConfig(portfolio=default_portfolio().model_copy(update={"execution": "passive"}))


@pytest.fixture(scope="module")
def arrivals():
    return desk_inputs(chunk=500, ticks=16_000)


def midway(arrivals: list) -> int:
    """An arrival well after the first cross-sections: positions are open by then."""
    sections = [i for i, item in enumerate(arrivals) if type(item) is CrossSection]
    return sections[len(sections) // 2]


def run_until_working(arrivals: list, desk: TradingDesk) -> int:
    """Run the desk from midway until orders are working at its venue; the arrival reached."""
    cut = midway(arrivals)
    run_desk(arrivals[:cut], desk)
    while not desk.venue.open_orders():
        desk.on_item(arrivals[cut])
        cut += 1
    return cut


def command(kind: ControlKind, name: str = "", value: float = 0.0, target: str = "global"):
    return make_command(kind, target=target, name=name, value=value, issued_by="ops")


def is_unwind(order) -> bool:
    return "-u" in order.client_order_id


def test_kill_switch_and_flatten_when_positions_open_then_closed_and_nothing_else_sent(arrivals):
    desk = TradingDesk()
    cut = midway(arrivals)
    run_desk(arrivals[:cut], desk)
    assert desk.ledger.positions(), "no open positions: the flatten would prove nothing"
    out = desk.on_control(command(ControlKind.KILL_SWITCH, value=1.0))
    out += desk.on_control(command(ControlKind.FLATTEN))
    out += run_desk(arrivals[cut:], desk)
    assert desk.ledger.positions() == {}
    closes = [o for o in by_table(out, T_APPROVED) if o.action is OrderAction.NEW]
    assert closes and all(is_unwind(o) for o in closes)  # the strategy's own orders stay killed
    assert all("kill_switch" in r.reasons for r in by_table(out, T_REJECTED))
    filled = {r.client_order_id for r in by_table(out, T_REPORTS) if r.state is OrderState.FILLED}
    assert {o.client_order_id for o in closes} <= filled
    alerts = [c.name for c in by_table(out, T_CONTROL) if c.kind is ControlKind.ALERT]
    assert alerts == ["flatten", "flatten_closing"]


def test_cancel_all_when_orders_work_then_each_canceled_through_the_venue_with_a_report(arrivals):
    desk = TradingDesk(PASSIVE)
    run_until_working(arrivals, desk)
    working = {o.client_order_id for o in desk.venue.open_orders()}
    assert working, "no working orders: the cancel-all would prove nothing"
    positions = desk.ledger.positions()
    out = desk.on_control(command(ControlKind.CANCEL_ALL, target="paper"))
    assert desk.venue.open_orders() == [] and desk.risk.open_order_ids == frozenset()
    canceled = {r.client_order_id for r in by_table(out, T_REPORTS) if r.state is OrderState.CANCELED}
    assert canceled == working
    assert {o.client_order_id for o in by_table(out, T_APPROVED) if o.action is OrderAction.CANCEL} == working
    assert desk.ledger.positions() == positions  # cancel-all closes nothing


def test_flatten_of_one_strategy_when_named_then_only_its_positions_closed(arrivals):
    desk = TradingDesk()
    cut = midway(arrivals)
    run_desk(arrivals[:cut], desk)
    held = desk.ledger.positions()
    assert held and {strategy for strategy, _ in held} == {"baseline"}
    desk.on_control(command(ControlKind.KILL_SWITCH, value=1.0))
    out = desk.on_control(command(ControlKind.FLATTEN, name="baseline", target="paper"))
    closes = [o for o in by_table(out, T_APPROVED) if is_unwind(o) and o.action is OrderAction.NEW]
    assert {(o.strategy, o.symbol) for o in closes} == set(held)
    assert all(o.side.sign * o.quantity == -held[(o.strategy, o.symbol)] for o in closes)
    run_desk(arrivals[cut:], desk)
    assert desk.ledger.positions() == {}


def test_flatten_of_one_strategy_when_another_account_is_named_then_nothing(arrivals):
    desk = TradingDesk(PASSIVE)
    run_desk(arrivals[:midway(arrivals)], desk)
    assert desk.on_control(command(ControlKind.FLATTEN, target="other-account"))[1:] == []
    assert desk.on_control(command(ControlKind.FLATTEN, name="no-such-strategy"))[-1][1].detail.startswith("0 closing")


def test_flatten_when_replayed_after_a_restart_then_the_same_orders_and_never_a_second_close(arrivals):
    desk = TradingDesk(PASSIVE)
    run_until_working(arrivals, desk)
    before = pickle.dumps(desk)
    flatten = command(ControlKind.FLATTEN)
    first = desk.on_control(flatten)
    closes = [o for o in by_table(first, T_APPROVED) if is_unwind(o)]
    assert closes
    # restart from a snapshot taken before the command: the replay makes the very same orders
    replayed = pickle.loads(before).on_control(flatten)
    same = [(o.id, o.side, o.quantity, o.ts_event) for o in by_table(replayed, T_APPROVED)]
    assert same == [(o.id, o.side, o.quantity, o.ts_event) for o in by_table(first, T_APPROVED)]
    # restart from a snapshot taken after it, the command redelivered: nothing at all
    restored = pickle.loads(pickle.dumps(desk))
    assert restored.on_control(flatten) == [(T_CONTROL, flatten)]
    assert restored.unwind.counts["repeated_commands"] == 1
    # the closing orders' ids are refused if sent again
    assert all("duplicate_order_id" in restored.risk.on_reducing_order(o).reasons for o in closes)


def test_second_flatten_while_the_first_is_working_then_closes_only_what_is_left(arrivals):
    desk = TradingDesk()
    cut = midway(arrivals)
    run_desk(arrivals[:cut], desk)
    desk.on_control(command(ControlKind.KILL_SWITCH, value=1.0))
    first = desk.on_control(command(ControlKind.FLATTEN))
    second = desk.on_control(command(ControlKind.FLATTEN))  # nothing filled in between: cancel and re-send
    first_qty = sum(o.quantity for o in by_table(first, T_APPROVED) if is_unwind(o) and o.action is OrderAction.NEW)
    second_qty = sum(o.quantity for o in by_table(second, T_APPROVED) if is_unwind(o) and o.action is OrderAction.NEW)
    assert second_qty == first_qty
    assert {o.client_order_id for o in by_table(second, T_APPROVED) if o.action is OrderAction.CANCEL} == \
        {o.client_order_id for o in by_table(first, T_APPROVED) if is_unwind(o)}
    assert first_qty > 0
    run_desk(arrivals[cut:], desk)
    assert desk.ledger.positions() == {}


def test_order_slices_when_a_position_is_over_the_per_order_limits_then_within_them_and_exact():
    limits = default_limits().model_copy(update={"max_order_qty": 100.0, "max_order_notional": 1e12})
    assert order_slices(250.0, limits, 10.0) == [100.0, 100.0, 50.0]
    assert order_slices(0.5, limits, 10.0) == [0.5]
    by_notional = default_limits().model_copy(update={"max_order_qty": 1e9, "max_order_notional": 1_000.0})
    assert order_slices(30.0, by_notional, 75.0) == [13.0, 13.0, 4.0]


def test_split_stages_when_flattened_then_risk_closes_and_the_execution_stage_fills(arrivals):
    config = DeskConfig(universe=SYMBOLS)
    topics = Topics(config, 256)
    cut = midway(arrivals)
    topics.run(arrivals[:cut], 500)
    risk = topics.stages["risk"]
    assert risk.ledger.positions(), "no open positions: the flatten would prove nothing"
    topics.inbox["risk"] += [command(ControlKind.KILL_SWITCH, value=1.0), command(ControlKind.FLATTEN)]
    out = topics.run(arrivals[cut:], 500)
    closes = [o for o in by_table(out, T_APPROVED) if is_unwind(o)]
    assert closes and all(o.ts_event >= 0 for o in closes)
    assert risk.ledger.positions() == {} and topics.stages["pnl"].ledger.positions() == {}
    late = [r for t, r in out if t == "dlq"]
    assert late == []  # the orders came no earlier than risk's promise to the execution stage
    assert not [o for o in by_table(out, T_INTENT) if is_unwind(o) and o.client_order_id not in
                {c.client_order_id for c in closes}]


def test_unwind_order_id_when_derived_then_deterministic_per_command_and_attributed_like_the_strategys_orders():
    from strategies.ids import CLIENT_ORDER_ID_MAX_LEN, unwind_order_id
    from venues.alpaca_updates import strategy_from_client_order_id

    first = unwind_order_id("mean-rev", "BTC/USD", "sell", "ctl:abc", 0)
    assert first == unwind_order_id("mean-rev", "BTC/USD", "sell", "ctl:abc", 0)
    assert first != unwind_order_id("mean-rev", "BTC/USD", "sell", "ctl:abd", 0)
    assert first != unwind_order_id("mean-rev", "BTC/USD", "sell", "ctl:abc", 1)
    assert strategy_from_client_order_id(first) == "mean-rev"
    assert len(unwind_order_id("s" * 200, "X", "buy", "ctl:abc")) == CLIENT_ORDER_ID_MAX_LEN
