"""Time one pre-trade check (RiskState.on_order) on an approve path and a deny path.

Usage: python benchmarks/risk_check_timing.py [n]. Prints p50/p99 microseconds per check. The state
is realistic for the default account: 8 symbols with positions and ~40 working orders, so the
gross/net projection walks every symbol as it would live.
"""

from __future__ import annotations

import statistics
import sys
import time

from trading.risk import RiskLimits, RiskState
from schemas import NANOS_PER_SECOND, ExecutionReport, Order

SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "META", "TSLA", "AMD", "INTC"]
PRICES = [190.0, 410.0, 480.0, 180.0, 470.0, 240.0, 160.0, 22.0]
T0 = 1_700_000_000 * NANOS_PER_SECOND


def make_order(i: int, qty: float, symbol: str = "AAPL", side: str = "buy") -> Order:
    ts = T0 + i * 10 * NANOS_PER_SECOND  # 1 order / 10 s: rate limits never bind while timing
    return Order(id=f"c{i}", client_order_id=f"c{i}", account="acct", strategy="s", symbol=symbol,
                 side=side, quantity=qty, ts_event=ts, ts_ingest=ts, ts_tick_ingest=ts)


def primed_state() -> RiskState:
    risk = RiskState("acct", RiskLimits(max_open_orders=10_000, max_orders_per_minute=10_000))
    for symbol, price in zip(SYMBOLS, PRICES):
        risk.on_trade(symbol, price, T0 - 1)
    for j, symbol in enumerate(SYMBOLS):
        for k in range(5):
            sent = make_order(-100 - j * 5 - k, 10, symbol, "buy" if k % 2 else "sell")
            risk.on_order(sent)
        risk.on_execution_report(ExecutionReport(
            id=f"r{j}", ts_event=T0, ts_ingest=T0, account="acct", venue="sim",
            client_order_id=f"c{-100 - j * 5}", strategy="s", symbol=symbol, side="sell", state="filled",
            order_qty=10, cum_qty=10, leaves_qty=0, avg_price=PRICES[j], fill_id=f"f{j}", last_qty=10,
            last_price=PRICES[j], ts_tick_ingest=T0))
    return risk


def canceled(sent: Order) -> ExecutionReport:
    return ExecutionReport(
        id=f"x{sent.id}", ts_event=sent.ts_event, ts_ingest=sent.ts_event, account="acct", venue="sim",
        client_order_id=sent.client_order_id, strategy="s", symbol=sent.symbol, side=sent.side,
        state="canceled", order_qty=sent.quantity, cum_qty=0, leaves_qty=0, avg_price=0,
        ts_tick_ingest=sent.ts_event)


def time_checks(orders: list[Order], risk: RiskState) -> list[float]:
    samples = []
    for sent in orders:
        start = time.perf_counter_ns()
        risk.on_order(sent)
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def report(label: str, samples: list[float]) -> None:
    samples = sorted(samples)
    p99 = samples[int(len(samples) * 0.99)]
    print(f"{label:8s} p50 {statistics.median(samples):6.2f} us   p99 {p99:6.2f} us   n={len(samples)}")


def main(n: int = 20_000) -> None:
    risk = primed_state()
    # Approve path: small buys, each canceled by the venue after the check.
    approves = [make_order(i, 1, SYMBOLS[i % 8]) for i in range(n)]
    samples = []
    for sent in approves:
        start = time.perf_counter_ns()
        result = risk.on_order(sent)
        samples.append((time.perf_counter_ns() - start) / 1000)
        assert result is sent, result
        risk.on_execution_report(canceled(sent))  # untimed: keeps open orders steady
    report("approve", samples)
    # Deny path: over max_order_qty (a RiskReject is built each time).
    denies = [make_order(n + i, 1_000_000, SYMBOLS[i % 8]) for i in range(n)]
    report("deny", time_checks(denies, risk))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
