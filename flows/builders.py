"""Bytewax builders: each takes a stream and returns streams, wiring a stage's functional core.

The cores (``market/normalize.py``, ``market/bars.py``, ``market/features.py``, ...) import nothing
from Bytewax, so another engine could wire the same classes; these builders are the only place the
market-data stages meet Bytewax. Both topologies use them: the fused embedded dataflow chains them
in one process, the split topology puts each behind Kafka.

Stage outputs are mixed streams (e.g. normalize gives TickBatches, or Trades and Quotes, and
DeadLetters); :func:`tagged_for_warehouse` routes each item to its table by type in one batched
step, which is much cheaper at tick rates than one branch operator per type.

Ticks travel as column batches (``schemas/columns.py``) wherever the feed delivers them so: the
feed's RawTickBatches through normalize, TickBatches through bars, the desk and the sink. Records
(RawTick, Trade, Quote) still pass where a source yields records (a Kafka topic, the Alpaca
stream); every core takes both forms and gives the same results.

Market data is keyed in one of two ways. A flow that runs on one worker (the fused embedded flow)
keys the whole tape with one key (:data:`TAPE_KEY`): a core holds every symbol's state (the cores
keep per-symbol state inside) and folds each feed batch whole, which is where the column batches pay
(a bar fold costs about the same for 250 rows as for 2,000). A stage that may run on several workers
(the split topology's) keys by symbol, so a symbol's state lives on one worker whatever the worker
count and recovery state never depends on it; a batch is then split once per symbol with an integer
operation, and its feed watermark reaches every symbol of the universe, an empty batch standing in
where a symbol has no rows, so a quiet symbol's bars still close on time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

import bytewax.operators as op
from bytewax.dataflow import Stream

from market.bars import BarBuilder
from market.features import FeatureState
from market.normalize import NormalizeConfig, NormalizeState
from trading.desk import TradingDesk
from strategies.model_swap import is_slot_record
from strategies.signals import CrossSection, SignalState
from flows.stateful import keyed_by, stateful_core, unkeyed
from schemas.columns import RawTickBatch, TickBatch
from schemas import (
    Bar,
    ControlCommand,
    ControlKind,
    DeadLetter,
    ExecutionReport,
    FeatureVector,
    Quote,
    RawTick,
    Signal,
    Trade,
)
from topics.catalog import table_name

TABLE_OF_RECORD: dict[type, str] = {
    RawTick: table_name("md.raw"),
    Trade: table_name("md.trades"),
    Quote: table_name("md.quotes"),
    Bar: table_name("md.bars"),
    FeatureVector: table_name("features"),
    Signal: table_name("signals"),
    ControlCommand: table_name("control"),
    DeadLetter: table_name("dlq"),
    RawTickBatch: table_name("md.raw"),
    TickBatch: table_name("md.trades"),  # the sink lands its trades and its quotes each in their table
}


@dataclass(frozen=True)
class NormalizedStreams:
    records: Stream  # TickBatches (or Trades and Quotes) and DeadLetters
    market: Stream  # TickBatches (or Trades and Quotes) keyed by symbol, in normalize order


def _batch_by_symbol(batch, universe: tuple[str, ...]) -> list[tuple[str, object]]:
    """A RawTickBatch or TickBatch as one batch per symbol; with a watermark, every symbol of
    ``universe`` without rows gets an empty batch that carries it."""
    symbols = batch.symbols
    if len(symbols) == 1:
        out = [(symbols[0], batch)]
    else:
        order = np.argsort(batch.symbol, kind="stable")
        codes = batch.symbol[order]
        bounds = np.flatnonzero(np.diff(codes)) + 1
        out = [(symbols[batch.symbol[rows[0]]], batch.take(rows)) for rows in np.split(order, bounds) if len(rows)]
    if batch.watermark is not None and universe:
        present = {symbol for symbol, _ in out}
        quiet = [s for s in universe if s not in present]
        if quiet:
            empty = batch.take(np.empty(0, np.int64))
            out.extend((s, empty) for s in quiet)
    return out


TAPE_KEY = "tape"


def by_symbol(step_id: str, up: Stream, universe: tuple[str, ...] | None = None, one_key: bool = False) -> Stream:
    """Ticks (batches or records) keyed by symbol, or all by :data:`TAPE_KEY` with ``one_key``."""
    universe = tuple(universe or ())
    if one_key:
        return op.flat_map_batch(step_id, up, lambda items: [(TAPE_KEY, item) for item in items])

    def route(items: list) -> list:
        out = []
        for item in items:
            if type(item) is RawTickBatch or type(item) is TickBatch:
                out.extend(_batch_by_symbol(item, universe))
            else:
                out.append((item.symbol, item))
        return out

    return op.flat_map_batch(step_id, up, route)


def _normalize_one(core: NormalizeState, raw):
    if type(raw) is RawTickBatch:
        accepted, dead = core.on_raw_batch(raw)
        return [accepted, *dead] if len(accepted) or accepted.watermark is not None else dead
    return core.on_raw(raw)


def _is_market(kv) -> bool:
    return type(kv[1]) is not DeadLetter


def normalize_stage(step_id: str, raw: Stream, config: NormalizeConfig,
                    universe: tuple[str, ...] | None = None, one_key: bool = False) -> NormalizedStreams:
    """``universe``: the symbols a feed watermark is passed to even when a batch has none of their
    rows (None: only those in the batch). ``one_key``: the whole tape under one key, for a flow that
    runs on one worker (see the module docstring)."""
    keyed = by_symbol(f"{step_id}_key_symbol", raw, universe, one_key)
    out = stateful_core(step_id, keyed, lambda: NormalizeState(config), _normalize_one)
    records = unkeyed(f"{step_id}_unkey", out, lambda v: type(v) is not TickBatch or len(v) > 0)
    market = op.flat_map_batch(f"{step_id}_market", out, lambda batch: [kv for kv in batch if _is_market(kv)])
    return NormalizedStreams(records, market)


def _bar_one(core: BarBuilder, record):
    kind = type(record)
    if kind is TickBatch:
        return core.on_batch(record)
    if kind is Trade:
        return core.on_trade(record)
    return core.advance(record.symbol, record.ts_event, record.ts_tick_ingest)


def bar_stage(
    step_id: str,
    market: Stream,
    intervals: tuple[str, ...],
    lateness_ns: int,
    flush_at_end: Callable[[], bool] = lambda: True,
) -> Stream:
    """``market``: trades and quotes (quotes only advance the watermark), as TickBatches or records,
    keyed by symbol. Returns Bars and DeadLetters (trades too late for their bar).

    At the end of input the open bars are flushed when ``flush_at_end()`` says so: at the real end
    of a tape, but not when a resumable run was merely stopped (the bars stay open in the recovery
    snapshot and close, complete, after the resume)."""
    out = stateful_core(
        step_id,
        market,
        lambda: BarBuilder(intervals=intervals, lateness_ns=lateness_ns),
        _bar_one,
        lambda core: core.flush() if flush_at_end() else (),
    )
    return unkeyed(f"{step_id}_unkey", out)


def _feature_one(core: FeatureState, bar):
    return core.on_bar(bar) if type(bar) is Bar else ()


def feature_stage(step_id: str, bars: Stream, interval: str) -> Stream:
    """``bars``: the bar stage's output (non-bars are ignored). Returns FeatureVectors."""
    keyed = keyed_by(f"{step_id}_key_symbol", bars, lambda bar: bar.symbol)
    out = stateful_core(step_id, keyed, lambda: FeatureState(interval=interval), _feature_one)
    return unkeyed(f"{step_id}_unkey", out)


def tagged_for_warehouse(step_id: str, up: Stream, partition: str | None = None) -> Stream:
    """``(table, record)`` pairs, the table (= topic) chosen by record type; with ``partition``,
    ``(partition, (table, record))`` for the warehouse sink."""
    tables = TABLE_OF_RECORD
    if partition is None:
        return op.flat_map_batch(step_id, up, lambda batch: [(tables[type(r)], r) for r in batch])
    return op.flat_map_batch(step_id, up, lambda batch: [(partition, (tables[type(r)], r)) for r in batch])


def _signals_one(core: SignalState, item):
    # hot-swappable models (LightGBM); getattr: a core pickled before several strategies existed
    slots = [slot for s in getattr(core, "strategies", (core.strategy,)) if (slot := getattr(s, "slot", None))]
    if type(item) is ControlCommand:
        records = []
        for slot in slots:
            slot.on_control(item)
            records.extend(slot.take_records())
        return records
    out = core.on_features(item)
    for slot in slots:
        if slot.records:
            out.extend(slot.take_records())  # a staged model took over at this cross-section
    return out


def signal_stage(
    step_id: str,
    features: Stream,
    new_state: Callable[[], SignalState],
    account: str,
    flush_at_end: Callable[[], bool] = lambda: True,
    control: Stream | None = None,
) -> Stream:
    """Feature vectors (and operator commands: model activation) -> the signals stage core, keyed by
    account so a bar's symbols meet. Returns CrossSections (or Signals and Orders, as the core is
    configured), DeadLetters, and ControlCommands recording model activations and swaps.

    A command applies when it arrives, between two feature vectors: a model it stages scores from
    the next cross-section on. The embedded flow and the split signals stage (which reads the
    ``control`` topic, where its own swap records also go: those are not commands) do the same."""
    if control is not None:
        relevant = op.filter(
            f"{step_id}_model_commands", control,
            lambda c: c.kind == ControlKind.ACTIVATE_MODEL and c.target in ("global", account)
            and not is_slot_record(c),
        )
        features = op.merge(f"{step_id}_inputs", features, relevant)
    keyed = keyed_by(f"{step_id}_key_account", features, lambda _: account)
    out = stateful_core(step_id, keyed, new_state, _signals_one, lambda core: core.flush() if flush_at_end() else ())
    return unkeyed(f"{step_id}_unkey", out)


def signals_for_warehouse(step_id: str, up: Stream, partition: str | None = None) -> Stream:
    """The signals stage's output as ``(table, record)``: each CrossSection's signals, dead letters,
    model-swap records; with ``partition``, keyed for the warehouse sink."""
    tables = TABLE_OF_RECORD

    def tag(batch):
        out = []
        for item in batch:
            if type(item) is CrossSection:
                out.extend((tables[Signal], s) for s in item.signals)
            else:
                out.append((tables[type(item)], item))
        return out if partition is None else [(partition, pair) for pair in out]

    return op.flat_map_batch(step_id, up, tag)


def _desk_one(core: TradingDesk, item):
    return core.on_item(item)


def desk_stage(
    step_id: str,
    market: Stream,
    cross_sections: Stream,
    control: Stream,
    new_desk: Callable[[], TradingDesk],
    account: str,
    flush_at_end: Callable[[], bool] = lambda: True,
) -> Stream:
    """Risk, venue and ledger of one account in one operator (fills update risk at once).

    ``market``: trades and quotes keyed by symbol (the normalize stage's ``market``);
    ``cross_sections``: the signals stage's output; ``control``: operator commands (and, with a live
    venue, its execution reports).
    Returns ``(table, record)`` pairs for the warehouse."""
    market_items = op.flat_map_batch(f"{step_id}_market", market, lambda batch: [(account, v) for _, v in batch])
    section_items = op.flat_map_batch(
        f"{step_id}_sections", cross_sections, lambda batch: [(account, c) for c in batch if type(c) is CrossSection]
    )
    control_items = op.flat_map_batch(
        f"{step_id}_control", control,
        lambda batch: [(account, c) for c in batch if type(c) is ExecutionReport or c.target in ("global", account)],
    )
    merged = op.merge(f"{step_id}_inputs", market_items, section_items, control_items)
    out = stateful_core(step_id, merged, new_desk, _desk_one, lambda core: core.flush() if flush_at_end() else (),
                        on_batch=lambda core, items: core.on_batch(items))
    return unkeyed(f"{step_id}_unkey", out)


def tagged_pairs(step_id: str, up: Stream, partition: str) -> Stream:
    """Already ``(table, record)`` pairs (the desk's output) for the warehouse sink."""
    return op.flat_map_batch(step_id, up, lambda batch: [(partition, pair) for pair in batch])
