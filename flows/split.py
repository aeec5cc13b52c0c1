"""The split topology: every stage its own Bytewax dataflow between Kafka topics (DESIGN §2).

The stages reuse the builders and cores of the fused embedded flow unchanged; only the edges
differ (Kafka in and out instead of in-process streams). One function per stage returns its
Dataflow; ``tapeflow flow STAGE`` runs one, with ``-w``-style workers and recovery.

    market     md.raw      -> md.trades, md.quotes, md.bars, features, dlq   (normalize, bars and
                                                           features chained in one process: the default)
    normalize  md.raw                                   -> md.trades, md.quotes, dlq
    bars       md.trades                                -> md.bars, dlq
    features   md.bars                                  -> features
    signals    features, control (model activation)     -> signals, control (model swaps), dlq
               (none with ``--strategy external:NAME``: NAME's own app writes signals and their markers;
               the desk stages then trade NAME's signals only, see _TradingInputs)
    trading    md.trades, md.quotes, signals, control   -> orders.intent, orders.approved,
               (portfolio, risk, venue, ledger fused)      orders.rejected, exec.reports,
                                                           positions, pnl, control, dlq
    sink       every topic                              -> the warehouse

or, instead of ``trading``, the same desk as three processes (trading.stages), lock-stepped
by watermarks in their output topics:

    risk       md.trades, md.quotes, signals, control,  -> orders.intent, orders.approved,
               exec.reports                                orders.rejected, control, dlq
    execution  md.trades, md.quotes, orders.approved    -> exec.reports, dlq
    pnl        md.trades, md.quotes, exec.reports       -> positions, pnl, dlq

End of a finite tape (topics/end_of_tape.py): every stage's source is given a tracker
(:func:`tape_ends`, ``SplitConfig.tape``). Each partition of a tape input ends at its end-of-tape
marker; the other inputs (control) end once every tape partition has and they have read what they
held then. With every input ended, Bytewax's end of input flushes the cores exactly as at the end
of the embedded run (bars, signals, the desk), and the stage's producer delivers what they wrote,
then marks every partition of what the stage writes (:data:`MARKS`, :func:`_mark_outputs`) before
the stage takes its last snapshot and exits. The
chained ``market`` stage is one dataflow: it flushes bars after normalize's last batch and features
after the last bars, then marks all five topics. The sink ends once the run's tape is complete.

Bars read trades only: quotes advancing a bar's watermark from another topic could overtake
trades still in flight and make them late. Normalize has already enforced the lateness window over
trades and quotes together, so the bars are the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from flows.builders import (
    bar_stage,
    by_symbol,
    feature_stage,
    normalize_stage,
    signal_stage,
    signals_for_warehouse,
    tagged_for_warehouse,
)
from trading.desk import TradingDesk
from flows.kafka_sink import produce
from flows.kafka_source import PAUSE_DENSE_S, SINK_PAUSE_S, consume
from topics.kafka_records import CLIENT_CONFIG, KafkaEndpoint
from market.normalize import NormalizeConfig
from market.tape_watermarks import TapeWatermarks
from flows.pipeline import TradingConfig
from strategies.signals import CrossSectionAssembler
from flows.sink import WarehouseSink
from flows.source import FeedLimits, VenueReportSource
from flows.stateful import flow_recovery, keyed_by, stateful_core, unkeyed
from trading.stages import ExecutionStage, PnlStage, RiskStage
from schemas import (INTERVAL_NANOS, ControlCommand, DeadLetter, FeatureVector, Signal, StageWatermark, TapeWatermark,
                     Trade, now_ns)
from schemas.columns import TickBatch
from topics.catalog import TOPICS, table_name
from topics.end_of_tape import NOT_TAPE, RunTapeEnds, StageTapeEnds, publish_end_of_tape

# A poll of md.raw (md.trades, md.quotes) is decoded into a column batch from this many messages on:
# columns cost a fixed ~40 us (~18 us) a poll, so a live tape's polls of a few messages decode
# faster one by one (topics/column_codec.py has the figures).
COLUMNS_FROM_RAW = 50
COLUMNS_FROM_TICKS = 10

STAGES = ("market", "normalize", "bars", "features", "signals", "trading", "risk", "execution", "pnl", "sink")
CHAINED = {"market": ("normalize", "bars", "features")}  # a chained stage and the stages it runs in one process
SEPARATE_TRADING = ("risk", "execution", "pnl")  # the fused trading flow, as three processes


# What each stage marks at the end of its tape (topics/end_of_tape.py): every topic it writes but
# control, which is not tape. Risk's StageWatermarks ride on its account topics, already listed.
MARKS: dict[str, tuple[str, ...]] = {
    "market": ("md.trades", "md.quotes", "md.bars", "features", "dlq"),
    "normalize": ("md.trades", "md.quotes", "dlq"),
    "bars": ("md.bars", "dlq"),
    "features": ("features", "dlq"),
    "signals": ("signals", "dlq"),
    "trading": ("orders.intent", "orders.approved", "orders.rejected", "exec.reports", "positions", "pnl", "dlq"),
    "risk": ("orders.intent", "orders.approved", "orders.rejected", "dlq"),
    "execution": ("exec.reports", "dlq"),
    "pnl": ("positions", "pnl", "dlq"),
}


def tape_ends(stage: str, store_raw: bool = True) -> StageTapeEnds | RunTapeEnds:
    """The end-of-tape tracker of a stage's source. The risk stage reads ``exec.reports``, which
    execution writes downstream of it, so that input does not hold risk's end (execution ends on
    risk's orders): it ends with risk's tape, like ``control``. A sink that does not land md.raw
    does not read it, and so never sees the feed's markers (``RunTapeEnds.reads_feed``)."""
    if stage == "sink":
        return RunTapeEnds(reads_feed=store_raw)
    return StageTapeEnds(not_tape=NOT_TAPE | {"exec.reports"} if stage == "risk" else NOT_TAPE)


@dataclass(frozen=True)
class SplitConfig:
    endpoint: KafkaEndpoint
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    bar_intervals: tuple[str, ...] = ("1s", "1m")
    lateness_ns: int = 500_000_000
    feature_interval: str = "1s"
    trading: TradingConfig = field(default_factory=TradingConfig)
    # End of a finite tape (topics/end_of_tape.py): None reads on forever (or to the topics' ends
    # with ``endpoint.tail`` False); see :func:`tape_ends`.
    tape: StageTapeEnds | RunTapeEnds | None = None
    store_raw: bool = True  # False: the sink does not land md.raw (--no-raw, TAPEFLOW_STORE_RAW)


def normalize_flow(cfg: SplitConfig) -> Dataflow:
    flow = Dataflow("tapeflow_normalize")
    raw = consume("in", flow, cfg.endpoint, ["md.raw"], "normalize", pause_s=PAUSE_DENSE_S, columnar=True,
                  columnar_min=COLUMNS_FROM_RAW, tape=cfg.tape)
    ticks = op.filter("ticks", raw, lambda r: type(r) is not DeadLetter)
    undecodable = op.filter("undecodable", raw, lambda r: type(r) is DeadLetter)
    normalized = normalize_stage("normalize", ticks, cfg.normalize)
    produce("out", _with_tape_watermarks(tagged_for_warehouse("tag", op.merge("all", normalized.records, undecodable)),
                                         cfg), cfg.endpoint, dense=True, at_end=_mark_outputs("normalize", cfg))
    return flow


def market_flow(cfg: SplitConfig) -> Dataflow:
    """normalize -> bars -> features chained in one process (the stages share the symbol key), as
    Kafka Streams sub-topologies and Flink operator chains run: every topic is still produced
    (md.trades, md.quotes, md.bars, features, dlq) for the warehouse and any other consumer, but bars
    and features take their input in memory instead of reading it back from Kafka. The records are
    those of the three unchained stages (bars see quotes too, which only advance the watermark
    normalize has already enforced over trades and quotes together)."""
    flow = Dataflow("tapeflow_market")
    raw = consume("in", flow, cfg.endpoint, ["md.raw"], "normalize", pause_s=PAUSE_DENSE_S, columnar=True,
                  columnar_min=COLUMNS_FROM_RAW, tape=cfg.tape)
    ticks = op.filter("ticks", raw, lambda r: type(r) is not DeadLetter)
    undecodable = op.filter("undecodable", raw, lambda r: type(r) is DeadLetter)
    normalized = normalize_stage("normalize", ticks, cfg.normalize)
    bars = bar_stage("bars", normalized.market, cfg.bar_intervals, cfg.lateness_ns)
    vectors = feature_stage("features", bars, cfg.feature_interval)
    produce("out", _with_tape_watermarks(tagged_for_warehouse("tag", op.merge("all", normalized.records, undecodable,
                                                                              bars, vectors)), cfg),
            cfg.endpoint, dense=True, at_end=_mark_outputs("market", cfg))
    return flow


def _with_tape_watermarks(pairs, cfg: SplitConfig):
    """Normalize's output pairs with each symbol's tape watermarks after its records
    (``market/tape_watermarks.py``), on the features' interval: the desk's cross-sections and bar
    ends are final once every symbol's md.trades and md.quotes have passed it. In the same step
    as the records, on the same worker: a watermark must not overtake what it vouches for."""
    watermarks = TapeWatermarks(INTERVAL_NANOS[cfg.feature_interval], cfg.normalize.lateness_ns)
    return op.flat_map_batch("tape_watermarks", pairs, watermarks.after)


def bars_flow(cfg: SplitConfig) -> Dataflow:
    flow = Dataflow("tapeflow_bars")
    trades = consume("in", flow, cfg.endpoint, ["md.trades"], "bars", pause_s=PAUSE_DENSE_S, columnar=True,
                     columnar_min=COLUMNS_FROM_TICKS, tape=cfg.tape)
    good = by_symbol("key_symbol", op.filter("trades", trades, lambda r: type(r) is Trade or type(r) is TickBatch))
    bars = bar_stage("bars", good, cfg.bar_intervals, cfg.lateness_ns)
    dead = op.filter("undecodable", trades, lambda r: type(r) is DeadLetter)
    produce("out", tagged_for_warehouse("tag", op.merge("all", bars, dead)), cfg.endpoint,
            at_end=_mark_outputs("bars", cfg))
    return flow


def features_flow(cfg: SplitConfig) -> Dataflow:
    flow = Dataflow("tapeflow_features")
    bars = consume("in", flow, cfg.endpoint, ["md.bars"], "features", tape=cfg.tape)
    vectors = feature_stage("features", bars, cfg.feature_interval)  # ignores non-bars
    dead = op.filter("undecodable", bars, lambda r: type(r) is DeadLetter)
    produce("out", tagged_for_warehouse("tag", op.merge("all", vectors, dead)), cfg.endpoint,
            at_end=_mark_outputs("features", cfg))
    return flow


def signals_flow(cfg: SplitConfig) -> Dataflow:
    """Features and the ``control`` topic in (model activation: a served model swaps between bars, as
    embedded); signals, dead letters and the model slot's records (to ``control``) out."""
    flow = Dataflow("tapeflow_signals")
    inputs = consume("in", flow, cfg.endpoint, ["features", "control"], "signals", tape=cfg.tape)
    vectors = op.filter("vectors", inputs, lambda r: type(r) is FeatureVector)
    commands = op.filter("commands", inputs, lambda r: type(r) is ControlCommand)
    trading = cfg.trading
    out = signal_stage("signals", vectors, lambda: trading.new_signal_state(cfg.feature_interval),
                       trading.desk.account, control=commands)
    dead = op.filter("undecodable", inputs, lambda r: type(r) is DeadLetter)
    produce("out", signals_for_warehouse("tag", op.merge("all", out, dead)), cfg.endpoint,
            at_end=_mark_outputs("signals", cfg))
    return flow


class _TradingInputs:
    """Signals reassembled into cross-sections, then everything into the desk.

    ``traded``: the strategies whose signals the desk takes (an external strategy's, whose app
    numbers its own cross-sections); a signal of another strategy on the topic would break that
    numbering, so it goes to the dlq (reason ``unknown_strategy``) instead. None: every signal
    (the run's own signals stage writes the topic)."""

    def __init__(self, desk: TradingDesk, traded: frozenset[str] | None = None):
        self.assembler = CrossSectionAssembler()
        self.desk = desk
        self.traded = traded

    def on_batch(self, items: list) -> list:
        """Signals become cross-sections (in order); the desk takes the batch and releases once."""
        desk_items: list = []
        out: list = []
        for item in items:
            kind = type(item)
            if kind is Signal:
                traded = getattr(self, "traded", None)  # None in a snapshot from before external strategies
                if traded is not None and item.strategy not in traded:
                    out.append(("dlq", _untraded(item, traded)))
                    continue
                desk_items.extend(self.assembler.on_signal(item))
            elif kind is DeadLetter:
                out.append(("dlq", item))
            else:  # trades, quotes, operator commands
                desk_items.append(item)
        out.extend(self.desk.on_batch(desk_items))
        return out


def _untraded(signal: Signal, traded: frozenset[str]) -> DeadLetter:
    return DeadLetter(
        id=f"dlq:desk:{signal.id}", ts_event=signal.ts_event, ts_ingest=now_ns(), source_topic="signals",
        stage="desk", reason="unknown_strategy", symbol=signal.symbol, payload=signal.to_json().decode(),
        detail=f"a signal of strategy {signal.strategy!r}; this desk trades the external strategy "
               f"{', '.join(sorted(traded))} (--strategy external:NAME) and no other")


def _traded(cfg: SplitConfig) -> frozenset[str] | None:
    return frozenset(cfg.trading.external_strategies) or None


def trading_flow(cfg: SplitConfig, flush_at_end: Callable[[], bool] = lambda: True, venue: Any = None) -> Dataflow:
    """``venue``: a live venue (Alpaca) instead of the simulated exchange; its execution reports
    join the desk's inputs, as in the embedded flow."""
    flow = Dataflow("tapeflow_trading")
    account = cfg.trading.desk.account
    inputs = consume("in", flow, cfg.endpoint, ["md.trades", "md.quotes", "signals", "control"], "trading",
                     pause_s=PAUSE_DENSE_S, columnar=True, columnar_min=COLUMNS_FROM_TICKS, tape=cfg.tape)
    if venue is not None:
        # a finite tape's end ends the venue's reports too (after what it still holds), so the stage ends;
        # woken as often as the Kafka input sleeps when caught up, so neither input's epochs lag the other's
        reports = op.input("venue_reports", flow, VenueReportSource(venue, FeedLimits(feed_done=_TapeEnded(cfg.tape)),
                                                                    wake_every_s=PAUSE_DENSE_S))
        inputs = op.merge("with_venue_reports", inputs, reports)
    relevant = op.filter(
        "relevant", inputs,
        lambda r: type(r) is not ControlCommand or (r.target in ("global", account) and r.issued_by != "risk"),
    )
    keyed = keyed_by("key_account", relevant, lambda _: account)
    desk = cfg.trading.desk
    out = stateful_core(
        "desk", keyed, lambda: _TradingInputs(TradingDesk(desk, venue), _traded(cfg)),
        lambda core, item: core.on_batch([item]),
        lambda core: core.desk.flush() if flush_at_end() else (), on_batch=lambda core, items: core.on_batch(items),
    )
    pairs = unkeyed("unkey", out)
    # The desk echoes operator commands into its output for the warehouse; on Kafka they are
    # already on the control topic, so only the desk's own records (alerts, breaker) go back.
    produce("out", op.filter("not_echo", pairs, lambda p: p[0] != "control" or p[1].issued_by == "risk"), cfg.endpoint,
            at_end=_mark_outputs("trading", cfg))
    return flow


def _account_stage_flow(name: str, cfg: SplitConfig, topics: list[str], make_stage: Callable[[], object],
                        drop: Callable[[object], bool] = lambda r: False) -> Dataflow:
    """One of the separate risk, execution and pnl stages (trading.stages): keyed by
    account, fed in batches like the fused desk, never flushed (their lock-step would break), not
    even at the end of a finite tape, whose markers they still pass on."""
    flow = Dataflow(f"tapeflow_{name}")
    account = cfg.trading.desk.account
    inputs = consume("in", flow, cfg.endpoint, topics, name, pause_s=PAUSE_DENSE_S, columnar=True,
                     columnar_min=COLUMNS_FROM_TICKS, tape=cfg.tape)
    relevant = op.filter("relevant", inputs, lambda r: getattr(r, "account", account) == account and not drop(r))
    keyed = keyed_by("key_account", relevant, lambda _: account)
    out = stateful_core(
        name, keyed, lambda: _TradingInputs(make_stage(), _traded(cfg)), lambda core, item: core.on_batch([item]),
        lambda core: (), on_batch=lambda core, items: core.on_batch(items),
    )
    pairs = unkeyed("unkey", out)
    produce("out", op.filter("not_echo", pairs, lambda p: p[0] != "control" or p[1].issued_by == "risk"), cfg.endpoint,
            at_end=_mark_outputs(name, cfg))
    return flow


def risk_flow(cfg: SplitConfig) -> Dataflow:
    account = cfg.trading.desk.account
    foreign_command = lambda r: type(r) is ControlCommand and (  # noqa: E731
        r.target not in ("global", account) or r.issued_by == "risk")
    return _account_stage_flow("risk", cfg, ["md.trades", "md.quotes", "signals", "control", "exec.reports"],
                               lambda: RiskStage(cfg.trading.desk), drop=foreign_command)


def execution_flow(cfg: SplitConfig) -> Dataflow:
    return _account_stage_flow("execution", cfg, ["md.trades", "md.quotes", "orders.approved"],
                               lambda: ExecutionStage(cfg.trading.desk))


def pnl_flow(cfg: SplitConfig) -> Dataflow:
    return _account_stage_flow("pnl", cfg, ["md.trades", "md.quotes", "exec.reports"],
                               lambda: PnlStage(cfg.trading.desk))


def sink_flow(cfg: SplitConfig, writer: Any, progress: Any | None = None, alerts: Any | None = None,
              metrics: Any | None = None) -> Dataflow:
    """Every topic into its warehouse table (md.raw only with ``store_raw``); the table comes from the
    topic a message was read from (orders.intent and orders.approved carry the same record type)."""
    flow = Dataflow("tapeflow_sink")
    topics = [t.name for t in TOPICS if cfg.store_raw or t.name != "md.raw"]
    pairs = consume("in", flow, cfg.endpoint, topics, "sink", with_topic=True, bulk=True,
                    columnar=True, columnar_min=COLUMNS_FROM_TICKS,
                    pause_s=SINK_PAUSE_S, tape=cfg.tape)
    table_of = {t.name: table_name(t.name) for t in TOPICS}
    partition = WarehouseSink.PARTITION
    punctuation = (StageWatermark, TapeWatermark)  # not data
    tagged = op.flat_map_batch(
        "tag", pairs, lambda batch: [(partition, (table_of[topic], r)) for topic, r in batch
                                     if type(r) not in punctuation]
    )
    op.output("warehouse", tagged, WarehouseSink(writer, progress, alerts, metrics, epoch_barrier=flow_recovery(flow)))
    return flow


def _mark_outputs(stage: str, cfg: SplitConfig) -> Callable[[Any], None] | None:
    """What the stage's producer does at the end of its input: if the input ended at the end of its
    tape (every tape partition's marker read, the cores flushed at Bytewax's end of input, their
    output produced and delivered), one marker on every partition of each topic the stage writes
    (:data:`MARKS`), through the producer it already has. The next stage then starts its own end
    while this one still takes its last snapshot and exits; marking after the exit, through a new
    producer (connect, producer id, metadata), made each stage of a chain add about 0.1 s to the
    cross-section a tape's end closes."""
    tape = cfg.tape
    if type(tape) is not StageTapeEnds:
        return None

    def mark(producer: Any) -> None:
        if tape.complete and tape.marked is None:
            tape.marked = publish_end_of_tape(producer, MARKS[stage], tape.tape_id(), stage, tape.stages(),
                                              cfg.endpoint.prefix)
    return mark


def pass_end_of_tape(stage: str, cfg: SplitConfig) -> str | None:
    """After ``stage``'s dataflow has ended: if it ended at the end of its tape, its outputs carry
    one marker on every partition of each topic it writes (:data:`MARKS`); returns what to log, or
    None when the stage did not end at a tape's end. The stage's producer marks them at the end of
    its input (:func:`_mark_outputs`); a process whose producing step never held a message has no
    producer there, so it marks them here. The sink marks nothing: it reports that it has landed
    the run's tape."""
    tape = cfg.tape
    if tape is None or not tape.complete:
        return None
    if type(tape) is RunTapeEnds:
        return f"end of tape {tape.tape} landed: every stage's markers read ({', '.join(tape.stages)})"
    if tape.marked is None:
        from confluent_kafka import Producer

        _mark_outputs(stage, cfg)(Producer({**CLIENT_CONFIG, "bootstrap.servers": ",".join(cfg.endpoint.brokers),
                                            "enable.idempotence": True}))
    return f"end of tape {tape.tape_id()}: flushed, {tape.marked} markers on {', '.join(MARKS[stage])}"


class _TapeEnded:
    """``is_set()`` once the stage's tape has ended (an Event's face, for VenueReportSource)."""

    def __init__(self, tape):
        self._tape = tape

    def is_set(self) -> bool:
        return self._tape is not None and self._tape.complete


def build_stage_flow(stage: str, cfg: SplitConfig, writer: Any = None, progress: Any = None,
                     alerts: Any = None, metrics: Any = None, venue: Any = None) -> Dataflow:
    """``venue``: the trading stage's live venue (None: the simulated exchange)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    if stage == "sink":
        if writer is None:
            raise ValueError("the sink stage needs a warehouse writer")
        return sink_flow(cfg, writer, progress, alerts, metrics)
    if venue is not None:
        if stage != "trading":
            raise ValueError(f"a live venue routes the fused trading stage's orders, not the {stage} stage's")
        return trading_flow(cfg, venue=venue)
    return {"market": market_flow, "normalize": normalize_flow, "bars": bars_flow, "features": features_flow,
            "signals": signals_flow, "trading": trading_flow, "risk": risk_flow,
            "execution": execution_flow, "pnl": pnl_flow}[stage](cfg)
