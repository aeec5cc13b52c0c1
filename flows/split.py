"""The split topology: every stage its own Bytewax dataflow between Kafka topics (DESIGN §2).

The stages reuse the builders and cores of the fused embedded flow unchanged; only the edges
differ (Kafka in and out instead of in-process streams). One function per stage returns its
Dataflow; ``tapeflow flow STAGE`` runs one, with ``-w``-style workers and recovery.

    normalize  md.raw                                   -> md.trades, md.quotes, dlq
    bars       md.trades                                -> md.bars, dlq
    features   md.bars                                  -> features
    signals    features                                 -> signals, dlq
    trading    md.trades, md.quotes, signals, control   -> orders.intent, orders.approved,
               (portfolio, risk, venue, ledger fused)      orders.rejected, exec.reports,
                                                           positions, pnl, control, dlq
    sink       every topic                              -> the warehouse

Bars read trades only: quotes advancing a bar's watermark from another topic could overtake
trades still in flight and make them late. Normalize has already enforced the lateness window over
trades and quotes together, so the bars are the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from flows.builders import TABLE_OF_RECORD, bar_stage, feature_stage, normalize_stage, signal_stage
from flows.desk import TradingDesk
from flows.kafka_io import KafkaEndpoint, consume, produce
from flows.normalize import NormalizeConfig
from flows.pipeline import TradingConfig
from flows.signals import CrossSection, CrossSectionAssembler
from flows.sink import WarehouseSink
from flows.stateful import keyed_by, stateful_core, unkeyed
from schemas import ControlCommand, DeadLetter, Quote, Signal, Trade
from topics.catalog import TOPICS, table_name

STAGES = ("normalize", "bars", "features", "signals", "trading", "sink")


@dataclass(frozen=True)
class SplitConfig:
    endpoint: KafkaEndpoint
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    bar_intervals: tuple[str, ...] = ("1s", "1m")
    lateness_ns: int = 500_000_000
    feature_interval: str = "1s"
    trading: TradingConfig = field(default_factory=TradingConfig)


def _tag_by_type(step_id: str, up):
    tables = TABLE_OF_RECORD
    return op.flat_map_batch(step_id, up, lambda batch: [(tables[type(r)], r) for r in batch])


def normalize_flow(cfg: SplitConfig) -> Dataflow:
    flow = Dataflow("tapeflow_normalize")
    raw = consume("in", flow, cfg.endpoint, ["md.raw"], "normalize")
    ticks = op.filter("ticks", raw, lambda r: type(r) is not DeadLetter)
    undecodable = op.filter("undecodable", raw, lambda r: type(r) is DeadLetter)
    normalized = normalize_stage("normalize", ticks, cfg.normalize)
    produce("out", _tag_by_type("tag", op.merge("all", normalized.records, undecodable)), cfg.endpoint)
    return flow


def bars_flow(cfg: SplitConfig) -> Dataflow:
    flow = Dataflow("tapeflow_bars")
    trades = consume("in", flow, cfg.endpoint, ["md.trades"], "bars")
    good = keyed_by("key_symbol", op.filter("trades", trades, lambda r: type(r) is Trade), lambda t: t.symbol)
    bars = bar_stage("bars", good, cfg.bar_intervals, cfg.lateness_ns)
    dead = op.filter("undecodable", trades, lambda r: type(r) is DeadLetter)
    produce("out", _tag_by_type("tag", op.merge("all", bars, dead)), cfg.endpoint)
    return flow


def features_flow(cfg: SplitConfig) -> Dataflow:
    flow = Dataflow("tapeflow_features")
    bars = consume("in", flow, cfg.endpoint, ["md.bars"], "features")
    vectors = feature_stage("features", bars, cfg.feature_interval)  # ignores non-bars
    dead = op.filter("undecodable", bars, lambda r: type(r) is DeadLetter)
    produce("out", _tag_by_type("tag", op.merge("all", vectors, dead)), cfg.endpoint)
    return flow


def signals_flow(cfg: SplitConfig) -> Dataflow:
    flow = Dataflow("tapeflow_signals")
    vectors = consume("in", flow, cfg.endpoint, ["features"], "signals")
    good = op.filter("vectors", vectors, lambda r: type(r) is not DeadLetter)
    trading = cfg.trading
    out = signal_stage("signals", good, lambda: trading.new_signal_state(cfg.feature_interval), trading.desk.account)

    def flatten(batch: list) -> list:
        tagged = []
        for item in batch:
            if type(item) is CrossSection:
                tagged.extend(("signals", s) for s in item.signals)
            else:
                tagged.append((TABLE_OF_RECORD[type(item)], item))
        return tagged

    dead = op.filter("undecodable", vectors, lambda r: type(r) is DeadLetter)
    produce("out", op.flat_map_batch("flatten", op.merge("all", out, dead), flatten), cfg.endpoint)
    return flow


class _TradingInputs:
    """Signals reassembled into cross-sections, then everything into the desk."""

    def __init__(self, desk: TradingDesk):
        self.assembler = CrossSectionAssembler()
        self.desk = desk

    def on_item(self, item: Any) -> list:
        kind = type(item)
        if kind is Signal:
            out = []
            for section in self.assembler.on_signal(item):
                out.extend(self.desk.on_cross_section(section))
            return out
        if kind is Trade or kind is Quote or kind is ControlCommand:
            return self.desk.on_item(item)
        if kind is DeadLetter:
            return [("dlq", item)]
        return []  # control records the desk itself wrote (alerts) come back: nothing to do


def _trading_one(core: _TradingInputs, item):
    return core.on_item(item)


def trading_flow(cfg: SplitConfig, flush_at_end: Callable[[], bool] = lambda: True) -> Dataflow:
    flow = Dataflow("tapeflow_trading")
    account = cfg.trading.desk.account
    inputs = consume("in", flow, cfg.endpoint, ["md.trades", "md.quotes", "signals", "control"], "trading")
    relevant = op.filter(
        "relevant", inputs,
        lambda r: type(r) is not ControlCommand or (r.target in ("global", account) and r.issued_by != "risk"),
    )
    keyed = keyed_by("key_account", relevant, lambda _: account)
    desk = cfg.trading.desk
    out = stateful_core("desk", keyed, lambda: _TradingInputs(TradingDesk(desk)), _trading_one,
                        lambda core: core.desk.flush() if flush_at_end() else ())
    pairs = unkeyed("unkey", out)
    # The desk echoes operator commands into its output for the warehouse; on Kafka they are
    # already on the control topic, so only the desk's own records (alerts, breaker) go back.
    produce("out", op.filter("not_echo", pairs, lambda p: p[0] != "control" or p[1].issued_by == "risk"), cfg.endpoint)
    return flow


def sink_flow(cfg: SplitConfig, writer: Any, progress: Any | None = None) -> Dataflow:
    """Every topic into its warehouse table; the table comes from the topic a message was read from
    (orders.intent and orders.approved carry the same record type)."""
    flow = Dataflow("tapeflow_sink")
    pairs = consume("in", flow, cfg.endpoint, [t.name for t in TOPICS], "sink", with_topic=True)
    tagged = op.flat_map_batch(
        "tag", pairs, lambda batch: [(WarehouseSink.PARTITION, (table_name(topic), r)) for topic, r in batch]
    )
    op.output("warehouse", tagged, WarehouseSink(writer, progress))
    return flow


def build_stage_flow(stage: str, cfg: SplitConfig, writer: Any = None, progress: Any = None) -> Dataflow:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    if stage == "sink":
        if writer is None:
            raise ValueError("the sink stage needs a warehouse writer")
        return sink_flow(cfg, writer, progress)
    return {"normalize": normalize_flow, "bars": bars_flow, "features": features_flow,
            "signals": signals_flow, "trading": trading_flow}[stage](cfg)
