"""The desk on a bar replay: a cross-section's orders fill at the next bar's open, marks at closes."""

from __future__ import annotations

from schemas import Bar, Signal
from strategies.signals import CrossSection
from trading.desk import T_DLQ, T_POSITIONS, T_REPORTS, DeskConfig, TradingDesk

MINUTE = 60_000_000_000
T0 = 1_704_205_800 * 1_000_000_000  # 2024-01-02 14:30 UTC, on the minute
LATENCY = 50_000_000


def bar(start: int, open_: float, close: float, volume: float | None = 1e6) -> Bar:
    return Bar(id=f"X:1m:{start}", ts_event=start + MINUTE, ts_ingest=0, symbol="X", interval="1m", bar_start=start,
               bar_end=start + MINUTE, open=open_, high=max(open_, close), low=min(open_, close), close=close,
               volume=volume, vwap=None, trade_count=None, buy_volume=None, sell_volume=None, ts_tick_ingest=1)


def section(bar_end: int, weight: float) -> CrossSection:
    signal = Signal(id=f"s{bar_end}", ts_event=bar_end, ts_ingest=0, account="paper", strategy="test",
                    strategy_version="1", symbol="X", bar_end=bar_end, score=1.0, target_weight=weight,
                    ts_tick_ingest=0)
    return CrossSection(bar_end, (signal,), 0)


def bar_desk() -> TradingDesk:
    return TradingDesk(DeskConfig(bar_interval="1m", market_streams=("bar",), universe=("X",),
                                  redelivered_ticks=False))


def test_desk_when_a_section_follows_a_bar_then_its_order_fills_at_the_next_bar_open_even_if_that_bar_came_first():
    desk = bar_desk()
    bars = [bar(T0 + i * MINUTE, 100.0 + i, 100.5 + i) for i in range(40)]
    out = []
    # the next bar reaches the desk before the cross-section computed on the previous one
    out += desk.on_batch(bars[:36])
    out += desk.on_batch([section(T0 + 35 * MINUTE, 0.04)])
    out += desk.on_batch(bars[36:])
    out += desk.flush()
    fills = [r for r in (rec for t, rec in out if t == T_REPORTS) if r.is_fill]
    assert fills and not [rec for t, rec in out if t == T_DLQ]
    first = fills[0]
    assert first.ts_event == T0 + 35 * MINUTE + LATENCY  # the bar starting where the signal's bar ended
    assert first.last_price == 135.02  # its open plus 1 bp (135.0135), rounded up against the buyer
    # sized on the mark of the signal bar's close (134.5): 4% of 1,000,000
    assert abs(sum(f.last_qty for f in fills) * 134.5 - 40_000.0) < 134.5


def test_desk_when_bars_then_positions_marked_at_each_bar_close():
    desk = bar_desk()
    out = desk.on_batch([bar(T0 + i * MINUTE, 100.0 + i, 100.5 + i) for i in range(36)])
    out += desk.on_batch([section(T0 + 35 * MINUTE, 0.04)])
    out += desk.on_batch([bar(T0 + i * MINUTE, 100.0 + i, 100.5 + i) for i in range(36, 40)])
    out += desk.flush()
    marks = {p.ts_event: p.mark_price for t, p in out if t == T_POSITIONS and p.quantity}
    assert marks and all(mark == 100.5 + (ts - T0) // MINUTE - 1 for ts, mark in marks.items() if ts % MINUTE == 0)


def test_desk_when_a_bar_replayed_after_its_time_then_dead_lettered_as_late():
    desk = bar_desk()
    desk.on_batch([bar(T0 + i * MINUTE, 100.0, 100.0) for i in range(5)])
    desk.flush()
    out = desk.on_batch([bar(T0, 100.0, 100.0)])
    assert [(rec.reason, rec.source_topic) for t, rec in out if t == T_DLQ] == [("late", "md.bars")]
