"""Batches records per table and writes them columnar, with retries that never drop or double a batch.

Life of a row: ``add`` appends it to its table's open buffer; ``add_arrow`` appends a table of rows
already in the table's Arrow form (:mod:`sinks.columns`), in the same buffer and in the same order.
``flush`` seals each buffer into blocks of at most ``max_rows`` (records converted to Arrow once, then
every piece concatenated in order and cut; each block given a unique insert deduplication token),
then inserts the blocks in order. ``flush_due`` does the same for the buffers that are due only (full,
or holding a row that has waited ``max_age_s``): a writer that lands on its own when one table fills
(:class:`sinks.background.BackgroundWriter`) does not also land a few hundred rows of every other table
each time. Each insert has a fixed cost (on this machine ~4 ms, and ~10 ms with a token, whose
deduplication log ClickHouse syncs to disk): in a replay of a million ticks the bars and features went
in 11 and 10 times for ~2,000 rows, a quarter of the writer's time. A block leaves the pending list
only after its insert succeeded; on error it is retried with exponential backoff (``backoff_s``,
doubling, ``retries`` times), and after the last retry :class:`WarehouseWriteError` is raised with the
block still pending, so nothing is dropped silently: a later ``flush`` tries the same block again.

Why a retry cannot write a block twice, even after an ambiguous error (the server applied the
insert but the reply was lost): the retry reuses the block's ``insert_deduplication_token`` and every
table (and the OHLCV materialized-view target) has ``non_replicated_deduplication_window`` set, so the
server drops the second copy. The token lives only in this process: if the process dies between an
ambiguous insert and its retry, the rows are written again on resume. The ReplacingMergeTree tables
(orders, reports, positions, P&L, bars, features, signals, dlq) still read once under FINAL; the plain
MergeTree market-data tables (md_raw, md_trades, md_quotes) are guarded by the writer itself: it seals
no tick row whose id the run's table already holds (:mod:`sinks.landed`, a window of the last 500,000
ids per table, seeded from the table when the writer starts), so neither that nor a stage that
produced its ticks again after a restart puts a tick twice in them or in the 1m OHLCV sums.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

import pyarrow as pa

from schemas import Record
from sinks.landed import LandedTicks, recent_ids_of
from sinks.metrics import INSERT_SECONDS
from sinks.rows import layout


class ArrowInserter(Protocol):
    def insert_arrow(self, table: str, arrow_table: pa.Table, *, dedup_token: str | None = None) -> int: ...


class WarehouseWriteError(RuntimeError):
    """A block could not be inserted after every retry; it is still pending in the writer."""

    def __init__(self, table: str, rows: int, attempts: int, cause: BaseException):
        super().__init__(
            f"insert into {table} of {rows} rows failed after {attempts} attempts: "
            f"{type(cause).__name__}: {cause}"
        )
        self.table = table
        self.rows = rows
        self.attempts = attempts
        self.cause = cause


@dataclass
class _Buffer:
    # in arrival order: runs of records (still to convert) and Arrow tables (already converted)
    parts: list[list[Record] | pa.Table] = field(default_factory=list)
    rows: int = 0
    opened_at: float = 0.0  # clock() when the first row arrived in the empty buffer


@dataclass(frozen=True)
class _Block:
    table: str
    arrow_table: pa.Table
    token: str  # reused on every retry of this block


class Borrower(Protocol):
    """Who a writer is lent to (:class:`sinks.background.BackgroundWriter`): the thread that may use it."""

    def is_own_thread(self) -> bool: ...

    def close(self) -> None: ...


class BatchingWriter:
    """Not thread-safe: one thread uses it at a time. While it is lent to a
    :class:`sinks.background.BackgroundWriter` (:meth:`lend`), only that writer's thread does; a call
    from any other thread first takes it back (the background writer writes everything it was given
    and stops its thread), so an owner's ``flush()`` after a run still writes every row."""

    def __init__(
        self,
        warehouse: ArrowInserter,
        run_id: str,
        max_rows: int = 50_000,
        max_age_s: float = 1.0,
        retries: int = 5,
        backoff_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = time.sleep,
        landed: LandedTicks | None = None,
        replays: bool = True,
    ):
        """``landed``: the tick ids this run's tables hold (:mod:`sinks.landed`); by default seeded
        from ``warehouse`` when it can be queried. ``replays``: whether ticks this run wrote can come
        to it again (a run resumed from recovery snapshots, a split sink whose upstream stages
        resume); False (an embedded run without recovery, which nothing replays) keeps no window."""
        if max_rows < 1 or retries < 0 or max_age_s < 0 or backoff_s < 0:
            raise ValueError("max_rows must be >= 1; retries, max_age_s and backoff_s must be >= 0")
        self._warehouse = warehouse
        self.run_id = run_id
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._clock = clock
        self._sleep = sleep
        self._buffers: dict[str, _Buffer] = {}
        self._sealed: list[_Block] = []  # blocks whose insert has not succeeded yet, in order
        self.rows_written = 0
        self.rows_written_by_table: Counter[str] = Counter()
        self.blocks_written = 0
        self.insert_retries = 0
        self._borrower: Borrower | None = None
        self._arrow_schemas: dict[str, pa.Schema] = {}
        self.landed = landed if landed is not None else LandedTicks(recent_ids_of(warehouse, run_id), enabled=replays)

    # -- lending -----------------------------------------------------------------------------------

    def lend(self, borrower: Borrower | None) -> None:
        """Lend this writer to ``borrower``'s thread (None: the owner has it back)."""
        if borrower is not None and self._borrower is not None and self._borrower is not borrower:
            raise RuntimeError(f"writer of run {self.run_id} is already lent to another background writer")
        self._borrower = borrower

    def _reclaim(self) -> None:
        borrower = self._borrower
        if borrower is not None and not borrower.is_own_thread():
            borrower.close()  # writes what it holds, stops its thread and calls lend(None)

    # -- buffering ---------------------------------------------------------------------------------

    def add(self, table: str, record: Record) -> None:
        self.add_many(table, (record,))

    def add_many(self, table: str, records: Iterable[Record]) -> None:
        self._reclaim()
        records = list(records)
        if records:
            check_records(table, records)
            self.extend(table, records)

    def add_arrow(self, table: str, arrow: pa.Table) -> None:
        """Buffer rows already in ``table``'s Arrow form (its layout's schema, this writer's run_id);
        a table of another form fails here, at the caller."""
        self._reclaim()
        self.check_arrow(table, arrow)
        self.extend(table, arrow)

    def extend(self, table: str, rows: list[Record] | pa.Table, accepted_at: float | None = None) -> None:
        """Buffer rows already checked by :func:`check_records` or :meth:`check_arrow` (a
        background writer checks them in its caller's thread, and does not pay for it twice). A
        list of records becomes the writer's: the caller must not change it afterwards.
        ``accepted_at``: when (this writer's clock) the oldest of these rows was accepted, if
        earlier than now: the age bound counts from there."""
        self._reclaim()
        if type(rows) is list:
            if rows:
                buffer = self._open(table, len(rows), accepted_at)
                if buffer.parts and type(buffer.parts[-1]) is list:
                    buffer.parts[-1].extend(rows)
                else:
                    buffer.parts.append(rows)
        elif rows.num_rows:
            self._open(table, rows.num_rows, accepted_at).parts.append(rows)

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    def check_arrow(self, table: str, arrow: pa.Table) -> None:
        """Raise TypeError unless ``arrow`` has ``table``'s layout schema and this writer's run_id."""
        expected = self._arrow_schemas.get(table)
        if expected is None:
            expected = self._arrow_schemas[table] = layout(table).to_arrow([], self.run_id).schema
        if not arrow.schema.equals(expected, check_metadata=False):
            got = {f.name: str(f.type) for f in arrow.schema}
            want = {f.name: str(f.type) for f in expected}
            diff = {n: (got.get(n, "missing"), want.get(n, "not a column")) for n in {*got, *want} if got.get(n) != want.get(n)}
            detail = (", ".join(f"{n}: {g} (expected {w})" for n, (g, w) in sorted(diff.items())) if diff
                      else f"column order {list(got)}, expected {list(want)}")
            raise TypeError(f"Arrow rows for {table} do not have its layout's schema: {detail}")
        runs = {v for chunk in arrow.column("run_id").chunks for v in chunk.dictionary.to_pylist()}
        if arrow.num_rows and runs != {self.run_id}:
            raise TypeError(f"Arrow rows for {table} are of run {sorted(map(str, runs))}, this writer writes run {self.run_id}")

    def _open(self, table: str, rows: int, accepted_at: float | None = None) -> _Buffer:
        buffer = self._buffers.get(table)
        if buffer is None:
            buffer = self._buffers[table] = _Buffer()
        if not buffer.rows:
            buffer.opened_at = self._clock() if accepted_at is None else min(accepted_at, self._clock())
        buffer.rows += rows
        return buffer

    @property
    def pending_rows(self) -> int:
        self._reclaim()
        open_rows = sum(b.rows for b in self._buffers.values())
        return open_rows + sum(block.arrow_table.num_rows for block in self._sealed)

    def pending_by_table(self) -> dict[str, int]:
        self._reclaim()
        counts: Counter[str] = Counter({t: b.rows for t, b in self._buffers.items() if b.rows})
        for block in self._sealed:
            counts[block.table] += block.arrow_table.num_rows
        return dict(counts)

    def due(self) -> bool:
        """True when some table's buffer is full or its oldest row has waited ``max_age_s``, or a
        block from a failed flush is still waiting."""
        self._reclaim()
        return self.due_in() == 0.0

    def due_in(self) -> float | None:
        """Seconds (of this writer's clock) until :meth:`due` turns true: 0.0 when it is, None when
        nothing is pending."""
        if self._sealed:
            return 0.0
        now = self._clock()
        waits = [self._wait(b, now) for b in self._buffers.values() if b.rows]
        return min(waits, default=None)

    def _wait(self, buffer: _Buffer, now: float) -> float:
        return 0.0 if buffer.rows >= self.max_rows else max(0.0, self.max_age_s - (now - buffer.opened_at))

    def oldest_opened_at(self) -> float | None:
        """When (this writer's clock) the oldest row still buffered was accepted; None when no
        buffer holds rows."""
        return min((b.opened_at for b in self._buffers.values() if b.rows), default=None)

    # -- writing -----------------------------------------------------------------------------------

    def flush(self, token: str | None = None) -> int:
        """Write every pending row; returns the rows written now. Raises WarehouseWriteError.

        ``token``: the name of what is pending now, for a caller that can write the same rows again
        after its process died (the consumer-group sink names a batch by its Kafka offsets): each
        block's insert token is ``{token}/{table}/{n}``, the same on every attempt of the same rows
        in the same blocks, so the server drops the copy. Default: a fresh token per block."""
        self._reclaim()
        self._seal_all(token)
        return self._insert_sealed()

    def flush_due(self) -> int:
        """Write the tables that are due (:meth:`due_in`: a full buffer, or one whose oldest row has
        waited ``max_age_s``) and any block a failed flush left; the other tables' rows stay
        buffered, and so do the rows of a full table past its last whole block (with the age of the
        buffer's oldest row, so they are never held longer). Returns the rows written now. Raises
        WarehouseWriteError."""
        self._reclaim()
        now = self._clock()
        due = [t for t, b in self._buffers.items() if b.rows and self._wait(b, now) == 0.0]
        # a table due by size only lands whole blocks: its remainder would be one more small insert
        by_size = frozenset(t for t in due if now - self._buffers[t].opened_at < self.max_age_s)
        self._seal_all(None, due, by_size)
        return self._insert_sealed()

    def _insert_sealed(self) -> int:
        written = 0
        while self._sealed:
            block = self._sealed[0]
            self._insert_with_retries(block)
            self._sealed.pop(0)  # only after success: a failed block stays first in line
            rows = block.arrow_table.num_rows
            written += rows
            self.rows_written += rows
            self.rows_written_by_table[block.table] += rows
            self.blocks_written += 1
        return written

    def close(self) -> None:
        self.flush()


    def _seal_all(self, token: str | None = None, tables: list[str] | None = None,
                  whole_blocks: frozenset[str] = frozenset()) -> None:
        """Seal the buffers of ``tables`` (None: every table); of a table in ``whole_blocks``, only
        whole blocks of ``max_rows``, the rest staying buffered with its age."""
        for table, buffer in self._buffers.items():
            if not buffer.rows or tables is not None and table not in tables:
                continue
            # Convert before clearing: if conversion raises, the rows stay in the open buffer.
            to_arrow = layout(table).to_arrow
            pieces = [to_arrow(part, self.run_id) if type(part) is list else part for part in buffer.parts]
            rows = pieces[0] if len(pieces) == 1 else pa.concat_tables(pieces)
            # A named block (``token``) must hold the same rows whoever writes it again: its token is
            # what keeps it once, in the table and in the views fed from it (a block that landed in
            # md_trades but not yet in the OHLCV view when its writer died is completed by its
            # retry; taking its landed rows out would leave the view short). So the landed-tick
            # window guards only blocks with fresh tokens.
            blocks = []
            sealed = rows.num_rows - rows.num_rows % self.max_rows if table in whole_blocks else rows.num_rows
            for i in range(0, sealed, self.max_rows):
                block = rows.slice(i, self.max_rows)
                if token is None:
                    block = self.landed.drop_landed(table, block)
                if block.num_rows:
                    # one chunk per block (and one run_id dictionary): ClickHouse reads it as one Arrow batch
                    blocks.append(_Block(table, block.combine_chunks(), self._new_token(table) if token is None
                                         else f"{token}/{table}/{i // self.max_rows}"))
            self._sealed.extend(blocks)
            kept = rows.num_rows - sealed
            # The rows kept are copied out: a slice would pin every column buffer it was cut from (up to
            # a feed read's whole batch) until the next seal, however few rows it holds.
            buffer.parts, buffer.rows = ([rows.take(pa.array(range(sealed, rows.num_rows)))], kept) if kept else ([], 0)

    def _new_token(self, table: str) -> str:
        return f"{self.run_id}/{table}/{uuid.uuid4().hex}"

    def _insert_with_retries(self, block: _Block) -> None:
        attempts = self.retries + 1
        started = time.monotonic()
        for attempt in range(attempts):
            try:
                self._warehouse.insert_arrow(block.table, block.arrow_table, dedup_token=block.token)
                INSERT_SECONDS.labels(block.table).observe(time.monotonic() - started)
                return
            except Exception as exc:  # any failure is retried: the token makes a retry safe
                if attempt == attempts - 1:
                    raise WarehouseWriteError(block.table, block.arrow_table.num_rows, attempts, exc) from exc
                self.insert_retries += 1
                self._sleep(self.backoff_s * (2 ** attempt))


def check_records(table: str, records: list[Record]) -> None:
    """Raise unless ``table`` exists (KeyError) and every record is of its model (TypeError)."""
    model = layout(table).model  # an unknown table fails here, at the caller, not at flush
    strangers = {type(r).__name__ for r in records if type(r) is not model}
    if strangers:
        raise TypeError(f"table {table} takes {model.__name__} records, not {', '.join(sorted(strangers))}")
