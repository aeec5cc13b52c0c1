"""Orders per second through pre-trade risk + the simulated venue + the ledger (the desk's order
path), without the market-data half.

    python benchmarks/order_path.py [--orders N]

Each order is a market order for one of 8 symbols; a trade 60 ms later fills it, which books the
fill in the ledger and feeds risk. Target (issue 3): >= 10,000 orders/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trading.desk import DeskConfig, TradingDesk  # noqa: E402
from trading.risk_limits import RiskLimits  # noqa: E402
from schemas import Order, OrderType, Side, Trade  # noqa: E402

T0 = 1_704_205_800_000_000_000
SYMBOLS = [f"SYN{i}" for i in range(8)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=50_000)
    args = parser.parse_args()
    # Limits that never bind: the benchmark measures the path, not the denials.
    limits = RiskLimits(max_orders_per_second=10**9, max_orders_per_minute=10**9, max_open_orders=10**9,
                        max_position_qty=1e12, max_position_notional=1e15, max_gross_notional=1e15,
                        max_net_notional=1e15, daily_loss_limit=1e15, max_drawdown_pct=0.99)
    desk = TradingDesk(DeskConfig(limits=limits))
    orders, trades = [], []
    for i in range(args.orders):
        symbol = SYMBOLS[i % 8]
        ts = T0 + i * 1_000_000
        side = Side.BUY if (i // 8) % 2 == 0 else Side.SELL
        coid = f"bench-{symbol}-{i}"
        orders.append(Order(id=coid, client_order_id=coid, ts_event=ts, ts_ingest=ts, account="paper",
                            strategy="bench", symbol=symbol, side=side, order_type=OrderType.MARKET,
                            quantity=10.0, ts_tick_ingest=ts))
        trades.append(Trade(id=f"t{i}", ts_event=ts + 60_000_000, ts_ingest=ts, symbol=symbol, price=100.0 + i % 7,
                            size=50.0, trade_id=str(i), source="bench", ts_tick_ingest=ts))
    def trade_now(trade: Trade, out: list) -> None:
        # the desk's handling of a released trade, without the sequencer in front of it
        desk.marked.on_trade(trade)
        desk._book(desk.venue.on_trade(trade), out)

    for symbol in SYMBOLS:  # a reference price for each symbol before the first order
        trade_now(Trade(id=f"ref-{symbol}", ts_event=T0 - 1, ts_ingest=T0, symbol=symbol, price=100.0,
                             size=1.0, trade_id="ref", source="bench", ts_tick_ingest=T0), [])
    out: list = []
    started = time.perf_counter()
    for order, trade in zip(orders, trades):
        desk.submit(order, out)
        trade_now(trade, out)
    elapsed = time.perf_counter() - started
    fills = desk.counts["fills"]
    print(f"orders          {len(orders):,} (approved {desk.counts['approved']:,}, fills {fills:,})")
    print(f"elapsed         {elapsed:.2f} s")
    print(f"throughput      {len(orders) / elapsed:,.0f} orders/s through risk + venue + ledger (target >= 10,000)")
    print(f"ledger balanced {desk.ledger.check_balance()}")


if __name__ == "__main__":
    main()
