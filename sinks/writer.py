"""Batches records per table and writes them columnar, with retries that never drop or double a batch.

Life of a row: ``add`` appends it to its table's open buffer. ``flush`` seals each buffer into
blocks of at most ``max_rows`` (converted to Arrow once, and given a unique insert deduplication
token), then inserts the blocks in order. A block leaves the pending list only after its insert
succeeded; on error it is retried with exponential backoff (``backoff_s``, doubling, ``retries``
times), and after the last retry :class:`WarehouseWriteError` is raised with the block still pending,
so nothing is dropped silently: a later ``flush`` tries the same block again.

Why a retry cannot write a block twice, even after an ambiguous error (the server applied the
insert but the reply was lost): the retry reuses the block's ``insert_deduplication_token`` and every
table (and the OHLCV materialized-view target) has ``non_replicated_deduplication_window`` set, so the
server drops the second copy. The token lives only in this process: if the process dies between an
ambiguous insert and its retry, the rows are written again on resume. The ReplacingMergeTree tables
(orders, reports, positions, P&L, bars, features, signals, dlq) still read once under FINAL; the plain
MergeTree market-data tables (md_raw, md_trades, md_quotes) and the 1m OHLCV sums could then hold a
duplicate, visible as ``count() > uniqExact(id)`` and removable with ``LIMIT 1 BY id``.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

import pyarrow as pa

from schemas import Record
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
    records: list[Record] = field(default_factory=list)
    opened_at: float = 0.0  # clock() when the first record arrived in the empty buffer


@dataclass(frozen=True)
class _Block:
    table: str
    arrow_table: pa.Table
    token: str  # reused on every retry of this block


class BatchingWriter:
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
    ):
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

    # -- buffering ---------------------------------------------------------------------------------

    def add(self, table: str, record: Record) -> None:
        self.add_many(table, (record,))

    def add_many(self, table: str, records: Iterable[Record]) -> None:
        records = list(records)
        if not records:
            return
        model = layout(table).model  # an unknown table fails here, at the caller, not at flush
        strangers = {type(r).__name__ for r in records if type(r) is not model}
        if strangers:
            raise TypeError(f"table {table} takes {model.__name__} records, not {', '.join(sorted(strangers))}")
        buffer = self._buffers.get(table)
        if buffer is None:
            buffer = self._buffers[table] = _Buffer()
        if not buffer.records:
            buffer.opened_at = self._clock()
        buffer.records.extend(records)

    @property
    def pending_rows(self) -> int:
        open_rows = sum(len(b.records) for b in self._buffers.values())
        return open_rows + sum(block.arrow_table.num_rows for block in self._sealed)

    def pending_by_table(self) -> dict[str, int]:
        counts: Counter[str] = Counter({t: len(b.records) for t, b in self._buffers.items() if b.records})
        for block in self._sealed:
            counts[block.table] += block.arrow_table.num_rows
        return dict(counts)

    def due(self) -> bool:
        """True when some table's buffer is full or its oldest row has waited ``max_age_s``, or a
        block from a failed flush is still waiting."""
        if self._sealed:
            return True
        now = self._clock()
        return any(
            b.records and (len(b.records) >= self.max_rows or now - b.opened_at >= self.max_age_s)
            for b in self._buffers.values()
        )

    # -- writing -----------------------------------------------------------------------------------

    def flush(self) -> int:
        """Write every pending row; returns the rows written now. Raises WarehouseWriteError."""
        self._seal_all()
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

    def _seal_all(self) -> None:
        for table, buffer in self._buffers.items():
            records = buffer.records
            if not records:
                continue
            # Convert before clearing: if conversion raises, the rows stay in the open buffer.
            blocks = [
                _Block(table, layout(table).to_arrow(records[i:i + self.max_rows], self.run_id), self._new_token(table))
                for i in range(0, len(records), self.max_rows)
            ]
            self._sealed.extend(blocks)
            buffer.records = []

    def _new_token(self, table: str) -> str:
        return f"{self.run_id}/{table}/{uuid.uuid4().hex}"

    def _insert_with_retries(self, block: _Block) -> None:
        attempts = self.retries + 1
        for attempt in range(attempts):
            try:
                self._warehouse.insert_arrow(block.table, block.arrow_table, dedup_token=block.token)
                return
            except Exception as exc:  # any failure is retried: the token makes a retry safe
                if attempt == attempts - 1:
                    raise WarehouseWriteError(block.table, block.arrow_table.num_rows, attempts, exc) from exc
                self.insert_retries += 1
                self._sleep(self.backoff_s * (2 ** attempt))
