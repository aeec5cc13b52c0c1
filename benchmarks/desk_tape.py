"""Ticks per second through the trading desk alone, on a pre-normalized synthetic tape.

    python benchmarks/desk_tape.py [--ticks 1000000] [--batches 10,100,1000,10000] [--mode records|columns|both]

The tape (synthetic feed, 8 symbols, 5,000 ticks/s of event time, flat over the day) is normalized and turned into the
baseline strategy's cross-sections once (normalize, bars, features, signals as in
``tests/unit/trading/test_desk.py``) and cached under ``/tmp``; only the desk is timed. Each
cross-section arrives right after the batch holding the tick that completed its bar.

- ``records``: Trade/Quote records handed over a batch at a time, no watermark (Kafka, Alpaca);
- ``columns``: the same ticks as TickBatches of a batch's rows, each with the feed's watermark
  (the embedded synthetic feed), one TickBatch per ``on_batch`` call.

Prints CPU seconds (process_time) and ticks/s for each batch size, whether both modes gave the same
records, the size and time of a recovery snapshot taken mid-tape, and how much event time the desk
held orders and fills back: when each came out, the newest tick handed over minus the record's own
``ts_event`` (an order's is its bar end, a fill's the tick that filled it). Wall-clock latency
adds the engine's and the feed's.
"""

from __future__ import annotations

import argparse
import gc
import pickle
import sys
import time
from dataclasses import replace
from itertools import groupby
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from feeds import make_feed  # noqa: E402
from market.bars import BarBuilder  # noqa: E402
from market.features import FeatureState  # noqa: E402
from market.normalize import NormalizeConfig, NormalizeState  # noqa: E402
from schemas import Bar, DeadLetter, Quote, Trade, content_hash  # noqa: E402
from schemas.columns import TickBatch, concat_tick_batches  # noqa: E402
from strategies.baseline import BaselineStrategy  # noqa: E402
from strategies.portfolio import PortfolioConstructor  # noqa: E402
from strategies.signals import CrossSection, SignalState  # noqa: E402
from trading.desk import T_INTENT, T_REPORTS, TradingDesk  # noqa: E402

SYMBOLS = tuple(f"SYN{i}" for i in range(8))
CHUNK = 5_000  # ticks per preparation step (how far the cross-sections can lag the tape)


def prepare(ticks: int) -> tuple[TickBatch, list[tuple[int, CrossSection]]]:
    """The normalized tape as one batch, and each cross-section with the tape position it follows."""
    cache = Path(f"/tmp/tapeflow_desk_tape_v2_{ticks}.pkl")
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    feed = make_feed("synthetic", seed=9, ticks_per_second=5_000, u_shape=0.0, max_ticks=ticks)
    normalize = NormalizeState(NormalizeConfig(max_future_ns=10**30))
    bars = BarBuilder(intervals=("1s",), lateness_ns=500_000_000)
    features = FeatureState(interval="1s")
    signals = SignalState(BaselineStrategy(), PortfolioConstructor(), "paper", symbols=SYMBOLS, emit_orders=False)
    parts: list[TickBatch] = []
    sections: list[tuple[int, CrossSection]] = []
    seen = 0
    raw = list(feed.ticks())
    for start in range(0, len(raw), CHUNK):
        accepted = [(tick.seq, r) for tick in raw[start:start + CHUNK] for r in normalize.on_raw(tick)
                    if type(r) is not DeadLetter]
        market = [r for _, r in accepted]
        seen += len(market)
        # as a columnar normalize hands them over: the feed's seq kept, the ids derived on demand
        part = TickBatch.from_records(market)
        part = replace(part, seq=np.array([seq for seq, _ in accepted], dtype=np.int64), ids=None)
        assert part.record_ids().tolist() == [r.id for r in market]
        parts.append(part)
        bar_out = []
        for _, group in groupby(sorted(market, key=lambda r: r.symbol), key=lambda r: r.symbol):
            for record in group:
                bar_out.extend(bars.on_trade(record) if type(record) is Trade
                               else bars.advance(record.symbol, record.ts_event))
        closed = sorted((b for b in bar_out if type(b) is Bar), key=lambda b: b.symbol)
        vectors = [v for b in closed for v in features.on_bar(b)]
        sections += [(seen, s) for v in vectors for s in signals.on_features(v) if type(s) is CrossSection]
    sections += [(seen, s) for s in signals.flush() if type(s) is CrossSection]
    out = (concat_tick_batches(parts), sections)
    cache.write_bytes(pickle.dumps(out))
    return out


def arrivals(tape: TickBatch, sections: list, batch: int, columns: bool) -> list[list]:
    """The desk's input batches: ``batch`` ticks each, then the cross-sections whose bar closed in
    it (a bar closes on the first tick past its end, as behind a feed watermark)."""
    out: list[list] = []
    ts = tape.ts_event
    # a cross-section arrives right after the tick that closed its bar
    pending = [(int(np.searchsorted(ts, section.bar_end, "left")) + 1, section) for _, section in sections]
    for start in range(0, len(tape), batch):
        end = min(start + batch, len(tape))
        chunk = tape.take(slice(start, end))
        if columns:
            # an ordered feed's promise: nothing after this batch is older than its next tick
            watermark = int(ts[end]) if end < len(tape) else int(ts[end - 1]) + 1
            items: list = [replace(chunk, watermark=watermark)]
        else:
            items = chunk.to_records()
        while pending and pending[0][0] <= end:
            items.append(pending.pop(0)[1])
        out.append(items)
    if pending:
        out.append([s for _, s in pending])
    return out


def run(batches: list[list]) -> tuple[float, list, tuple[int, float], dict[str, list[float]]]:
    """CPU time, output, a mid-tape snapshot (bytes, seconds), and how far the tape had got (event
    time of the newest tick handed over) when each order and fill came out, minus its own time."""
    desk = TradingDesk()
    out: list = []
    elapsed, snapshot = 0.0, (0, 0.0)
    held: dict[str, list[float]] = {"orders": [], "fills": []}
    now = 0
    for i, items in enumerate(batches):
        started = time.process_time()
        released = desk.on_batch(items)
        elapsed += time.process_time() - started
        out.extend(released)
        for item in items:
            if type(item) is TickBatch and len(item):
                now = int(item.ts_event[-1])
            elif type(item) in (Trade, Quote):
                now = item.ts_event
        for table, record in released:
            if table == T_INTENT:
                held["orders"].append((now - record.ts_event) / 1e6)
            elif table == T_REPORTS and record.is_fill:
                held["fills"].append((now - record.ts_event) / 1e6)
        if i == len(batches) // 2:
            gc.disable()  # the pickling itself, not a collection of the benchmark's own tape
            started = time.perf_counter()
            blob = pickle.dumps(desk)
            snapshot = (len(blob), time.perf_counter() - started)
            gc.enable()
    started = time.process_time()
    out.extend(desk.flush())
    return elapsed + time.process_time() - started, out, snapshot, held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=1_000_000)
    parser.add_argument("--batches", default="10,100,1000,10000", help="batch sizes, comma-separated")
    parser.add_argument("--mode", choices=("records", "columns", "both"), default="both")
    args = parser.parse_args()
    tape, sections = prepare(args.ticks)
    print(f"tape  {len(tape):,} ticks, {len(sections):,} cross-sections")
    print(f"{'mode':8s} {'batch':>6s} {'CPU s':>6s} {'ticks/s':>10s} {'fills':>5s} {'snapshot':>8s} {'pickled':>7s} "
          f"{'order held p50/p99':>18s} {'fill held p50/p99':>17s}  identical")
    for size in (int(b) for b in args.batches.split(",")):
        results = {}
        for mode in (("records", "columns") if args.mode == "both" else (args.mode,)):
            elapsed, out, (snapshot_bytes, snapshot_s), held = run(
                arrivals(tape, sections, size, columns=mode == "columns"))
            results[mode] = out
            fills = sum(1 for t, r in out if getattr(r, "is_fill", False))
            same = ""
            if len(results) == 2:
                same = str(content_hash(r for _, r in results["records"]) == content_hash(r for _, r in out))
            orders, fills_held = (np.percentile(held[k], [50, 99]) for k in ("orders", "fills"))
            print(f"{mode:8s} {size:>6,d} {elapsed:6.2f} {len(tape) / elapsed:>10,.0f} {fills:>5,d} "
                  f"{snapshot_bytes / 1e6:>6.1f}MB {snapshot_s * 1e3:>5.0f}ms "
                  f"{orders[0]:>8.0f}/{orders[1]:<6.0f}ms {fills_held[0]:>7.0f}/{fills_held[1]:<6.0f}ms  {same}")

if __name__ == "__main__":
    main()
