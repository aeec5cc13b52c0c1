"""Normalize for a whole RawTickBatch: the rules of ``market.normalize`` as column operations.

Contract: ``normalize_raw_batch(state, batch)`` gives exactly what ``state.on_raw`` gives for
``batch.to_records()`` fed one at a time (the same accepted records, the same dead letters with the
same ids, reasons, details, event times and payload texts, the same state afterwards), the accepted
rows as a TickBatch in input order and the dead letters in input order.

How, in three steps:

1. **Stateless rules** (unknown_symbol, malformed, bad_price, bad_size, crossed_quote,
   future_timestamp) are boolean masks over the columns. A RawTickBatch is ``tapeflow.v1`` by
   construction, so ``unknown_format`` cannot occur and the only shape fault left is a trade with an
   empty trade id (``malformed``, as in the per-tick parser).
2. **Stateful rules** (late, price_band, duplicate_trade) depend on state that only accepted ticks
   change. An optimistic pass assumes every row that passed step 1 is accepted: per symbol, the
   watermark before a row is the running max of the earlier rows' ts (and the state's), the
   reference price is the previous row's trade price or quote mid (or the state's), and the trade
   ids extend the symbol's window. That is exact up to the first row of a symbol where one of these
   rules fires (or a trade id recurs, which may be a duplicate): the rows before it are accepted in
   bulk and the state moves as the per-tick path would have moved it. With at most
   ``SMALL_BATCH_ROWS`` candidates (a paced feed's millisecond) the same pass runs as a loop over
   the rows: its NumPy form costs more than those few rows.
3. **Everything else goes one row at a time through ``state.on_raw``**: the rows step 1 rejects
   (those rules never read or write state, so their order among the others does not matter) and, per
   symbol, every row from that symbol's first stateful hit on (a disorderly or broken feed: rare).
   Reasons, precedence and detail texts therefore come from the per-tick code itself and cannot
   drift; the per-tick record of an accepted row is discarded, the columns carry it.

This module is the batch half of the normalize stage and works on ``NormalizeState``'s fields
directly; it imports nothing from ``market.normalize`` (which imports it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from schemas.columns import QUOTE, SIDE_TO_AGGRESSOR, TRADE, RawTickBatch, TickBatch, trade_keys
from schemas.control import DeadLetter

if TYPE_CHECKING:
    from market.normalize import NormalizeState

__all__ = ["normalize_raw_batch"]

_INT64_MAX = np.iinfo(np.int64).max
# Up to this many candidate rows the stateful rules run row by row (a live millisecond's ~10 rows:
# the vectorized pass's fixed cost, ~110 us, was a tenth of the dataflow thread at 10,000 ticks/s).
SMALL_BATCH_ROWS = 64
# An absent watermark in the int64 columns. Accepted ts are >= 0, so it never wins a max and
# ``-1 - ts`` never exceeds a (non-negative) lateness: a symbol's first tick is never late.
_NO_WATERMARK = -1


def normalize_raw_batch(state: NormalizeState, batch: RawTickBatch) -> tuple[TickBatch, list[DeadLetter]]:
    """See the module docstring; ``NormalizeState.on_raw_batch`` is the public entry."""
    n = len(batch)
    accepted = np.zeros(n, dtype=bool)
    dead: list[DeadLetter] = []
    if n:
        passed = ~_stateless_rejects(state, batch)
        candidates = np.flatnonzero(passed)
        accept = _accept_in_bulk if len(candidates) > SMALL_BATCH_ROWS else _accept_row_by_row
        one_by_one = accept(state, batch, candidates)
        accepted[candidates] = True
        accepted[one_by_one] = False
        rows = np.flatnonzero(~accepted)  # step-1 rejects and step-3 rows, in input order
        if len(rows):
            for row, raw in zip(rows.tolist(), batch.take(rows).to_records()):
                (record,) = state.on_raw(raw)
                if type(record) is DeadLetter:
                    dead.append(record)
                else:
                    accepted[row] = True
    return _accepted_ticks(batch, accepted), dead


def _stateless_rejects(state: NormalizeState, batch: RawTickBatch) -> np.ndarray:
    """Rows that a rule which reads no state rejects (which rule is for ``on_raw`` to name)."""
    trade = batch.kind == TRADE
    price, size, bid, ask = batch.price, batch.size, batch.bid, batch.ask
    # Comparisons with NaN are False: `(0 < x) & (x < inf)` is False for NaN as in the per-tick chain.
    good_trade = (price > 0.0) & (price < np.inf) & (size > 0.0) & (size < np.inf)
    # A trade id is a str on trade rows; "" (and None, a missing one) is falsy, i.e. malformed.
    # Trade numbers (schemas.columns.TRADE_NUMBERS) are never empty texts.
    if batch.trade_no is None:
        good_trade &= batch.trade_id.astype(bool)
    good_quote = (
        (bid > 0.0) & (bid < np.inf) & (ask > 0.0) & (ask < np.inf)
        & (batch.bid_size >= 0.0) & (batch.bid_size < np.inf)
        & (batch.ask_size >= 0.0) & (batch.ask_size < np.inf)
        & (bid < ask)
    )
    bad = np.where(trade, ~good_trade, ~good_quote)
    # ts >= 0 and ts_ingest >= 0 (both are record fields with ge=0): the difference cannot overflow.
    bad |= batch.ts_event - batch.ts_ingest > min(state._max_future_ns, _INT64_MAX)
    universe = state._universe
    if universe is not None:
        known = np.fromiter((s in universe for s in batch.symbols), dtype=bool, count=len(batch.symbols))
        bad |= ~known[batch.symbol]
    return bad


def _accept_in_bulk(state: NormalizeState, batch: RawTickBatch, candidates: np.ndarray) -> np.ndarray:
    """Accept, per symbol, the candidates before the symbol's first stateful hit, moving the state as
    ``on_raw`` would; return the candidate rows from each first hit on (for ``on_raw``)."""
    m = len(candidates)
    if m == 0:
        return candidates
    # Candidates grouped by symbol, in input order within a symbol (a stable sort).
    codes = batch.symbol[candidates]
    rows = candidates[np.argsort(codes, kind="stable")]
    codes = batch.symbol[rows]
    first_of_symbol = np.empty(m, dtype=bool)
    first_of_symbol[0] = True
    np.not_equal(codes[1:], codes[:-1], out=first_of_symbol[1:])
    starts = np.flatnonzero(first_of_symbol)
    ends = np.append(starts[1:], m)
    group = np.cumsum(first_of_symbol) - 1
    names = [batch.symbols[c] for c in codes[starts].tolist()]

    ts = batch.ts_event[rows]
    is_trade = batch.kind[rows] == TRADE
    with np.errstate(over="ignore", invalid="ignore"):  # a mid of two huge prices is inf, as in Python
        value = np.where(is_trade, batch.price[rows], (batch.bid[rows] + batch.ask[rows]) / 2.0)

    # late: the watermark before a row is the max of the state's and the earlier rows' ts.
    wm_state = np.array([state._watermark.get(s, _NO_WATERMARK) for s in names], dtype=np.int64)
    running_ts = _running_max_per_group(ts, group, first_of_symbol)
    wm_before = np.empty(m, dtype=np.int64)
    wm_before[1:] = running_ts[:-1]
    wm_before[starts] = _NO_WATERMARK
    np.maximum(wm_before, wm_state[group], out=wm_before)
    hit = wm_before - ts > min(state._lateness_ns, _INT64_MAX)  # ts < watermark - lateness

    # price_band: the reference before a row is the previous row's price or mid (or the state's; a
    # symbol's first price is its own reference). Accepted prices are never NaN: NaN means "none".
    reference = np.empty(m)
    reference[1:] = value[:-1]
    reference[starts] = [state._reference_price.get(s, np.nan) for s in names]
    reference = np.where(np.isnan(reference), value, reference)
    with np.errstate(invalid="ignore"):  # inf - inf, as in Python, compares False
        hit |= np.abs(value - reference) > state._band * reference

    stop = ends.copy()  # per symbol: the first position that goes to on_raw
    hits = np.flatnonzero(hit)
    if len(hits):
        hit_group = group[hits]
        first_hit = np.ones(len(hits), dtype=bool)
        np.not_equal(hit_group[1:], hit_group[:-1], out=first_hit[1:])
        stop[hit_group[first_hit]] = hits[first_hit]

    # duplicate_trade: per symbol, the trade ids before the stop must be new and distinct. The
    # window holds trade_key(id): the batch's numbers as they are, texts through trade_keys.
    trade_at = np.flatnonzero(is_trade)
    if batch.trade_no is not None:
        trade_ids = batch.trade_no[rows[trade_at]].tolist()
    else:
        trade_ids = trade_keys(batch.trade_id[rows[trade_at]].tolist())
    trades_from = np.searchsorted(trade_at, starts).tolist()
    trades_to = np.searchsorted(trade_at, stop).tolist()
    for g, (lo, hi) in enumerate(zip(trades_from, trades_to)):  # one pass per symbol, not per row
        if lo == hi:
            continue
        ids = trade_ids[lo:hi]
        window = state._trade_window(names[g])
        known = window.first_known(ids)
        if known is not None:
            stop[g] = trade_at[lo + known]
            ids = ids[:known]
        window.extend_new(ids)

    in_bulk = np.arange(m) < stop[group]
    done = np.flatnonzero(stop > starts)
    if len(done):
        last = stop[done] - 1
        done_names = [names[g] for g in done.tolist()]
        state._watermark.update(zip(done_names, np.maximum(running_ts[last], wm_state[done]).tolist()))
        state._reference_price.update(zip(done_names, value[last].tolist()))
        trades = int(np.count_nonzero(in_bulk & is_trade))
        state._accepted_trades += trades
        state._accepted_quotes += int(np.count_nonzero(in_bulk)) - trades
    return np.sort(rows[~in_bulk])


def _accept_row_by_row(state: NormalizeState, batch: RawTickBatch, candidates: np.ndarray) -> np.ndarray:
    """:func:`_accept_in_bulk` for a few candidates: the same three rules and state moves, one row
    at a time in input order from the columns (a symbol's rows from its first hit on go to
    ``on_raw``), instead of some forty NumPy calls whatever the batch's size."""
    if not len(candidates):
        return candidates
    names = [batch.symbols[c] for c in batch.symbol[candidates].tolist()]
    is_trade = (batch.kind[candidates] == TRADE).tolist()
    trade_rows = candidates[batch.kind[candidates] == TRADE]
    if batch.trade_no is not None:
        trade_ids = iter(batch.trade_no[trade_rows].tolist())
    else:
        trade_ids = iter(trade_keys(batch.trade_id[trade_rows].tolist()))
    with np.errstate(over="ignore", invalid="ignore"):  # a mid of two huge prices is inf, as in Python
        value = np.where(batch.kind[candidates] == TRADE, batch.price[candidates],
                         (batch.bid[candidates] + batch.ask[candidates]) / 2.0).tolist()
    watermarks, references = state._watermark, state._reference_price
    lateness, band = min(state._lateness_ns, _INT64_MAX), state._band
    stopped: set[str] = set()
    new_ids: dict[str, list] = {}  # per symbol, the trade ids accepted here, in order
    one_by_one: list[int] = []
    trades = quotes = 0
    for row, name, ts, trade, price in zip(candidates.tolist(), names, batch.ts_event[candidates].tolist(),
                                           is_trade, value):
        trade_id = next(trade_ids) if trade else None
        if name in stopped:
            one_by_one.append(row)
            continue
        watermark = watermarks.get(name, _NO_WATERMARK)
        reference = references.get(name, price)
        if watermark - ts > lateness or abs(price - reference) > band * reference:
            stopped.add(name)
            one_by_one.append(row)
            continue
        if trade:
            accepted = new_ids.setdefault(name, [])
            if trade_id in state._trade_window(name) or trade_id in accepted:
                stopped.add(name)
                one_by_one.append(row)
                continue
            accepted.append(trade_id)
            trades += 1
        else:
            quotes += 1
        if ts > watermark:
            watermarks[name] = ts
        references[name] = price
    for name, ids in new_ids.items():
        state._trade_window(name).extend_new(ids)
    state._accepted_trades += trades
    state._accepted_quotes += quotes
    return np.array(one_by_one, dtype=np.int64)


def _running_max_per_group(ts: np.ndarray, group: np.ndarray, first_of_group: np.ndarray) -> np.ndarray:
    """Running max of ``ts`` within each run of equal ``group`` (groups contiguous and ascending)."""
    m = len(ts)
    if m < 2 or bool(np.all((ts[1:] >= ts[:-1]) | first_of_group[1:])):
        return ts  # in event-time order within each symbol: the common case
    # Ranks instead of values so that group * m + rank fits int64 and a group's keys all exceed the
    # previous group's: one maximum.accumulate then never carries a max across groups.
    by_ts = np.argsort(ts, kind="stable")
    rank = np.empty(m, dtype=np.int64)
    rank[by_ts] = np.arange(m)
    offset = group * m
    return ts[by_ts[np.maximum.accumulate(offset + rank) - offset]]


def _accepted_ticks(batch: RawTickBatch, accepted: np.ndarray) -> TickBatch:
    """The accepted rows as a TickBatch (normalize's ids derived on demand, the watermark passed on)."""
    rows = np.flatnonzero(accepted)
    kind = batch.kind[rows]
    ts_ingest = batch.ts_ingest[rows]
    return TickBatch(
        symbols=batch.symbols, symbol=batch.symbol[rows],
        sources=(batch.source,), source=np.zeros(len(rows), dtype=np.int32),
        kind=kind, seq=batch.seq[rows], ts_event=batch.ts_event[rows],
        ts_ingest=ts_ingest, ts_tick_ingest=ts_ingest.copy(),
        price=batch.price[rows], size=batch.size[rows],
        aggressor=np.where(kind == QUOTE, 0, SIDE_TO_AGGRESSOR[batch.side[rows]]).astype(np.int8),
        trade_id=None if batch.trade_no is not None else batch.trade_id[rows],
        trade_no=None if batch.trade_no is None else batch.trade_no[rows],
        bid=batch.bid[rows], ask=batch.ask[rows], bid_size=batch.bid_size[rows], ask_size=batch.ask_size[rows],
        ids=None, watermark=batch.watermark,
    )
