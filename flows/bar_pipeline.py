"""The fused embedded topology on a bar file (``tapeflow run --feed bars``): bars in, no ticks.

    bar file -> md.bars -> features (at the file's interval) -> signals (cross-sections)
                   \\------------------------------------------> desk (fills and marks from bars) <- control
    every stream -> its warehouse table

The stages are the tick pipeline's own (the same feature, signal and desk cores), so features on
replayed bars equal those on the bars the pipeline built from ticks. Features, cross-sections and
the desk's bar clock run at the file's interval (whatever ``feature_interval`` says: a bar file has
no finer time). The desk takes each bar's open as the venue's matching opportunity and its close as
the mark (``trading/sequencer.py``, ``venues/sim.py``: fills from bars). The simulated venue only:
a live venue trades on live prices, not on a file's bars.
"""

from __future__ import annotations

import time
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from config.control_channel import ControlChannel
from flows.builders import desk_stage, feature_stage, signal_stage, signals_for_warehouse, tagged_for_warehouse, tagged_pairs
from flows.sink import WarehouseSink
from flows.source import ControlSource, FeedLimits
from flows.stateful import flow_recovery
from schemas import INTERVAL_NANOS, Bar
from trading.desk import TradingDesk

BARS_PER_HANDOVER = 2_000


def is_bar_feed(feed: Any) -> bool:
    return tuple(getattr(feed, "market_streams", ())) == ("bar",)


class _BarPartition(StatefulSourcePartition[Bar, int]):
    def __init__(self, feed, start: int, limits: FeedLimits):
        self._bars = feed.bars(start, max_bars=BARS_PER_HANDOVER)
        self._next = start
        self._limits = limits
        self._deadline = limits.deadline()

    def next_batch(self) -> list[Bar]:
        limits = self._limits
        if limits.stop.is_set() or (self._deadline is not None and time.monotonic() >= self._deadline):
            limits.cut_short.set()
            limits.feed_done.set()
            raise StopIteration()
        batch = next(self._bars, None)
        if batch is None:
            limits.feed_done.set()
            raise StopIteration()
        self._next += len(batch)
        return batch

    def snapshot(self) -> int:
        return self._next


class BarFeedSource(FixedPartitionedSource[Bar, int]):
    """A bar feed as one partition of Bar lists; resume state: the index of the next bar."""

    def __init__(self, feed, limits: FeedLimits):
        self._feed = feed
        self._limits = limits

    def list_parts(self) -> list[str]:
        return ["bars"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _BarPartition:
        return _BarPartition(self._feed, resume_state or 0, self._limits)


def build_bar_flow(
    feed: Any,
    writer: Any,
    progress: Any | None = None,
    limits: FeedLimits | None = None,
    resumable: bool = False,
    trading: Any | None = None,
    control: ControlChannel | None = None,
    venue: Any | None = None,
) -> Dataflow:
    """As :func:`flows.pipeline.build_embedded_flow`, for a :class:`feeds.bar_replay.BarFileFeed`.
    ``trading``: a :class:`flows.pipeline.TradingConfig` (its desk's bar clock and market streams
    are set to the file's), or None for bars and features only."""
    if venue is not None:
        raise ValueError("a bar replay fills on the simulated venue only: a live venue trades on live prices")
    if limits is not None and limits.max_ticks is not None:
        raise ValueError("max_ticks counts ticks and a bar replay has none: stop it with a duration instead")
    limits = limits or FeedLimits()
    flush_at_end = (lambda: not limits.cut_short.is_set()) if resumable else (lambda: True)
    interval = feed.interval
    flow = Dataflow("tapeflow_bars")
    sink_key = WarehouseSink.PARTITION
    bars = op.input("feed", flow, BarFeedSource(feed, limits))
    features = feature_stage("features", bars, interval)
    to_sink = [tagged_for_warehouse("sink_tag", op.merge("sink_merge", bars, features), sink_key)]
    if trading is not None:
        account = trading.desk.account
        desk_config = trading.desk.model_copy(update={
            "bar_interval": interval, "market_streams": ("bar",), "redelivered_ticks": False,
            # symbols whose bars are a few intervals apart are not silent (a tick tape's 30 s is one 1m bar)
            "silent_after_ns": max(trading.desk.silent_after_ns, 10 * INTERVAL_NANOS[interval]),
        })
        commands = op.input("control", flow, ControlSource(control or ControlChannel("data/control.jsonl"), limits))
        sections = signal_stage("signals", features, lambda: trading.new_signal_state(interval), account,
                                flush_at_end, control=commands)
        keyed_bars = op.map("desk_bars", bars, lambda bar: (bar.symbol, bar))
        desk_out = desk_stage("desk", keyed_bars, sections, commands, lambda: TradingDesk(desk_config), account,
                              flush_at_end)
        to_sink.append(signals_for_warehouse("sink_signals", sections, sink_key))
        to_sink.append(tagged_pairs("sink_desk", desk_out, sink_key))
    op.output("warehouse", op.merge("sink_all", *to_sink),
              WarehouseSink(writer, progress, epoch_barrier=flow_recovery(flow), below_the_tape=True))
    return flow
