"""Throughput and memory of the market-data half: synthetic feed at full speed through normalize,
bars and features into the embedded warehouse, one Bytewax worker.

    python benchmarks/market_data.py [--ticks N | --duration S] [--no-raw]

Prints ticks/s (wall clock over the whole run, including the final flush) and the peak RSS of the
process. Targets (issue 2): >= 100,000 ticks/s; peak RSS <= 1 GiB over 10 minutes.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from feeds import make_feed  # noqa: E402
from flows.pipeline import MarketDataConfig, build_embedded_flow, run_flow  # noqa: E402
from flows.source import FeedLimits  # noqa: E402
from sinks.warehouse import Warehouse  # noqa: E402
from sinks.writer import BatchingWriter  # noqa: E402
from tapeflow.progress import RunProgress  # noqa: E402
from tapeflow.settings import Settings  # noqa: E402


def current_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=1_000_000)
    parser.add_argument("--duration", type=float, default=None, help="wall seconds instead of a tick count")
    parser.add_argument("--no-raw", action="store_true", help="do not land md.raw")
    parser.add_argument("--warehouse", default=None, help="default: a fresh chdb path in a temp dir")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="tapeflow-bench-")
    url = args.warehouse or f"chdb://{workdir}/warehouse"
    settings = Settings(warehouse=url, store_raw=not args.no_raw)
    wh = Warehouse.connect(settings.warehouse, database="bench")
    wh.apply_ddl()
    writer = BatchingWriter(wh, "bench", max_rows=settings.sink_max_rows, max_age_s=settings.sink_max_age_s)
    limits = FeedLimits(max_ticks=None if args.duration else args.ticks, duration_s=args.duration)
    progress = RunProgress(interval_s=5.0)
    peak_sampled = [0.0]
    done = threading.Event()

    def sample_rss() -> None:
        while not done.wait(1.0):
            peak_sampled[0] = max(peak_sampled[0], current_rss_mib())

    threading.Thread(target=sample_rss, daemon=True).start()
    flow = build_embedded_flow(MarketDataConfig.from_settings(settings), make_feed("synthetic", seed=7), writer, progress, limits)
    progress.start()
    started = time.perf_counter()
    run_flow(flow, settings.epoch_interval_s)
    elapsed = time.perf_counter() - started
    progress.stop()
    done.set()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _, rows = wh.query("SELECT count() FROM md_bars WHERE run_id = 'bench'")
    _, feats = wh.query("SELECT count() FROM features WHERE run_id = 'bench'")
    print(f"ticks            {progress.ticks:,}")
    print(f"elapsed          {elapsed:.2f} s")
    print(f"throughput       {progress.ticks / elapsed:,.0f} ticks/s (target >= 100,000)")
    print(f"bars / features  {rows[0][0]:,} / {feats[0][0]:,}")
    print(f"peak RSS         {peak_mib:,.0f} MiB (target <= 1024)")
    print(f"md.raw landed    {not args.no_raw}")


if __name__ == "__main__":
    main()
