"""The event-time sequencer every account stage composes: the one place the desk decides *when* an
input is final, knowing nothing of risk, the venue or the ledger.

The desk's inputs (trades and quotes per symbol, cross-sections, in the split topology orders and
execution reports, from different topics and partitions) interleave however the engine and the
broker batched them. The sequencer restores one event-time order: everything goes into one heap
keyed by ``(ts_event, priority, symbol, arrival)`` and comes out (:meth:`EventSequencer.release`)
only below a horizon that no later arrival can undercut. The owner computes that horizon from the
bounds here:

- the *market horizon*: with a feed watermark W (a :class:`schemas.columns.TickBatch` from a feed
  that delivers in event-time order, see ``schemas.columns.WATERMARK``), W itself: nothing older
  can come. Without one (Kafka, Alpaca), every symbol's newest event time minus the lateness window
  (normalize never lets an older event of that symbol through), for each of its market streams
  (trades and quotes come from different topics); a symbol more than ``silent_after_ns`` behind the
  newest is silent and holds nothing back; with a ``universe``, nothing is final until every stream
  of it has been seen;
  A symbol's :class:`schemas.TapeWatermark` (split topology: normalize's bound over both of its
  streams, see ``market/tape_watermarks.py``) advances a stream as an event would
  (:meth:`EventSequencer.advance_stream`);
- the *signal watermark* S: the bar time of the newest cross-section. Cross-sections come in bar
  order on the bar clock, so the next one is at S + interval or later (:meth:`section_horizon`);
- before the first cross-section, the *earliest-section bound*: none can come before the features'
  warm-up has passed (:meth:`earliest_section`).

At equal event times a cross-section goes first (and, in the split execution stage, the orders it
caused), then bar ends, then trades and quotes, then (split risk and pnl stages) the venue's
reports; ties within those break on the symbol, then on arrival (one symbol's events always arrive
in tape order, however the symbols interleave).

Bar ends are derived here from the trades: a symbol that traded in ``[T - interval, T)`` gets a
:class:`BarEnd` at ``T``, so the owner needs no third stream to stay in order with.

Bars instead of ticks (a bar replay, :meth:`EventSequencer.queue_bar`): a bar ``[start, end)`` is two
market events, its open at ``start`` (:class:`BarOpen`: the venue's matching opportunity) and its
close at ``end - 1`` (:class:`BarClose`: the marks; a close is the last price *inside* the bar, so
it is known before the cross-section at ``end`` sizes orders on it), and a :class:`BarEnd` at
``end``. Its market stream is ``(symbol, "bar")``, whose newest time is the bar's end: the next bar
of that symbol starts there at the earliest.

A redelivered input (same id: at-least-once delivery) is dropped, so it can never fill an order
twice; one older than what was already released goes to the dlq as ``late`` rather than silently
changing history.

Ticks as columns: a TickBatch's accepted rows are queued as one entry, sorted in event order, and
released as runs (TickBatch slices) that no other queued event falls inside, so the owner can
process a run with array operations. A run is exactly the rows the same records would have been,
in the same order.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from market.features import WARMUP_BARS
from market.normalize import RecentTradeIds
from schemas import INTERVAL_NANOS, Bar, DeadLetter, ExecutionReport, Order, Quote, TapeWatermark, Trade, now_ns
from schemas.columns import QUOTE, TRADE, TickBatch
from schemas.trusted import trusted_constructor
from strategies.signals import CrossSection
from trading.tick_runs import TICK, QueuedTicks, joined

# At equal event times: cross-sections (and, in the split execution stage, the orders they caused),
# then bar ends, then market events (TICK = 2), then (split risk and pnl stages) the venue's reports.
CROSS_SECTION, BAR_END, REPORT = 0, 1, 3

# Ids remembered per symbol to drop redelivered market events (a Kafka restart redelivers at most
# an epoch's worth); older duplicates are also refused by the late check.
RECENT_IDS_PER_SYMBOL = 20_000
# Order / report ids remembered for redelivery checks (far more than an epoch).
RECENT_ROUTED_IDS = 100_000

# A TickBatch this short is checked row by row: below it, array operations' fixed cost is the larger.
ROW_BY_ROW_BELOW = 24

# Queued market records are snapshotted as their field dicts and rebuilt with these.
_MARKET_CONSTRUCTORS = {Trade: trusted_constructor(Trade), Quote: trusted_constructor(Quote)}

Horizon = tuple[int, int]  # everything strictly below this (ts_event, priority) key is final


@dataclass(frozen=True)
class BarOpen:
    """A replayed bar's open, at its start: the venue's matching opportunity."""

    bar: Bar


@dataclass(frozen=True)
class BarClose:
    """A replayed bar's close, just before its end: the marks."""

    bar: Bar


@dataclass(frozen=True)
class BarEnd:
    """The end of a bar in which ``symbol`` traded: the desk's own bar clock."""

    symbol: str
    bar_end: int
    ts_tick_ingest: int


class EventSequencer:
    """One heap in event-time order, the watermarks that say how much of it is final, and the
    redelivery and late checks at its door. ``bar_interval``: the features' interval, on which
    cross-sections come and bar ends are derived; ``stage`` names the owner in routed dead letters.

    Release yields, in event order: CrossSection, :class:`BarEnd`, Trade, Quote, TickBatch runs
    (no other queued event falls inside one), Order and ExecutionReport (queued with
    :meth:`queue_routed`)."""

    def __init__(self, bar_interval: str, lateness_ns: int, silent_after_ns: int,
                 universe: tuple[str, ...] | None = None, market_streams: tuple[str, ...] = ("trade", "quote"),
                 stage: str = "desk", redelivered_ticks: bool = True) -> None:
        """``redelivered_ticks``: a market event may arrive twice (at-least-once delivery), so ids
        are remembered and repeats dropped; False where each is handed over once (in process)."""
        self.redelivered_ticks = redelivered_ticks
        self.bar_interval = bar_interval
        self.interval_ns = INTERVAL_NANOS[bar_interval]
        self.lateness_ns = lateness_ns
        self.silent_after_ns = silent_after_ns
        self.universe = universe
        self.market_streams = market_streams
        self.stage = stage
        self.queue: list[tuple] = []
        self.released: Horizon = (-1, 0)  # the key up to which the queue was processed
        self.signal_watermark = -1  # bar time of the newest cross-section
        self.feed_watermark = -1  # an ordered feed's promise: no market event older than this will come
        self.counts = {"duplicates": 0, "late": 0}
        self._arrivals = 0
        # (symbol, "trade" | "quote") -> newest event time seen: trades and quotes come from
        # different topics in the split topology, each in order per symbol but not with each other
        self._market_seen: dict[tuple[str, str], int] = {}
        self._market_first: dict[tuple[str, str], int] = {}  # each stream's first (earliest) event time
        self._bar_scheduled: dict[str, int] = {}  # symbol -> latest bar end scheduled from its trades
        self._recent_ids: dict[str, RecentTradeIds] = {}
        self._recent_routed = RecentTradeIds(RECENT_ROUTED_IDS)
        self._streams_known: tuple[str, ...] | None = None  # a symbol dictionary whose streams all have a first time

    def __len__(self) -> int:
        """Queued events, a queued TickBatch counting as one."""
        return len(self.queue)

    # ------------------------------------------------------------------ recovery snapshots

    def __getstate__(self) -> dict:
        # The queue holds up to a bar and the lateness window of tape (thousands of trades and
        # quotes at 5,000 ticks/s) and is pickled every epoch: pydantic's own pickling of each
        # record cost ~30 ms per snapshot, a pause on the tick-to-order path. Their field dicts
        # pickle ten times faster and rebuild the same records without validation. Queued
        # TickBatches are NumPy columns and pickle as buffers.
        self._compact_ticks()
        state = self.__dict__.copy()
        state["queue"] = [(*entry[:4], type(entry[4]), entry[4].__dict__) if type(entry[4]) in _MARKET_CONSTRUCTORS
                          else entry for entry in self.queue]
        return state

    def __setstate__(self, state: dict) -> None:
        state["queue"] = [entry if len(entry) == 5 else (*entry[:4], _MARKET_CONSTRUCTORS[entry[4]](entry[5]))
                          for entry in state["queue"]]
        state.setdefault("redelivered_ticks", True)  # a snapshot from before the setting
        self.__dict__.update(state)

    # ------------------------------------------------------------------ inputs

    def queue_market(self, record: Trade | Quote) -> DeadLetter | None:
        """Queue a trade or quote; a redelivery is dropped (None), a late one comes back as a dead letter."""
        symbol, ts = record.symbol, record.ts_event
        if self.redelivered_ticks:
            seen = self._recent_ids.get(symbol)
            if seen is None:
                seen = self._recent_ids[symbol] = RecentTradeIds(RECENT_IDS_PER_SYMBOL)
            if not seen.add_if_new(record.id):
                self.counts["duplicates"] += 1
                return None
        if (ts, TICK) < self.released:
            self.counts["late"] += 1
            return self._late(record)
        self._push(ts, TICK, symbol, record)
        stream = (symbol, "trade" if type(record) is Trade else "quote")
        if ts > self._market_seen.get(stream, -1):
            self._market_seen[stream] = ts
        if stream not in self._market_first:
            self._market_first[stream] = ts
        if type(record) is Trade:
            bar_end = (ts // self.interval_ns + 1) * self.interval_ns
            if bar_end > self._bar_scheduled.get(symbol, -1):
                self._bar_scheduled[symbol] = bar_end
                self._push(bar_end, BAR_END, symbol, BarEnd(symbol, bar_end, record.ts_tick_ingest))
        return None

    def advance_stream(self, watermark: TapeWatermark) -> None:
        """A tape watermark (``schemas.TapeWatermark``): no event of its symbol older than its bound
        follows on its stream, as if that stream had shown an event at bound + lateness. Behind a
        feed watermark it adds nothing; a stream this desk does not trade on is left alone."""
        if self.feed_watermark >= 0 or watermark.stream not in self.market_streams:
            return
        stream = (watermark.symbol, watermark.stream)
        newest = watermark.bound + self.lateness_ns
        if newest > self._market_seen.get(stream, -1):
            self._market_seen[stream] = newest

    def queue_bar(self, bar: Bar) -> DeadLetter | None:
        """Queue a replayed bar as its open, its close and its bar end (see the module docstring);
        a redelivery is dropped (None), one older than what was released is dead-lettered."""
        symbol = bar.symbol
        if self.redelivered_ticks:
            seen = self._recent_ids.get(symbol)
            if seen is None:
                seen = self._recent_ids[symbol] = RecentTradeIds(RECENT_IDS_PER_SYMBOL)
            if not seen.add_if_new(bar.id):
                self.counts["duplicates"] += 1
                return None
        if (bar.bar_start, TICK) < self.released:
            self.counts["late"] += 1
            return self._late(bar)
        self._push(bar.bar_start, TICK, symbol, BarOpen(bar))
        self._push(bar.bar_end - 1, TICK, symbol, BarClose(bar))
        stream = (symbol, "bar")
        if bar.bar_end > self._market_seen.get(stream, -1):
            self._market_seen[stream] = bar.bar_end
        if stream not in self._market_first:
            self._market_first[stream] = bar.bar_start
        bar_end = (bar.bar_end - 1) // self.interval_ns * self.interval_ns + self.interval_ns
        if bar_end > self._bar_scheduled.get(symbol, -1):
            self._bar_scheduled[symbol] = bar_end
            self._push(bar_end, BAR_END, symbol, BarEnd(symbol, bar_end, bar.ts_tick_ingest))
        return None

    def queue_ticks(self, batch: TickBatch) -> list[DeadLetter]:
        """Queue a TickBatch's rows as if each were its record, in row order (the same redelivery
        and late checks, the same stream watermarks and bar ends); return the late rows' dead letters.
        Its ``watermark``, if any, raises the feed watermark."""
        if batch.watermark is not None and batch.watermark > self.feed_watermark:
            self.feed_watermark = batch.watermark
        n = len(batch)
        if n == 0:
            return []
        names = batch.symbols
        keep = self._first_deliveries(batch) if self.redelivered_ticks else np.ones(n, dtype=bool)
        ts = batch.ts_event
        released_ts, released_priority = self.released
        late = ts < released_ts if released_priority <= TICK else ts <= released_ts
        late &= keep
        dead: list[DeadLetter] = []
        if late.any():
            self.counts["late"] += int(late.sum())
            dead = [self._late(record) for record in batch.take(late).to_records()]
            keep &= ~late
        arrival = np.arange(self._arrivals + 1, self._arrivals + 1 + n, dtype=np.int64)
        self._arrivals += n
        if not keep.all():
            rows = np.flatnonzero(keep)
            if len(rows) == 0:
                return dead
            batch, arrival, ts = batch.take(rows), arrival[rows], ts[rows]
        in_order = len(ts) < 2 or bool((ts[1:] >= ts[:-1]).all())
        self._note_streams(batch)
        self._schedule_bar_ends(batch, in_order)
        if not in_order or (len(ts) > 1 and not bool((ts[1:] > ts[:-1]).all())):
            # Not strictly increasing: order by (event time, symbol name, arrival) like the heap.
            rank = np.empty(len(names), dtype=np.int64)
            rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
            order = np.lexsort((arrival, rank[batch.symbol], ts))
            batch, arrival = batch.take(order), arrival[order]
        queued = QueuedTicks(batch, arrival)
        heapq.heappush(self.queue, (*queued.key(), queued))
        return dead

    def queue_tick_batches(self, batches: list[TickBatch]) -> list[DeadLetter]:
        """Consecutive TickBatches as one (the same as queueing them one after another): fewer,
        longer runs when a feed hands over many small batches at once."""
        if len(batches) == 1:
            return self.queue_ticks(batches[0])
        return self.queue_ticks(joined(batches))

    def queue_section(self, section: CrossSection) -> None:
        if self.signal_watermark >= 0 and section.bar_end < self.signal_watermark + self.interval_ns:
            raise ValueError(
                f"cross-section at {section.bar_end} is off the desk's bar clock ({self.bar_interval}) after "
                f"the one at {self.signal_watermark}: DeskConfig.bar_interval must be the features' interval")
        self._push(section.bar_end, CROSS_SECTION, "", section)
        self.signal_watermark = max(self.signal_watermark, section.bar_end)

    def queue_routed(self, record: Order | ExecutionReport) -> DeadLetter | None:
        """An order (queued with the cross-sections) or an execution report (after the tape) from
        another stage; a redelivery is dropped, one older than what was released is dead-lettered."""
        if not self._recent_routed.add_if_new(record.id):
            self.counts["duplicates"] += 1
            return None
        key = (record.ts_event, CROSS_SECTION if type(record) is Order else REPORT)
        if key < self.released:
            self.counts["late"] += 1
            return DeadLetter(
                id=f"dlq:{self.stage}:{record.id}", ts_event=record.ts_event, ts_ingest=now_ns(),
                source_topic="orders.approved" if type(record) is Order else "exec.reports", stage=self.stage,
                reason="late", detail=f"event time {record.ts_event} is before what the {self.stage} stage "
                f"already processed ({self.released[0]}): the upstream broke its watermark",
                symbol=record.symbol, payload=record.to_json().decode())
        self._push(key[0], key[1], record.symbol, record)
        return None

    # ------------------------------------------------------------------ horizons

    def market_horizon(self) -> int | None:
        """No trade or quote older than this can still arrive (None: not every stream of the
        universe has been seen yet, and no feed watermark)."""
        if self.feed_watermark >= 0:
            return self.feed_watermark
        seen = self._market_seen
        if not seen:
            return None
        universe = self.universe
        if universe is not None:
            kinds = self.market_streams
            if len(seen) < len(universe) * len(kinds) and not all((s, k) in seen for s in universe for k in kinds):
                return None
        newest = max(seen.values())
        market = min(ts for ts in seen.values() if ts >= newest - self.silent_after_ns)
        return market - self.lateness_ns

    def knows_every_symbol(self) -> bool:
        """Whether the earliest-section bound is final: a universe waits for every symbol, and
        behind a feed watermark nothing unseen can start earlier."""
        return self.market_horizon() is not None and (self.universe is not None or self.feed_watermark >= 0)

    def earliest_section(self) -> int | None:
        """No cross-section can come before the features' warm-up has passed: a symbol's first
        vector is on its ``WARMUP_BARS``-th bar, and bars are epoch-aligned and exist only where a
        trade fell, so none ends before the ``WARMUP_BARS``-th interval from the earliest event's.
        (An event that arrives later with an older time is no earlier than the market horizon, so it
        cannot move this bound below a horizon already released; behind a feed watermark no unseen
        event is older than it.) None before any market event."""
        if not self._market_first:
            return None
        first = min(self._market_first.values())
        if self.feed_watermark >= 0:
            first = min(first, self.feed_watermark)
        return (first // self.interval_ns + WARMUP_BARS) * self.interval_ns

    def section_horizon(self) -> Horizon:
        """The fused desk's horizon: the market horizon, capped by the next cross-section's earliest
        bar time (or, before the first one, by the earliest-section bound)."""
        market = self.market_horizon()
        if market is None:
            return (-1, 0)
        if self.signal_watermark < 0:
            earliest = self.earliest_section()
            if earliest is None or not self.knows_every_symbol():
                return (-1, 0)  # who else will trade is unknown: hold the tape until the first cross-section
            # No cross-section yet, and none can come before the features' warm-up has passed: the
            # tape up to then is processed now instead of being held (at 10k ticks/s the warm-up
            # alone would otherwise hold some 350,000 events).
            return (min(market, earliest), 0)
        # Cross-sections come on the bar clock, in bar order: after the one at S, none can come before
        # S + interval, so the tape up to there is processed as the market passes it instead of
        # waiting for the next cross-section (which would then find a second of tape to work
        # through before its orders could go out).
        return min((market, 0), (self.signal_watermark + self.interval_ns, CROSS_SECTION))

    # ------------------------------------------------------------------ release

    def release(self, horizon: Horizon | None) -> Iterator[object]:
        """Pop everything strictly below ``horizon`` (everything, with None) in event order.
        A generator: each item is popped as the owner asks for the next, so :attr:`released` is
        always the key of what the owner is processing."""
        queue = self.queue
        self._merge_final_ticks(horizon)
        while queue:
            head = queue[0]
            if horizon is not None and (head[0], head[1]) >= horizon:
                break
            heapq.heappop(queue)
            item = head[4]
            if type(item) is QueuedTicks:
                rows = item.rows_before(horizon)
                if queue:
                    rows = min(rows, item.rows_before(queue[0][:4]))
                run, rest = item.split(rows)
                if rest is not None:
                    heapq.heappush(queue, (*rest.key(), rest))
                self.released = (int(run.ts_event[-1]), TICK)
                yield run
            else:
                self.released = (head[0], head[1])
                yield item

    def _compact_ticks(self) -> None:
        """Every queued tick batch as one entry, sorted by the heap key (the release order is the
        same, see :meth:`_merge_final_ticks`). Done before each snapshot: a live tape queues a batch
        per poll, and the queue's hundreds of small batches (a dozen arrays each) took most of the
        desk's pickling time at every epoch's end, a pause on the order path."""
        queue = self.queue
        ticks = [entry[4] for entry in queue if type(entry[4]) is QueuedTicks]
        if len(ticks) < 2:
            return
        others = [entry for entry in queue if type(entry[4]) is not QueuedTicks]
        merged = _merged(ticks)
        others.append((*merged.key(), merged))
        heapq.heapify(others)
        queue[:] = others  # in place: a release in progress holds the list

    def _merge_final_ticks(self, horizon: Horizon | None) -> None:
        """The queued tick rows below ``horizon`` as one entry, sorted by their heap key.

        Each input batch is its own entry (a Kafka stage gets one per topic partition and poll),
        and batches of different partitions cover the same stretch of time: released as they were,
        every entry would be cut at the next entry's first row, which is runs of a row or two, each
        paying a slice and the owner's per-run cost (most of the split trading stage's time when it
        works through a backlog). Merged, the rows come out in exactly the same order (the key
        ``(ts_event, TICK, symbol, arrival)`` is a total order over them), only in longer runs, cut
        by the other events (bar ends, cross-sections) alone. Only entries whose first row is final
        are looked at, so the cost follows what is released, not what is held."""
        queue = self.queue
        popped: list[tuple] = []
        ticks: list[QueuedTicks] = []
        while queue:
            head = queue[0]
            if horizon is not None and (head[0], head[1]) >= horizon:
                break
            heapq.heappop(queue)
            if type(head[4]) is QueuedTicks:
                ticks.append(head[4])
            else:
                popped.append(head)
        if len(ticks) == 1:
            popped.append((*ticks[0].key(), ticks[0]))
        elif ticks:
            finals: list[QueuedTicks] = []
            for queued in ticks:
                final, rest = queued.split(queued.rows_before(horizon))
                finals.append(QueuedTicks(final, queued.arrival[:len(final)]))
                if rest is not None:
                    popped.append((*rest.key(), rest))
            merged = _merged(finals)
            popped.append((*merged.key(), merged))
        for entry in popped:
            heapq.heappush(queue, entry)

    # ------------------------------------------------------------------ internals

    def _push(self, ts: int, priority: int, symbol: str, item: object) -> None:
        # Ties break on the symbol, then on arrival: one symbol's events arrive in tape order
        # whatever the batching, but how symbols interleave does not.
        self._arrivals += 1
        heapq.heappush(self.queue, (ts, priority, symbol, self._arrivals, item))

    def _late(self, record: Trade | Quote | Bar) -> DeadLetter:
        return DeadLetter(
            id=f"dlq:desk:{record.id}",
            ts_event=record.ts_event,
            ts_ingest=now_ns(),
            source_topic={Trade: "md.trades", Quote: "md.quotes", Bar: "md.bars"}[type(record)],
            stage="desk",
            reason="late",
            detail=f"event time {record.ts_event} is before what the desk already processed ({self.released[0]})",
            symbol=record.symbol,
            payload=record.to_json().decode(),
        )

    def _first_deliveries(self, batch: TickBatch) -> np.ndarray:
        """Rows whose id this symbol has not seen (earlier in the batch included): set operations
        per symbol, row by row only where a duplicate is present."""
        ids = batch.record_ids()
        codes = batch.symbol
        keep = np.ones(len(batch), dtype=bool)
        if len(batch) < ROW_BY_ROW_BELOW:
            names, recent = batch.symbols, self._recent_ids
            for row, (code, record_id) in enumerate(zip(codes.tolist(), ids.tolist())):
                seen = recent.get(names[code])
                if seen is None:
                    seen = recent[names[code]] = RecentTradeIds(RECENT_IDS_PER_SYMBOL)
                if not seen.add_if_new(record_id):
                    keep[row] = False
                    self.counts["duplicates"] += 1
            return keep
        if len(batch.symbols) == 1 or bool((codes == codes[0]).all()):
            order, groups = None, [(int(codes[0]), 0, len(codes))]
            id_list = ids.tolist()
        else:
            order = np.argsort(codes, kind="stable")
            ordered = codes[order]
            starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1]))).tolist()
            groups = list(zip(ordered[starts].tolist(), starts, starts[1:] + [len(codes)]))
            id_list = ids[order].tolist()
        for code, start, end in groups:
            symbol = batch.symbols[code]
            seen = self._recent_ids.get(symbol)
            if seen is None:
                seen = self._recent_ids[symbol] = RecentTradeIds(RECENT_IDS_PER_SYMBOL)
            fresh = seen.add_new(id_list[start:end])
            if fresh is not None:
                rows = np.arange(start, end) if order is None else order[start:end]
                duplicates = rows[~np.asarray(fresh, dtype=bool)]
                keep[duplicates] = False
                self.counts["duplicates"] += len(duplicates)
        return keep

    def _note_streams(self, batch: TickBatch) -> None:
        """Each (symbol, trade|quote) stream's first event time (in arrival order) and, without a
        feed watermark (which replaces them), its newest."""
        names, first = batch.symbols, self._market_first
        if self.feed_watermark >= 0 and names == self._streams_known:
            return  # behind a feed watermark only first times count, and these symbols have them all
        if len(batch) < ROW_BY_ROW_BELOW:
            seen, track = self._market_seen, self.feed_watermark < 0
            for code, kind, ts in zip(batch.symbol.tolist(), batch.kind.tolist(), batch.ts_event.tolist()):
                key = (names[code], "quote" if kind == QUOTE else "trade")
                if key not in first:
                    first[key] = ts
                if track and ts > seen.get(key, -1):
                    seen[key] = ts
            return
        stream = batch.symbol.astype(np.int64) * 2 + (batch.kind == QUOTE)
        streams, first_rows, inverse = np.unique(stream, return_index=True, return_inverse=True)
        keys = [(names[code >> 1], "quote" if code & 1 else "trade") for code in streams.tolist()]
        ts = batch.ts_event
        for key, row in zip(keys, first_rows.tolist()):
            if key not in first:
                first[key] = int(ts[row])
        if self.feed_watermark >= 0:
            if all((name, kind) in first for name in names for kind in self.market_streams):
                self._streams_known = names
            return
        newest = np.full(len(streams), np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(newest, inverse, ts)
        seen = self._market_seen
        for key, ts_newest in zip(keys, newest.tolist()):
            if ts_newest > seen.get(key, -1):
                seen[key] = ts_newest

    def _schedule_bar_ends(self, batch: TickBatch, in_order: bool) -> None:
        """A bar end for every bar a symbol's trades reach beyond the latest one scheduled, stamped
        with the tick ingest time of the trade that reached it first (in arrival order).
        ``in_order``: the rows' event times never decrease, so neither do each symbol's bars."""
        trades = np.flatnonzero(batch.kind == TRADE)
        if len(trades) == 0:
            return
        names, scheduled = batch.symbols, self._bar_scheduled
        interval = self.interval_ns
        bar_ends = (batch.ts_event[trades] // interval + 1) * interval
        top = int(bar_ends.max())
        if all(scheduled.get(symbol, -1) >= top for symbol in names):
            return  # every bar these trades fall in is scheduled already
        codes = batch.symbol[trades]
        order = np.argsort(codes, kind="stable")
        codes, bar_ends, trades = codes[order], bar_ends[order], trades[order]
        if in_order:
            # Each symbol's bars in arrival order are non-decreasing: the first row of every
            # (symbol, bar) beyond the scheduled one reaches a new bar.
            changes = (codes[1:] != codes[:-1]) | (bar_ends[1:] != bar_ends[:-1])
            firsts = np.flatnonzero(np.concatenate(([True], changes)))
        else:
            # Any order: a row reaches a new bar when it is beyond every earlier row of its symbol.
            starts = np.flatnonzero(np.concatenate(([True], codes[1:] != codes[:-1])))
            before = np.empty_like(bar_ends)
            for start, end in zip(starts.tolist(), np.append(starts[1:], len(codes)).tolist()):
                before[start] = -1
                before[start + 1:end] = np.maximum.accumulate(bar_ends[start:end - 1])
            firsts = np.flatnonzero(bar_ends > before)
        ticks = batch.ts_tick_ingest
        for code, bar_end, row in zip(codes[firsts].tolist(), bar_ends[firsts].tolist(), trades[firsts].tolist()):
            symbol = names[code]
            if bar_end > scheduled.get(symbol, -1):
                scheduled[symbol] = bar_end
                self._push(bar_end, BAR_END, symbol, BarEnd(symbol, bar_end, int(ticks[row])))


def _merged(queued: list[QueuedTicks]) -> QueuedTicks:
    """Queued tick batches as one, its rows in heap-key order ``(ts_event, symbol name, arrival)``."""
    batch = joined([q.ticks for q in queued])
    arrival = np.concatenate([q.arrival for q in queued])
    names = batch.symbols
    rank = np.empty(len(names), dtype=np.int64)
    rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
    order = np.lexsort((arrival, rank[batch.symbol], batch.ts_event))
    return QueuedTicks(batch.take(order), arrival[order])


__all__ = ["BAR_END", "CROSS_SECTION", "REPORT", "TICK", "BarClose", "BarEnd", "BarOpen", "EventSequencer", "Horizon"]
