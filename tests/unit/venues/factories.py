"""Builders for the records the venue consumes, with trading defaults so a test states only what matters."""

from __future__ import annotations

from schemas import NANOS_PER_SECOND, Order, OrderAction, OrderType, Quote, Side, TimeInForce, Trade

# 2024-01-02 14:30:00 UTC (the US open); the XNYS session closes the same day at 21:00 UTC (16:00 New York).
T0 = 1_704_205_800 * NANOS_PER_SECOND
SESSION_CLOSE = 1_704_229_200 * NANOS_PER_SECOND
MS = 1_000_000
LATENCY = 50 * MS  # SimVenueConfig's default


def order(
    coid: str = "o1",
    side: Side = Side.BUY,
    qty: float = 100.0,
    *,
    limit: float | None = None,
    tif: TimeInForce = TimeInForce.DAY,
    ts: int = T0,
    symbol: str = "AAPL",
    account: str = "acct",
    strategy: str = "strat",
    tick_ingest: int = 7,
) -> Order:
    return Order(
        id=coid, ts_event=ts, ts_ingest=0, client_order_id=coid, account=account, strategy=strategy,
        symbol=symbol, side=side, order_type=OrderType.LIMIT if limit is not None else OrderType.MARKET,
        time_in_force=tif, quantity=qty, limit_price=limit, ts_tick_ingest=tick_ingest,
    )


def cancel(coid: str = "o1", *, ts: int = T0, account: str = "acct", symbol: str = "AAPL") -> Order:
    return Order(
        id=f"{coid}:cancel", ts_event=ts, ts_ingest=0, client_order_id=coid, action=OrderAction.CANCEL,
        account=account, strategy="strat", symbol=symbol, side=Side.BUY, quantity=1.0, ts_tick_ingest=9,
    )


def trade(price: float, size: float, *, ts: int = T0 + LATENCY, symbol: str = "AAPL", tick_ingest: int = 11) -> Trade:
    return Trade(
        id=f"t{ts}:{price}:{size}", ts_event=ts, ts_ingest=0, symbol=symbol, price=price, size=size,
        trade_id=f"{ts}:{price}:{size}",
        source="test", ts_tick_ingest=tick_ingest,
    )


def quote(bid: float, ask: float, *, bid_size: float = 0.0, ask_size: float = 0.0, ts: int = T0,
          symbol: str = "AAPL", tick_ingest: int = 13) -> Quote:
    return Quote(
        id=f"q{ts}", ts_event=ts, ts_ingest=0, symbol=symbol, bid_price=bid, bid_size=bid_size,
        ask_price=ask, ask_size=ask_size, source="test", ts_tick_ingest=tick_ingest,
    )
