"""The embedded flow's warehouse writer runs below the tape it shares a process with."""

from __future__ import annotations

from config.settings import Settings
from feeds import make_feed
from flows.pipeline import MarketDataConfig, TradingConfig, build_embedded_flow, feed_universe
from flows.sink import WarehouseSink
from sinks.writer import BatchingWriter


class NoWarehouse:
    def insert_arrow(self, table, arrow_table, *, dedup_token=None):
        return arrow_table.num_rows


def steps(step):
    substeps = getattr(step, "substeps", [])
    for sub in substeps.values() if isinstance(substeps, dict) else substeps:
        yield sub
        yield from steps(sub)


def test_embedded_flow_when_built_then_its_warehouse_sink_writes_below_the_tape():
    settings, feed = Settings(), make_feed("synthetic", seed=1, max_ticks=10)
    for trading in (None, TradingConfig.from_settings(settings, feed_universe(feed))):
        flow = build_embedded_flow(MarketDataConfig.from_settings(settings), feed, BatchingWriter(NoWarehouse(), "r"),
                                   trading=trading)
        sinks = [step.sink for step in steps(flow) if isinstance(getattr(step, "sink", None), WarehouseSink)]
        assert len(sinks) == 1 and sinks[0]._writer.below_the_tape
