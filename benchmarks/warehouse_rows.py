"""Rows into the warehouse's Arrow form: records one by one (sinks.rows) against column batches
(sinks.columns), on the synthetic tape normalized once.

    python benchmarks/warehouse_rows.py [--ticks 200000]

Prints rows/s of each path for md_trades + md_quotes and for md_raw. The writer does this work for
every row that lands; the column path is what the embedded pipeline uses for ticks.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from feeds.synthetic import SyntheticConfig, SyntheticFeed  # noqa: E402
from market.normalize import NormalizeState  # noqa: E402
from schemas import Quote, Trade  # noqa: E402
from schemas.columns import RawTickBatch, TickBatch  # noqa: E402
from sinks.columns import raw_table, tick_tables  # noqa: E402
from sinks.rows import to_arrow  # noqa: E402


def best_of(runs: int, fn) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=200_000)
    args = parser.parse_args()
    raws = list(itertools.islice(SyntheticFeed(SyntheticConfig()).ticks(), args.ticks))
    state = NormalizeState()
    records = [r for raw in raws for r in state.on_raw(raw)]
    trades = [r for r in records if type(r) is Trade]
    quotes = [r for r in records if type(r) is Quote]
    ticks = TickBatch.from_records(records)
    raw_batch = RawTickBatch.from_records(raws)
    n = len(records)

    per_record = best_of(3, lambda: (to_arrow("md_trades", trades, "b"), to_arrow("md_quotes", quotes, "b")))
    columns = best_of(3, lambda: tick_tables(ticks, "b"))
    print(f"md_trades + md_quotes  records {n / per_record:,.0f} rows/s   column batch {n / columns:,.0f} rows/s")
    per_record = best_of(3, lambda: to_arrow("md_raw", raws, "b"))
    columns = best_of(3, lambda: raw_table(raw_batch, "b"))
    print(f"md_raw                 records {len(raws) / per_record:,.0f} rows/s   column batch {len(raws) / columns:,.0f} rows/s")


if __name__ == "__main__":
    main()
