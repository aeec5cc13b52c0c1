"""A warehouse writer thread: the caller hands rows over and goes on; one thread converts and inserts.

:class:`BackgroundWriter` wraps a :class:`~sinks.writer.BatchingWriter`. ``add``, ``add_many`` and
``add_arrow`` check their rows in the caller's thread (an unknown table, a record of another model
or an Arrow table of another form fails there, as with the plain writer), put them on a queue and
return at once. One thread, started on first use, hands the queue to the BatchingWriter in order,
seals and inserts: the record -> Arrow conversion and the inserts leave the caller's thread, so a
dataflow keeps computing while ClickHouse writes. The thread flushes on its own by the writer's size
and age bounds (``max_rows``, ``max_age_s``), the same blocks with the same insert tokens and retry
rules as the plain writer, so the order of blocks per table is the order of the adds.

Back-pressure: at most ``max_pending_rows`` rows may be accepted and not yet written (queued,
buffered or in a failed block). An add that would pass the bound **blocks the caller** until the
thread has written enough (the thread flushes at once when a caller waits for room); an add larger
than the bound waits until nothing is pending, then goes in alone. So a slow warehouse slows the
dataflow down instead of filling memory.

Failures are never swallowed: an insert that failed after every retry (WarehouseWriteError, naming
table and rows) or any other error of the thread is raised once, in the caller's thread, by the next
``flush()`` or ``close()``, or by the next add (before it accepts anything, so a failed add can be
repeated). The failed block stays pending in the BatchingWriter; the thread makes no further
insert on its own until the error has been raised, and the next ``flush()`` retries the block under
its token, so it is written once and nothing is lost.

Priority (``below_the_tape``, the embedded flow's writer): the thread, and embedded ClickHouse's own
threads, run at a lower OS priority than the dataflow (``sinks/thread_priority.py``): on two cores
they otherwise took the dataflow thread's core for several milliseconds at a time during an insert.
The split topology's sink stage keeps its priority: landing is its whole job, and lowered it lost
the cores to the other stages (its share of a replay at full speed fell by a third).

Small column batches (under :data:`HOLD_BELOW_ROWS` rows) are joined on the caller's side, up to
:data:`HOLD_BATCHES` or :data:`HOLD_ROWS` at a time: a paced feed hands over a TickBatch and a
RawTickBatch of ~10 rows every millisecond, and the thread's Python work per hand-over (queueing,
grouping, a dozen array calls each to join them) held the GIL ~20-45 ms a second at 10,000
ticks/s, in slices the dataflow thread queued behind: its tick -> order tail. Held batches count
as pending rows (back-pressure, ``pending_rows``, the age bound: the thread takes them itself when
their age comes due) and every ``flush()``, and every larger batch or record of their table, hands
them over first, so they are written exactly as if each had been queued alone.

Threads: one caller thread adds and flushes (a dataflow's sink partition); the counters may be read
from any thread. While the thread runs, the BatchingWriter is lent to it (``BatchingWriter.lend``):
its owner's ``flush()`` from another thread first closes this writer, so rows still queued here are
written too.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, fields
from typing import Iterable

import numpy as np
import pyarrow as pa

from schemas import Record
from schemas.columns import TRADE, RawTickBatch, TickBatch, concat_tick_batches, concat_trade_ids
from sinks.columns import raw_table, tick_tables
from sinks.thread_priority import WarehouseThreads
from sinks.writer import BatchingWriter, check_records


# How often the thread looks for ClickHouse threads started since (after a write, at most this often).
PRIORITY_CHECK_S = 2.0

# Column batches of one kind are held by the caller until this many are held, or this many rows,
# then joined into one hand-over: at 10,000 ticks/s some 64 ms of tape, a join of ~100 us.
HOLD_BATCHES = 64
HOLD_ROWS = 2_048
# A batch this large goes to the thread as it is (after what is held of its kind): a replay's
# batches are thousands of rows, and joining them would only move the thread's work onto the dataflow's.
HOLD_BELOW_ROWS = 256

_TICKS, _RAW = "ticks", "raw"  # the held kinds


@dataclass(frozen=True)
class _Work:
    table: str
    rows: list[Record] | pa.Table | TickBatch | RawTickBatch  # a TickBatch: its rows of ``table`` only
    rows_n: int
    accepted_at: float  # the writer's clock() when add accepted the rows


class BackgroundWriter:
    def __init__(self, writer: BatchingWriter, max_pending_rows: int | None = None, name: str = "tapeflow-warehouse",
                 below_the_tape: bool = False):
        """``max_pending_rows``: the back-pressure bound (default: four of the writer's blocks).
        ``below_the_tape``: the thread and embedded ClickHouse's threads run at a lower OS priority
        (for a writer that shares its process with the tape's dataflow; see the module docstring)."""
        self.writer = writer
        self.max_pending_rows = max_pending_rows if max_pending_rows is not None else 4 * writer.max_rows
        if self.max_pending_rows < 1:
            raise ValueError("max_pending_rows must be >= 1")
        self.run_id = writer.run_id
        self.name = name
        self._cond = threading.Condition()
        # -- guarded by _cond -------------------------------------------------------------------
        self._queue: deque[_Work] = deque()
        self._queued_by_table: Counter[str] = Counter()
        self._queued = 0
        # column batches held by the caller, per kind, and their rows per table (see HOLD_BATCHES)
        self._held: dict[str, list[TickBatch | RawTickBatch]] = {_TICKS: [], _RAW: []}
        self._held_rows_of: dict[str, int] = {_TICKS: 0, _RAW: 0}
        self._held_at: dict[str, float] = {}  # kind -> clock() when its oldest held batch was accepted
        self._held_by_table: Counter[str] = Counter()
        self._held_rows = 0
        self._buffered_by_table: dict[str, int] = {}  # the writer's pending rows, as the thread last saw
        self._buffered = 0
        self._oldest_at: float | None = None  # clock() when the oldest unwritten row was accepted
        self._errors: deque[BaseException] = deque()  # raised to the caller, oldest first
        self._flush_asked = 0  # tickets: a flush asks n, the thread answers up to n
        self._flush_done = 0
        self._clean_through = 0  # the last ticket whose flush wrote everything before it
        self._room_waiters = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._thread_ident: int | None = None
        self._rows_written = 0
        self._rows_written_by_table: Counter[str] = Counter()
        self._blocks_written = 0
        self._insert_retries = 0
        self.below_the_tape = below_the_tape
        self.priority = WarehouseThreads()

    # -- the caller's side ---------------------------------------------------------------------

    def add(self, table: str, record: Record) -> None:
        self.add_many(table, (record,))

    def add_many(self, table: str, records: Iterable[Record]) -> None:
        records = list(records)
        if records:
            check_records(table, records)
            self._release_held_of(table)  # a table's rows are written in the order they were added
            self._put(table, records, len(records))

    def add_ticks(self, batch: TickBatch) -> None:
        """Trades and quotes as a column batch: the thread turns it into md_trades and md_quotes
        rows, several batches at a time (small ones are first held and joined here, see
        :data:`HOLD_BATCHES`)."""
        self._add_columns(_TICKS, batch)

    def add_raw(self, batch: RawTickBatch) -> None:
        """Raw ticks as a column batch: the thread turns it into md_raw rows."""
        self._add_columns(_RAW, batch)

    def _add_columns(self, kind: str, batch: TickBatch | RawTickBatch) -> None:
        """Queue a large batch as it is (after what is held of its kind); hold a small one."""
        works = _table_works(kind, batch)
        if len(batch) >= HOLD_BELOW_ROWS:
            self._release_held(kind)
            for table, rows, n in works:
                self._put(table, rows, n)
        elif len(batch):
            self._hold(kind, batch, {table: n for table, _, n in works})

    def add_arrow(self, table: str, arrow: pa.Table) -> None:
        """Rows in ``table``'s Arrow form (:mod:`sinks.columns`); checked here, as the plain writer does."""
        self.writer.check_arrow(table, arrow)
        if arrow.num_rows:
            self._release_held_of(table)
            self._put(table, arrow, arrow.num_rows)

    def flush(self) -> int:
        """Return once every row added before this call is written; the rows the thread wrote
        meanwhile. Raises the pending error, or the error of this flush, in the caller's thread."""
        self._release_held()
        with self._cond:
            self._raise_pending()
            before = self._rows_written
            while True:
                self._ensure_thread()
                self._flush_asked += 1
                ticket = self._flush_asked
                self._cond.notify_all()
                while self._flush_done < ticket:
                    self._cond.wait()
                if self._clean_through >= ticket:
                    return self._rows_written - before
                self._raise_pending()  # else another caller took this flush's error: ask again

    def close(self) -> None:
        """Flush, then stop the thread and give the BatchingWriter back to its owner, even if the
        flush raised (its failed block stays pending there). A later add starts a new thread."""
        try:
            self.flush()
        finally:
            with self._cond:
                thread = self._thread
                self._stopping = True
                self._cond.notify_all()
            if thread is not None and thread is not threading.current_thread():
                thread.join()
            with self._cond:
                if self._thread is thread:
                    self._thread, self._thread_ident = None, None
                    self.writer.lend(None)
                self._stopping = False

    def due(self) -> bool:
        """True when an error waits to be raised (call ``flush()``), or when rows wait that the size
        or age bound has made due (the thread is writing them; ``flush()`` would wait for it). The age
        is that of the oldest row not yet written, of any table."""
        with self._cond:
            if self._errors:
                return True
            pending = self._pending()
            if not pending:
                return False
            return (self._a_table_is_full()
                    or self._oldest_at is not None and self.writer.clock() - self._oldest_at >= self.writer.max_age_s)

    # -- counters (any thread) -----------------------------------------------------------------

    @property
    def pending_rows(self) -> int:
        """Rows accepted and not yet written: queued here, buffered in the writer or in a failed block."""
        with self._cond:
            return self._pending()

    def pending_by_table(self) -> dict[str, int]:
        with self._cond:
            counts = self._queued_by_table + self._held_by_table + Counter(self._buffered_by_table)
            return {t: n for t, n in counts.items() if n}

    @property
    def rows_written(self) -> int:
        with self._cond:
            return self._rows_written

    @property
    def rows_written_by_table(self) -> Counter[str]:
        with self._cond:
            return Counter(self._rows_written_by_table)

    @property
    def blocks_written(self) -> int:
        with self._cond:
            return self._blocks_written

    @property
    def insert_retries(self) -> int:
        with self._cond:
            return self._insert_retries

    @property
    def failed(self) -> bool:
        """Whether an error of the thread waits to be raised by the next add, flush or close."""
        with self._cond:
            return bool(self._errors)

    def is_own_thread(self) -> bool:
        """Whether the caller is this writer's thread (the one the BatchingWriter is lent to)."""
        return threading.get_ident() == self._thread_ident

    # -- internals -----------------------------------------------------------------------------

    def _put(self, table: str, rows: list[Record] | pa.Table, n: int) -> None:
        with self._cond:
            now, was_idle = self._admit(n)
            self._enqueue(table, rows, n, now)
            self._wake_if_due(was_idle)

    def _admit(self, n: int) -> tuple[float, bool]:
        """Under _cond, before accepting ``n`` rows: raise a pending error, wait for room. Returns
        (now, whether nothing was pending: the age clock starts now)."""
        self._raise_pending()
        self._ensure_thread()
        self._wait_for_room(n)
        was_idle = not self._pending()
        now = self.writer.clock()
        if was_idle:
            self._oldest_at = now
        return now, was_idle

    def _wake_if_due(self, was_idle: bool) -> None:
        """Under _cond: wake the thread only when it has something new to do: start the age clock, or
        write (taking what the caller holds too)."""
        if was_idle or self._pending() >= self.writer.max_rows:
            self._cond.notify_all()

    def _wait_for_room(self, n: int) -> None:
        """Under _cond: block while ``n`` more rows would pass the back-pressure bound."""
        while self._pending() and self._pending() + n > self.max_pending_rows:
            self._room_waiters += 1
            self._cond.notify_all()
            try:
                self._cond.wait()
            finally:
                self._room_waiters -= 1
            self._raise_pending()  # the thread failed while we waited: waiting on would be forever

    def _enqueue(self, table: str, rows: list[Record] | pa.Table | TickBatch | RawTickBatch, n: int,
                 accepted_at: float) -> None:
        self._queue.append(_Work(table, rows, n, accepted_at))
        self._queued += n
        self._queued_by_table[table] += n

    def _hold(self, kind: str, batch: TickBatch | RawTickBatch, rows_by_table: dict[str, int]) -> None:
        """Accept a column batch into the caller's hold; hand the hold over, joined, once full."""
        n = len(batch)
        with self._cond:
            now, was_idle = self._admit(n)
            held = self._held[kind]
            if not held:
                self._held_at[kind] = now
            held.append(batch)
            self._held_rows_of[kind] += n
            self._held_rows += n
            self._held_by_table.update(rows_by_table)
            full = len(held) >= HOLD_BATCHES or self._held_rows_of[kind] >= HOLD_ROWS
            self._wake_if_due(was_idle)
        if full:
            self._release_held(kind)

    def _release_held_of(self, table: str) -> None:
        kind = _RAW if table == "md_raw" else _TICKS if table in ("md_trades", "md_quotes") else None
        if kind is not None:
            self._release_held(kind)

    def _release_held(self, *kinds: str) -> None:
        """Join each held kind (all by default) into one batch, in the caller's thread, and queue it.
        The rows were accepted (and counted as pending) when held: nothing here refuses them."""
        for kind in kinds or (_TICKS, _RAW):
            with self._cond:
                batches = self._held[kind]
                if not batches:
                    continue
                self._held[kind] = []
                accepted_at = self._held_at.pop(kind)
            joined = _joined(kind, batches)  # outside the lock: the thread writes meanwhile
            with self._cond:
                self._unhold(kind, batches, joined, accepted_at)
                self._wake_if_due(False)

    def _unhold(self, kind: str, batches: list, joined: list[tuple[str, TickBatch | RawTickBatch, int]],
                accepted_at: float) -> None:
        """Under _cond: move joined held rows into the queue, with their counts; ``accepted_at``: when
        the oldest of them was held (the age bound counts from it)."""
        rows = sum(len(b) for b in batches)
        self._held_rows_of[kind] -= rows
        self._held_rows -= rows
        for table, batch, n in joined:
            self._held_by_table[table] -= n
            self._enqueue(table, batch, n, accepted_at)

    def _take_held(self) -> None:
        """Under _cond, in the thread: queue what the caller holds, unjoined (a write the age bound,
        or a caller waiting for room, made due while the caller added nothing more)."""
        for kind in (_TICKS, _RAW):
            batches = self._held[kind]
            if batches:
                self._held[kind] = []
                self._unhold(kind, batches, [work for batch in batches for work in _table_works(kind, batch)],
                             self._held_at.pop(kind))

    def _raise_pending(self) -> None:
        if self._errors:
            raise self._errors.popleft()

    def _ensure_thread(self) -> None:
        if self._thread is None:
            thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self.writer.lend(self)
            self._thread = thread
            thread.start()
            # the thread waits for _cond (held here) before it touches the writer
            self._thread_ident = thread.ident

    def _pending(self) -> int:
        return self._queued + self._held_rows + self._buffered

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # not expected; a caller must not wait for a dead thread
            with self._cond:
                self._errors.append(exc)
                self._flush_done = self._flush_asked
                self._thread, self._thread_ident = None, None
                self.writer.lend(None)
                self._cond.notify_all()

    def _loop(self) -> None:
        writer, clock = self.writer, self.writer.clock
        below_the_tape = self.below_the_tape
        if below_the_tape:
            self.priority.lower_self()
            self.priority.lower_new()
        priority_checked = clock()
        while True:
            with self._cond:
                while True:
                    # Everything when asked (an epoch's flush); on its own, only the tables that
                    # are due (sinks/writer.py: an insert's fixed cost), and for a caller waiting for
                    # room, those or, when none is, everything.
                    write = write_all = self._flush_asked > self._flush_done
                    if self._stopping:
                        break  # close() has flushed: no write of our own now, only the hand-over
                    wait_s = None
                    if not self._errors and self._pending():  # no insert of our own until an error is raised
                        age = clock() - self._oldest_at if self._oldest_at is not None else 0.0
                        due = self._a_table_is_full() or age >= writer.max_age_s or writer.due_in() == 0.0
                        write_all = write_all or (self._room_waiters > 0 and not due)
                        write = write_all or due or self._room_waiters > 0
                        wait_s = max(writer.max_age_s - age, 0.0)
                    if write:
                        break
                    self._cond.wait(timeout=wait_s)
                self._take_held()
                items = list(self._queue)
                self._queue.clear()
                ticket, stopping = self._flush_asked, self._stopping
            error = None
            try:
                accepted_at: dict[str, float] = {}
                for work in items:  # a table's age counts from its oldest row's hand-over, not from now
                    accepted_at[work.table] = min(accepted_at.get(work.table, work.accepted_at), work.accepted_at)
                for table, rows in _coalesced(items, writer.run_id):
                    writer.extend(table, rows, accepted_at.get(table))
                with self._cond:
                    for work in items:
                        self._queued -= work.rows_n
                        self._queued_by_table[work.table] -= work.rows_n
                    self._take_count(writer)
                if write:
                    if write_all:
                        writer.flush()
                    else:
                        writer.flush_due()
                    # ClickHouse starts pool threads as it needs them
                    if below_the_tape and clock() - priority_checked >= PRIORITY_CHECK_S:
                        self.priority.lower_new()
                        priority_checked = clock()
            except BaseException as exc:  # raised to the caller by the next flush, close or add
                error = exc
            with self._cond:
                self._take_count(writer)
                if error is not None:
                    self._errors.append(error)
                if ticket > self._flush_done:
                    if error is None:
                        self._clean_through = ticket
                    self._flush_done = ticket
                self._cond.notify_all()
                if stopping and not write and not self._queue:
                    return  # close() flushed first; what came after stays in the writer for its owner

    def _take_count(self, writer: BatchingWriter) -> None:
        """Copy the writer's counters (it is this thread's alone) for readers; under _cond."""
        self._buffered_by_table = writer.pending_by_table()
        self._buffered = sum(self._buffered_by_table.values())
        self._rows_written = writer.rows_written
        self._rows_written_by_table = Counter(writer.rows_written_by_table)
        self._blocks_written = writer.blocks_written
        self._insert_retries = writer.insert_retries
        if not self._pending():
            self._oldest_at = None
        else:  # rows queued during a write start their own age, not the written rows'
            buffered = writer.oldest_opened_at()  # a table that was not due stays buffered, with its age
            self._oldest_at = min([*self._held_at.values(), *([self._queue[0].accepted_at] if self._queue else []),
                                   *([buffered] if buffered is not None else [])], default=self._oldest_at)

    def _a_table_is_full(self) -> bool:
        """Under _cond: whether a table's queued and buffered rows fill a block."""
        buffered, limit = self._buffered_by_table, self.writer.max_rows
        return any(n + buffered.get(table, 0) >= limit for table, n in self._queued_by_table.items() if n) or any(
            n >= limit for n in buffered.values())


def _table_works(kind: str, batch: TickBatch | RawTickBatch) -> list[tuple[str, TickBatch | RawTickBatch, int]]:
    """``(table, batch, rows of table)`` for each table ``batch`` has rows of, as its puts queue it."""
    if kind == _RAW:
        return [("md_raw", batch, len(batch))]
    trades = int(np.count_nonzero(batch.kind == TRADE))
    return [(t, batch, n) for t, n in (("md_trades", trades), ("md_quotes", len(batch) - trades)) if n]


def _joined(kind: str, batches: list) -> list[tuple[str, TickBatch | RawTickBatch, int]]:
    """Held batches of ``kind`` as the works of one joined batch (of a run per dictionary, for raw)."""
    if kind == _RAW:
        return [work for run in _raw_runs(batches) for work in _table_works(_RAW, run)]
    return _table_works(_TICKS, concat_tick_batches(batches))


def _tick_tables_of(batch: TickBatch) -> set[str]:
    trades = int(np.count_nonzero(batch.kind == TRADE))
    return {t for t, n in (("md_trades", trades), ("md_quotes", len(batch) - trades)) if n}


def _coalesced(items: list[_Work], run_id: str) -> list[tuple[str, list[Record] | pa.Table]]:
    """The queued work as rows per table, each table's rows in the order they were added: every run
    of consecutive column batches of a table becomes one Arrow conversion (a TickBatch queued for
    md_trades and md_quotes is converted once, for both).

    The work is first grouped by table (a stable sort, md_trades and md_quotes as one group since a
    TickBatch is queued for both), so what other tables added in between does not cut a table's run:
    a paced feed hands over ~10 rows a millisecond, each hand-over with a few records of other tables,
    and converting every hand-over alone (some twenty Arrow and Polars calls each) cost this thread
    more than the tape's own time at 10,000 ticks/s, so the queue, and the epoch's wait for it, grew
    without end. The order between tables does not matter: each has its own blocks."""
    items = sorted(items, key=_table_group)
    out: list[tuple[str, list[Record] | pa.Table]] = []
    i = 0
    while i < len(items):
        rows = items[i].rows
        if type(rows) is TickBatch:
            # A batch is queued once per table it has rows of, and the two puts may fall into two
            # takes of the queue: each take lands only the tables it holds the batch for.
            batches: dict[int, TickBatch] = {}
            by_table: dict[str, dict[int, TickBatch]] = {"md_trades": {}, "md_quotes": {}}
            while i < len(items) and type(items[i].rows) is TickBatch:
                batch = items[i].rows
                batches.setdefault(id(batch), batch)
                by_table[items[i].table].setdefault(id(batch), batch)
                i += 1
            if all(_tick_tables_of(b) == {t for t, queued in by_table.items() if key in queued}
                   for key, b in batches.items()):  # the usual take: every table of each batch, converted once
                out.extend(tick_tables(concat_tick_batches(batches.values()), run_id).items())
            else:
                for table, queued in by_table.items():
                    if queued:
                        out.append((table, tick_tables(concat_tick_batches(queued.values()), run_id)[table]))
        elif type(rows) is RawTickBatch:
            run: list[RawTickBatch] = []
            while i < len(items) and type(items[i].rows) is RawTickBatch:
                run.append(items[i].rows)
                i += 1
            out.extend(("md_raw", raw_table(batch, run_id)) for batch in _raw_runs(run))
        else:
            out.append((items[i].table, rows))
            i += 1
    return out


def _table_group(work: _Work) -> str:
    return "md_trades" if work.table == "md_quotes" else work.table


def _raw_runs(batches: list[RawTickBatch]) -> list[RawTickBatch]:
    """Consecutive RawTickBatches joined, one per run of the same source and symbol dictionary (a
    feed's batches all share them), rows in order."""
    out: list[RawTickBatch] = []
    start = 0
    for end in range(1, len(batches) + 1):
        if end == len(batches) or (batches[end].source, batches[end].symbols) != (batches[start].source,
                                                                                   batches[start].symbols):
            out.append(_join_raw(batches[start:end]))
            start = end
    return out


def _join_raw(batches: list[RawTickBatch]) -> RawTickBatch:
    if len(batches) == 1:
        return batches[0]
    first = batches[0]
    columns = {f.name: np.concatenate([getattr(b, f.name) for b in batches])
               for f in fields(RawTickBatch) if f.name not in RawTickBatch._PER_BATCH}
    return RawTickBatch(source=first.source, symbols=first.symbols, watermark=None, **columns,
                        **concat_trade_ids(batches))
