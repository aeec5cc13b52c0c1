"""The fused embedded topology: one Bytewax dataflow, one process, from feed to warehouse.

    feed -> normalize -> bars -> features -> signals (cross-sections)
                 \\--------\\-----------------------> desk (portfolio, risk, venue, ledger) <- control
    every stream -> its warehouse table, through one batching sink

Deterministic: with the same input and config every record's content is identical between runs
(only wall-clock ``ts_ingest`` fields differ); see ``trading/desk.py`` for how the trading half keeps
event-time order whatever the engine's batching.
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Sequence

import bytewax.operators as op
import pyarrow as pa
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import cluster_main, run_main

from flows.bar_pipeline import build_bar_flow, is_bar_feed
from flows.builders import (
    bar_stage,
    desk_stage,
    feature_stage,
    normalize_stage,
    signal_stage,
    signals_for_warehouse,
    tagged_for_warehouse,
    tagged_pairs,
)
from trading.desk import DeskConfig, TradingDesk, default_portfolio
from market.calendar import ALWAYS_OPEN, XNYS
from market.normalize import NormalizeConfig
from strategies.signals import SignalState
from flows.sink import WarehouseSink
from flows.stateful import flow_recovery
from flows.source import ControlSource, Feed, FeedLimits, FeedSource, VenueReportSource
from strategies.base import StrategyContext
from strategies.baseline import BaselineConfig, BaselineStrategy
from strategies.loading import LoadedStrategies, external_strategies, load_strategies
from strategies.portfolio import PortfolioConstructor
from config.control_channel import ControlChannel
from schemas.columns import RawTickBatch
from config.settings import Settings
from venues.sim_config import SimVenueConfig


@dataclass(frozen=True)
class MarketDataConfig:
    normalize: NormalizeConfig
    bar_intervals: tuple[str, ...]
    lateness_ns: int
    feature_interval: str
    store_raw: bool

    @classmethod
    def from_settings(cls, settings: Settings, symbols: tuple[str, ...] | None = None) -> "MarketDataConfig":
        lateness_ns = settings.lateness_ms * 1_000_000
        normalize = NormalizeConfig(
            lateness_ns=lateness_ns,
            price_band_pct=settings.price_band_pct,
            max_future_ns=int(settings.max_future_s * 1e9),
            universe=frozenset(symbols) if symbols else None,
        )
        return cls(normalize, tuple(settings.bar_intervals), lateness_ns, settings.feature_interval, settings.store_raw)


@dataclass(frozen=True)
class TradingConfig:
    """The trading half of the fused flow; ``universe`` is the symbols a cross-section waits for.

    Strategies: ``strategy_specs`` (and ``strategy_configs``), the ``--strategy`` options, built by
    ``strategies.loading.load_strategies`` in every topology; without them, ``strategy_kind`` with
    ``strategy`` (the baseline's config) picks one built-in strategy."""

    desk: DeskConfig = field(default_factory=DeskConfig)
    strategy: BaselineConfig = field(default_factory=BaselineConfig)
    universe: tuple[str, ...] | None = None
    max_wait_bars: int = 30
    # "lightgbm": serve the registry's active version of ``model_name`` (hot-swappable by control)
    strategy_kind: str = "baseline"
    model_registry: str = "data/models"
    model_name: str = "lightgbm"
    strategy_specs: tuple[str, ...] = ()
    strategy_configs: tuple[str, ...] = ()

    def with_strategies(self, specs: Sequence[str], configs: Sequence[str | None] = (), registry: str | None = None,
                        model: str | None = None) -> "TradingConfig":
        """This config trading ``--strategy`` options: loaded once here, so a bad spec raises
        ``StrategyLoadError`` before anything runs, and the desk gets each strategy's capital when
        there are several (or one given a fraction below 1)."""
        updated = dataclasses.replace(
            self, strategy_specs=tuple(specs), strategy_configs=tuple("-" if c is None else str(c) for c in configs),
            model_registry=registry if registry is not None else self.model_registry,
            model_name=model if model is not None else self.model_name)
        loaded = updated.new_strategies()
        split = len(loaded.names) > 1 or any(f < 1.0 for f in loaded.capital.values())
        capital = dict(loaded.capital) if split else {}
        return dataclasses.replace(updated, desk=updated.desk.model_copy(update={"strategy_capital": capital}))

    @property
    def external_strategies(self) -> tuple[str, ...]:
        """The ``external:NAME`` strategies traded: their signals come from their own app, not a signals stage."""
        return external_strategies(self.strategy_specs)

    def new_strategies(self) -> LoadedStrategies:
        """Fresh strategy objects (their state starts empty) for one signals stage."""
        if self.strategy_specs:
            return load_strategies(self.strategy_specs, self.strategy_configs, self.model_registry, self.model_name,
                                   self.desk.account)
        strategy = self.new_strategy()
        return LoadedStrategies((strategy,), {strategy.name: 1.0})

    def new_strategy(self):
        """The one built-in strategy ``strategy_kind`` names."""
        if self.strategy_kind == "baseline":
            return BaselineStrategy(self.strategy)
        if self.strategy_kind != "lightgbm":
            raise ValueError(f"unknown strategy {self.strategy_kind!r}; strategies: baseline, lightgbm")
        from strategies.lightgbm_strategy import LightGBMConfig, LightGBMStrategy

        context = StrategyContext(self.desk.account, self.model_registry, self.model_name)
        return LightGBMStrategy.from_config(LightGBMConfig(), context)

    @classmethod
    def from_settings(
        cls, settings: Settings, universe: tuple[str, ...] | None, market_streams: tuple[str, ...] = ("trade", "quote"),
        calendar: str | None = None,
    ) -> "TradingConfig":
        """``calendar``: the feed's (:func:`feed_calendar`); ``TAPEFLOW_CALENDAR`` overrides it, XNYS without either."""
        desk = DeskConfig(
            account=settings.account,
            capital=settings.capital,
            bar_interval=settings.feature_interval,
            lateness_ns=settings.lateness_ms * 1_000_000,
            universe=universe,
            market_streams=market_streams,
            portfolio=default_portfolio().model_copy(update={"execution": settings.execution}),
            venue=SimVenueConfig(bar_slippage_bps=settings.bar_slippage_bps,
                                 calendar=settings.calendar or calendar or XNYS),
        )
        return cls(desk=desk, universe=universe)

    def new_signal_state(self, interval: str) -> SignalState:
        return SignalState(
            self.new_strategies().strategies,
            PortfolioConstructor(self.desk.portfolio),  # unused: the desk sizes orders
            account=self.desk.account,
            symbols=self.universe,
            max_wait_bars=self.max_wait_bars,
            interval=interval,
            emit_orders=False,
        )


def feed_universe(feed: Feed) -> tuple[str, ...] | None:
    """The symbols a feed will deliver, when it knows them up front."""
    config = getattr(feed, "config", None)
    if config is not None and getattr(config, "symbols", None):
        return tuple(config.symbols)
    frame = getattr(feed, "frame", None)
    if callable(frame):
        return tuple(sorted(frame()["symbol"].unique().to_list()))
    return None


def feed_calendar(feed: Feed) -> str:
    """The trading calendar a feed's tape follows (``market/calendar.py``): what the feed declares
    (synthetic: XNYS when its sessions are NYSE ones; Alpaca: XNYS for stocks, 24/7 for crypto),
    else 24/7: a replayed file trades whenever it has prints (crypto files trade on weekends)."""
    return getattr(feed, "calendar", None) or ALWAYS_OPEN


def feed_market_streams(feed: Feed) -> tuple[str, ...]:
    """What a feed delivers per symbol: a replay file holds trades or quotes, synthetic both, a merged
    replay what its files hold."""
    streams = getattr(feed, "market_streams", None)
    if streams:
        return tuple(streams)
    mapping = getattr(feed, "mapping", None)
    kind = getattr(mapping, "kind", None)
    return (kind,) if kind in ("trade", "quote") else ("trade", "quote")


def build_embedded_flow(
    config: MarketDataConfig,
    feed: Feed,
    writer: Any,
    progress: Any | None = None,
    limits: FeedLimits | None = None,
    resumable: bool = False,
    trading: TradingConfig | None = None,
    control: ControlChannel | None = None,
    venue: Any | None = None,
    alerts: Any | None = None,
    metrics: Any | None = None,
) -> Dataflow:
    """``alerts``: a sinks.alerts.AlertMonitor watching what lands; ``metrics``: a
    sinks.metrics.RecordMetrics counting it. ``resumable``: the run has a recovery directory, so a stop (limit, Ctrl-C) must leave open
    bars and queued events in state for the resume rather than flush them.
    ``trading``: None runs the market-data half only. ``venue``: a live venue (Alpaca) instead of
    the simulated exchange; its execution reports join the desk's inputs."""
    if is_bar_feed(feed):  # a bar file: no ticks to normalize or aggregate
        return build_bar_flow(feed, writer, progress, limits, resumable, trading, control, venue)
    limits = limits or FeedLimits()
    flush_at_end = (lambda: not limits.cut_short.is_set()) if resumable else (lambda: True)
    flow = Dataflow("tapeflow_embedded")
    sink_key = WarehouseSink.PARTITION

    raw = op.input("feed", flow, FeedSource(feed, progress, limits, end_of_tape=flush_at_end))
    normalized = normalize_stage("normalize", raw, config.normalize, feed_universe(feed), one_key=True)
    bars = bar_stage("bars", normalized.market, config.bar_intervals, config.lateness_ns, flush_at_end)
    features = feature_stage("features", bars, config.feature_interval)

    raw_rows = op.filter("raw_rows", raw, lambda r: type(r) is not RawTickBatch or len(r) > 0)  # not heartbeats
    landed = [normalized.records, bars, features] + ([raw_rows] if config.store_raw else [])
    to_sink = [tagged_for_warehouse("sink_tag", op.merge("sink_merge", *landed), sink_key)]
    if trading is not None:
        account = trading.desk.account
        commands = op.input("control", flow, ControlSource(control or ControlChannel("data/control.jsonl"), limits))
        sections = signal_stage(
            "signals", features, lambda: trading.new_signal_state(config.feature_interval), account, flush_at_end,
            control=commands,
        )
        desk_commands = commands
        in_process_desk = trading.desk.model_copy(update={"redelivered_ticks": False})  # each tick handed over once
        if venue is not None:
            reports = op.input("venue_reports", flow, VenueReportSource(venue, limits))
            desk_commands = op.merge("desk_commands", commands, reports)
        desk_out = desk_stage(
            "desk", normalized.market, sections, desk_commands, lambda: TradingDesk(in_process_desk, venue), account,
            flush_at_end,
        )
        to_sink.append(signals_for_warehouse("sink_signals", sections, sink_key))
        to_sink.append(tagged_pairs("sink_desk", desk_out, sink_key))
    op.output("warehouse", op.merge("sink_all", *to_sink),
              WarehouseSink(writer, progress, alerts, metrics, epoch_barrier=flow_recovery(flow), below_the_tape=True))
    return flow


def recovery_config(recovery_dir: Path | None, creator: bool = True) -> RecoveryConfig | None:
    """Bytewax recovery in ``recovery_dir`` (created with one partition on first use). In a
    cluster the folder is shared by every process and only process 0 (``creator``) creates it; the
    others wait for it, so two processes never initialise one folder at once."""
    if recovery_dir is None:
        return None
    if creator:
        recovery_dir.mkdir(parents=True, exist_ok=True)
        if not _initialised(recovery_dir):
            _init_recovery_dir(recovery_dir)
    else:
        deadline = time.monotonic() + CLUSTER_RECOVERY_WAIT_S
        while not (recovery_dir.is_dir() and any(recovery_dir.glob("part-*.sqlite3"))):
            if time.monotonic() > deadline:
                raise RuntimeError(f"recovery folder {recovery_dir} was not created by cluster process 0 within "
                                   f"{CLUSTER_RECOVERY_WAIT_S:g}s: start process 0 too, with the same --recovery-dir "
                                   "(a folder every process of the cluster can reach)")
            time.sleep(0.1)
    return RecoveryConfig(str(recovery_dir))


CLUSTER_RECOVERY_WAIT_S = 60.0


def _init_recovery_dir(recovery_dir: Path) -> None:
    """One recovery partition, made in a scratch folder and moved in whole: a stage killed while
    Bytewax wrote the partition's file (the supervisor's kill -9 can land in the first
    milliseconds of a stage) left a file with no partition in it, and every restart after that
    failed with "No recovery partitions found". A rename is atomic: the folder has the whole file
    or none."""
    for stale in recovery_dir.glob("part-*.sqlite3*"):
        stale.unlink()
    scratch = Path(tempfile.mkdtemp(prefix=".init-", dir=recovery_dir))
    try:
        init_db_dir(scratch, 1)
        for part in scratch.glob("part-*.sqlite3"):
            os.replace(part, recovery_dir / part.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _initialised(recovery_dir: Path) -> bool:
    """Whether ``recovery_dir`` holds a recovery partition Bytewax can resume from. A partition file
    without its partition row (left by a kill during an initialisation before the atomic one above)
    holds no snapshot either, and is made again."""
    parts = sorted(recovery_dir.glob("part-*.sqlite3"))
    if not parts:
        return False
    try:
        with closing(sqlite3.connect(f"file:{parts[0]}?mode=ro", uri=True)) as db:
            return db.execute("SELECT count(*) FROM parts").fetchone()[0] > 0 or \
                db.execute("SELECT count(*) FROM snaps").fetchone()[0] > 0
    except sqlite3.Error:
        return True  # not ours to judge: Bytewax says what is wrong with it


# Stage outputs are short-lived and acyclic, yet at 100k ticks/s they trigger a generation-0
# collection every few hundred microseconds with the default threshold (700); a larger one cuts
# the pipeline's CPU time by about a quarter and does not change what is freed.
GC_THRESHOLDS = (200_000, 50, 1_000)

# The warehouse writer's thread converts and inserts beside the dataflow thread. With Python's
# default switch interval (5 ms) a tick that arrives while the writer holds the GIL waits up to
# 5 ms before the dataflow thread may run again: the whole tick -> order budget. At 0.5 ms the
# writer yields the GIL ten times as often, which costs it a little throughput, not the tape.
GIL_SWITCH_INTERVAL_S = 0.0005


def _use_system_arrow_pool() -> None:
    """Arrow's default pool (jemalloc) keeps freed pages for reuse. The warehouse thread builds and
    frees a block of Arrow columns at every insert, and the pages kept grew with the run: measured
    over 90 s of the whole pipeline, peak RSS 970 MiB with it, 782 MiB with the system allocator,
    at no cost in CPU (1M ticks: 10.1 and 9.9 CPU-s with jemalloc, 9.2 and 8.9 with malloc).
    ``ARROW_DEFAULT_MEMORY_POOL`` set in the environment still chooses."""
    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        pa.set_memory_pool(pa.system_memory_pool())


# glibc serves blocks from this size up with their own mmap, so a freed one goes back to the OS.
# Left to itself glibc raises that threshold to the largest block freed so far (up to 32 MiB), and
# from then on the warehouse's column blocks and the engine's merge buffers (chDB runs in this
# process) come from the heap, whose freed pages stay in RSS. Measured over `benchmarks/pipeline.py
# --trading --duration 600`, sampled every 30 s: without it the heap grew to ~200 MiB with ~115 MiB
# of it free, and RSS by minute climbed 773 -> 918 MiB; with it the heap stayed at ~70 MiB (~9 MiB
# free) and RSS went back to ~780 MiB after every merge (last minute - second: +1 and -39 MiB in two
# runs, +28 and +54 without). The cost is CPU: ~10% fewer ticks per CPU-second on that replay.
MMAP_THRESHOLD_BYTES = 128 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def _return_large_blocks_to_the_os() -> bool:
    """Fix glibc's mmap threshold (:data:`MMAP_THRESHOLD_BYTES`); whether it was set. Not on
    another C library (no ``mallopt``), nor when ``MALLOC_MMAP_THRESHOLD_`` in the environment
    already chose (glibc read it at start)."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1


def run_flow(flow: Dataflow, epoch_interval_s: float, recovery_dir: Path | None = None, workers: int = 1,
             addresses: list[str] | None = None, process_id: int = 0) -> None:
    """Run ``flow`` in this process: one worker on this thread, or ``workers`` worker threads; with
    ``addresses``, as process ``process_id`` of a Bytewax cluster of ``len(addresses)`` processes
    (every process is given the same list), each with ``workers`` workers."""
    # Bytewax snapshots every epoch even without recovery: the flow's stateful steps and its
    # warehouse sink skip that work when nothing will be resumed (flows/stateful.py, flows/sink.py).
    flow_recovery(flow).enabled = recovery_dir is not None
    _use_system_arrow_pool()
    _return_large_blocks_to_the_os()
    previous, previous_switch = gc.get_threshold(), sys.getswitchinterval()
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    epoch = timedelta(seconds=epoch_interval_s)
    try:
        if workers == 1 and not addresses:
            run_main(flow, epoch_interval=epoch, recovery_config=recovery_config(recovery_dir))
        else:
            cluster_main(flow, list(addresses or []), process_id if addresses else 0, epoch_interval=epoch,
                         recovery_config=recovery_config(recovery_dir, creator=not addresses or process_id == 0),
                         worker_count_per_proc=workers)
    finally:
        gc.set_threshold(*previous)
        sys.setswitchinterval(previous_switch)
