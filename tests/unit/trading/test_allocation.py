"""Several strategies on one desk: each sized against its share of the capital, held to its share of
the notional limits, and valued against its own capital."""

from __future__ import annotations

import pytest

from config.control_channel import make_command
from schemas import ControlKind, DeadLetter, Quote, Signal, Trade
from strategies.portfolio import PortfolioConfig
from strategies.signals import CrossSection
from trading.allocation import CapitalAllocation
from trading.desk import T_APPROVED, T_DLQ, T_INTENT, T_PNL, T_REJECTED, DeskConfig, TradingDesk
from trading.risk_breaker import TradingState
from trading.risk_limits import default_limits

T0 = 1_704_205_800_000_000_000
MS = 1_000_000


def quote(ms: int) -> Quote:
    return Quote(id=f"q{ms}", ts_event=T0 + ms * MS, ts_ingest=0, symbol="SYN0", bid_price=99.99, bid_size=5e5,
                 ask_price=100.01, ask_size=5e5, source="test", ts_tick_ingest=0)


def trade(ms: int) -> Trade:
    return Trade(id=f"t{ms}", ts_event=T0 + ms * MS, ts_ingest=0, symbol="SYN0", price=100.0, size=10.0,
                 trade_id=f"t{ms}", source="test", ts_tick_ingest=0)


def section(ms: int, weights: dict[str, float]) -> CrossSection:
    bar_end = T0 + ms * MS
    signals = tuple(Signal(id=f"s{name}{ms}", ts_event=bar_end, ts_ingest=0, account="paper", strategy=name,
                           strategy_version="1", symbol="SYN0", bar_end=bar_end, score=1.0, target_weight=w,
                           ts_tick_ingest=0, section_size=len(weights))
                    for name, w in sorted(weights.items()))
    return CrossSection(bar_end, signals, 0)


def desk(capital: dict[str, float], max_weight: float = 0.04) -> TradingDesk:
    portfolio = PortfolioConfig(capital=1_000_000.0, max_weight_per_name=max_weight)
    return TradingDesk(DeskConfig(portfolio=portfolio, strategy_capital=capital))


def run(d: TradingDesk, weights: dict[str, float]) -> list:
    out = []
    for item in (quote(100), trade(200), section(1_000, weights), trade(1_100), quote(1_200), trade(2_500)):
        out.extend(d.on_item(item))
    return out + d.flush()


def by_table(out: list, table: str) -> list:
    return [record for t, record in out if t == table]


def test_each_strategy_is_sized_against_its_own_capital():
    out = run(desk({"a": 0.25, "b": 0.75}), {"a": 0.04, "b": 0.04})
    assert [(o.strategy, o.quantity) for o in by_table(out, T_INTENT)] == [("a", 100.0), ("b", 300.0)]


def test_a_strategy_past_its_share_of_a_limit_is_rejected_and_the_other_still_trades():
    # 25% of a 10% share = 25,000 in SYN0: over 10% of the 100,000 order and 200,000 position limits
    out = run(desk({"small": 0.1, "big": 0.9}, max_weight=0.25), {"small": 0.25, "big": 0.04})
    (reject,) = by_table(out, T_REJECTED)
    assert reject.order.strategy == "small" and reject.reasons == [
        "strategy_max_order_notional", "strategy_max_position_notional"]
    assert [(o.strategy, o.quantity) for o in by_table(out, T_APPROVED)] == [("big", 360.0)]


def test_a_strategy_without_capital_is_dead_lettered_naming_the_configured_ones():
    out = run(desk({"a": 0.5}), {"a": 0.04, "stranger": 0.04})
    (dead,) = [r for r in by_table(out, T_DLQ) if type(r) is DeadLetter]
    assert dead.reason == "unknown_strategy" and "'stranger'" in dead.detail and "configured: a" in dead.detail
    assert [o.strategy for o in by_table(out, T_INTENT)] == ["a"]


def test_a_strategy_is_valued_against_its_own_capital_and_the_account_against_all_of_it():
    out = run(desk({"a": 0.25, "b": 0.75}), {"a": 0.04, "b": -0.04})
    last = {}
    for snapshot in by_table(out, T_PNL):
        last[snapshot.strategy] = snapshot
    base = {s: p.equity - (p.realized_pnl + p.unrealized_pnl - p.fees) for s, p in last.items()}
    assert base == pytest.approx({"*": 1_000_000.0, "a": 250_000.0, "b": 750_000.0})


@pytest.mark.parametrize("fractions, message", [({"a": 0.0}, r"in \(0, 1\]"), ({"a": 0.6, "b": 0.6}, "more than 1")])
def test_bad_fractions_are_refused(fractions, message):
    with pytest.raises(ValueError, match=message):
        CapitalAllocation(fractions, PortfolioConfig(), default_limits())


def losing(d: TradingDesk, weights: dict[str, float], fall_to: float) -> list:
    """Fill the targets at 100, mark the tape down to ``fall_to`` in the bar ending at 3 s (its
    snapshot feeds the breakers), then send the targets doubled at 4 s."""
    def trade_at(ms: int, price: float) -> Trade:
        return Trade(id=f"t{ms}", ts_event=T0 + ms * MS, ts_ingest=0, symbol="SYN0", price=price, size=10.0,
                     trade_id=f"t{ms}", source="test", ts_tick_ingest=0)

    grown = {name: w * 2 for name, w in weights.items()}
    out = []
    for item in (quote(100), trade(200), section(1_000, weights), trade(1_100), quote(1_200), trade_at(2_600, fall_to),
                 trade_at(2_700, fall_to), section(4_000, grown), trade_at(5_000, fall_to)):
        out.extend(d.on_item(item))
    return out + d.flush()


def test_a_strategys_own_breaker_trips_on_its_loss_and_holds_only_it_to_reducing():
    # "small" trades 10% of the capital, long 20% of it (20,000); a 50% fall loses 10,000: 10% of
    # its 100,000 and over its 2,000 daily loss (10% of 20,000), but 1% of the account and half its
    # daily loss limit
    d = desk({"small": 0.1, "big": 0.9}, max_weight=0.25)
    d = TradingDesk(d.config.model_copy(update={"limits": d.config.limits.model_copy(
        update={"max_order_notional": 1e9, "max_position_notional": 1e9, "halt_multiplier": 100.0})}))
    out = losing(d, {"small": 0.2, "big": 0.001}, fall_to=50.0)
    alerts = [c for c in by_table(out, "control") if c.name.startswith("strategy_")]
    assert [(a.name, a.detail) for a in alerts] == [("strategy_reducing", "strategy small: reducing (daily_loss, drawdown)")]
    rejects = by_table(out, T_REJECTED)
    assert [(r.order.strategy, r.reasons) for r in rejects] == [("small", ["strategy_reduce_only"])]
    assert ("big", 4_000) in [(o.strategy, (o.ts_event - T0) // MS) for o in by_table(out, T_APPROVED)]
    assert d.risk.trading_state.value == "active"
    d.on_control(make_command(ControlKind.TRADING_STATE, name="active", issued_by="operator"))
    assert d.orders.allocation.states == {"big": TradingState.ACTIVE, "small": TradingState.ACTIVE}  # re-armed
