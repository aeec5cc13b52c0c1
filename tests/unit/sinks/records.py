"""One valid record of every warehouse table, with distinct, ns-precise times."""

from __future__ import annotations

from schemas.feature_set import FEATURE_SET_V1
from schemas import (
    Aggressor,
    Bar,
    ControlCommand,
    ControlKind,
    DeadLetter,
    ExecutionReport,
    FeatureVector,
    Order,
    OrderState,
    OrderType,
    PnlSnapshot,
    PositionSnapshot,
    Quote,
    RawTick,
    Record,
    RiskReject,
    Side,
    Signal,
    Trade,
)

T0 = 1_704_205_800_123_456_789  # 2024-01-02T14:30:00.123456789Z: the ns digits must survive
MINUTE = 60_000_000_000


def trade(i: int = 0, *, symbol: str = "AAPL", price: float = 187.25, size: float = 100.0,
          ts_event: int | None = None, aggressor: Aggressor = Aggressor.BUY) -> Trade:
    ts = T0 + i if ts_event is None else ts_event
    return Trade(id=f"{symbol}:t{i}", ts_event=ts, ts_ingest=ts + 7, symbol=symbol, price=price, size=size,
                 aggressor=aggressor, trade_id=f"v{i}", source="synthetic", ts_tick_ingest=ts + 7)


def order(coid: str = "baseline:AAPL:buy:1", *, order_type: OrderType = OrderType.LIMIT) -> Order:
    return Order(id=coid, ts_event=T0 + 10, ts_ingest=T0 + 11, client_order_id=coid, account="paper-1",
                 strategy="baseline", symbol="AAPL", side=Side.BUY, order_type=order_type, quantity=10.0,
                 limit_price=187.5 if order_type is OrderType.LIMIT else None, signal_id="sig-1",
                 ts_tick_ingest=T0 + 3)


def fill(fill_id: str = "f-1", *, ts_event: int = T0 + 20) -> ExecutionReport:
    return ExecutionReport(id=f"er:{fill_id}", ts_event=ts_event, ts_ingest=ts_event + 1, account="paper-1",
                           venue="sim", client_order_id="baseline:AAPL:buy:1", venue_order_id="v-1",
                           strategy="baseline", symbol="AAPL", side=Side.BUY, state=OrderState.PARTIALLY_FILLED,
                           order_qty=10.0, cum_qty=4.0, leaves_qty=6.0, avg_price=187.4, fill_id=fill_id,
                           last_qty=4.0, last_price=187.4, fee=0.04, ts_tick_ingest=T0 + 3)


def pnl(ts_event: int, equity: float, *, strategy: str = "baseline") -> PnlSnapshot:
    return PnlSnapshot(id=f"pnl:{strategy}:{ts_event}", ts_event=ts_event, ts_ingest=ts_event + 1,
                       account="paper-1", strategy=strategy, realized_pnl=equity - 100_000.0, unrealized_pnl=1.5,
                       fees=0.25, equity=equity, peak_equity=max(equity, 100_000.0),
                       drawdown=max(0.0, 100_000.0 - equity), gross_exposure=1874.0, net_exposure=-1874.0,
                       ts_tick_ingest=ts_event - 5)


def one_of_each() -> dict[str, Record]:
    """{table: record} for every table of the catalog."""
    features = {name: 0.01 * (i + 1) for i, name in enumerate(FEATURE_SET_V1)}
    return {
        "md_raw": RawTick(id="raw-1", ts_event=T0, ts_ingest=T0 + 1, source="synthetic", symbol="AAPL",
                          payload={"p": 187.25, "s": 100, "tags": ["odd", "lot"], "nested": {"x": None}}, seq=42),
        "md_trades": trade(),
        "md_quotes": Quote(id="q-1", ts_event=T0 + 1, ts_ingest=T0 + 2, symbol="AAPL", bid_price=187.2,
                           bid_size=300.0, ask_price=187.3, ask_size=0.0, source="synthetic", ts_tick_ingest=T0 + 2),
        "md_bars": Bar(id="AAPL:1m:1", ts_event=T0 + MINUTE, ts_ingest=T0 + MINUTE + 5, symbol="AAPL", interval="1m",
                       bar_start=T0, bar_end=T0 + MINUTE, open=187.0, high=188.0, low=186.5, close=187.5,
                       volume=1234.5, vwap=187.3, trade_count=17, buy_volume=700.0, sell_volume=534.5,
                       ts_tick_ingest=T0 + MINUTE - 3),
        "features": FeatureVector(id="AAPL:1m:v1:1", ts_event=T0 + MINUTE, ts_ingest=T0 + MINUTE + 6, symbol="AAPL",
                                  interval="1m", feature_set="v1", bar_end=T0 + MINUTE, close=187.5, values=features,
                                  ts_tick_ingest=T0 + MINUTE - 3),
        "signals": Signal(id="sig-1", ts_event=T0 + MINUTE, ts_ingest=T0 + MINUTE + 7, account="paper-1",
                          strategy="lgbm", strategy_version="2", model_version="lgbm-2024-01-01", symbol="AAPL",
                          bar_end=T0 + MINUTE, score=-0.37, target_weight=-0.25, ts_tick_ingest=T0 + MINUTE - 3),
        "orders_intent": order(),
        "orders_approved": order("baseline:AAPL:buy:2", order_type=OrderType.MARKET),
        "orders_rejected": RiskReject(id="rej-1", ts_event=T0 + 12, ts_ingest=T0 + 13, account="paper-1",
                                      order=order(), reasons=["max_position", "kill_switch"], ts_tick_ingest=T0 + 3),
        "exec_reports": fill(),
        "positions": PositionSnapshot(id="pos-1", ts_event=T0 + 21, ts_ingest=T0 + 22, account="paper-1",
                                      strategy="baseline", symbol="AAPL", quantity=-4.0, avg_cost=187.4,
                                      mark_price=187.5, market_value=-750.0, realized_pnl=0.0,
                                      unrealized_pnl=-0.4, fees=0.04, ts_tick_ingest=T0 + 3),
        "pnl": pnl(T0 + 23, 99_999.56),
        "control": ControlCommand(id="ctl-1", ts_event=T0 + 30, ts_ingest=T0 + 31, target="paper-1",
                                  kind=ControlKind.SET_LIMIT, name="max_gross", value=50_000.0, issued_by="ops",
                                  detail="tighten"),
        "dlq": DeadLetter(id="dlq-1", ts_event=T0 + 40, ts_ingest=T0 + 41, source_topic="md.raw", stage="normalize",
                          reason="crossed_quote", detail="bid 2 >= ask 1", symbol="AAPL",
                          payload='{"bp": 2, "ap": 1}'),
    }
