"""Hand-made feature vectors for strategy and signals-stage tests."""

from __future__ import annotations

from schemas import ExecutionReport, FeatureVector, OrderState, Side

T0 = 1_704_205_800_000_000_000  # 2024-01-02T14:30:00Z, the synthetic feed's first open
SECOND = 1_000_000_000
EIGHT = tuple(f"SYN{i}" for i in range(8))


def vector(
    symbol: str,
    bar_end: int = T0,
    *,
    imbalance: float = 0.0,
    ret_5: float = 0.0,
    close: float = 100.0,
    feature_set: str = "v1",
    interval: str = "1s",
    tick_ingest: int = 1,
    **values: float,
) -> FeatureVector:
    """A v1 vector whose imbalance_1 and imbalance_5 are both ``imbalance``; ``values`` override."""
    features = {"ret_5": ret_5, "imbalance_1": imbalance, "imbalance_5": imbalance, **values}
    return FeatureVector(
        id=f"{symbol}:{interval}:{bar_end}:{feature_set}",
        ts_event=bar_end,
        ts_ingest=2,
        symbol=symbol,
        interval=interval,
        feature_set=feature_set,
        bar_end=bar_end,
        close=close,
        values=features,
        ts_tick_ingest=tick_ingest,
    )


def cross_section(imbalances: dict[str, float], bar_end: int = T0, **kwargs) -> list[FeatureVector]:
    return [vector(s, bar_end, imbalance=x, **kwargs) for s, x in imbalances.items()]


def fill_report(
    client_order_id: str,
    symbol: str,
    side: Side,
    order_qty: float,
    last_qty: float,
    fill_id: str,
    *,
    cum_qty: float | None = None,
    account: str = "paper",
    strategy: str = "baseline",
    price: float = 100.0,
) -> ExecutionReport:
    cum = last_qty if cum_qty is None else cum_qty
    leaves = max(order_qty - cum, 0.0)
    return ExecutionReport(
        id=f"{client_order_id}:{fill_id}",
        ts_event=T0,
        ts_ingest=3,
        account=account,
        venue="sim",
        client_order_id=client_order_id,
        strategy=strategy,
        symbol=symbol,
        side=side,
        state=OrderState.FILLED if leaves == 0 else OrderState.PARTIALLY_FILLED,
        order_qty=order_qty,
        cum_qty=cum,
        leaves_qty=leaves,
        avg_price=price,
        fill_id=fill_id,
        last_qty=last_qty,
        last_price=price,
        ts_tick_ingest=1,
    )


def state_report(
    client_order_id: str,
    symbol: str,
    side: Side,
    order_qty: float,
    state: OrderState,
    *,
    cum_qty: float = 0.0,
    account: str = "paper",
    strategy: str = "baseline",
) -> ExecutionReport:
    leaves = 0.0 if state.is_terminal else order_qty - cum_qty
    return ExecutionReport(
        id=f"{client_order_id}:{state.value}",
        ts_event=T0,
        ts_ingest=3,
        account=account,
        venue="sim",
        client_order_id=client_order_id,
        strategy=strategy,
        symbol=symbol,
        side=side,
        state=state,
        order_qty=order_qty,
        cum_qty=cum_qty,
        leaves_qty=leaves,
        avg_price=0.0,
        ts_tick_ingest=1,
    )
