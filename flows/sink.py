"""The warehouse as a Bytewax sink: every topic lands in its ClickHouse table.

Items are ``(table, value)`` pairs, where the value is

- a record of the table's model (``("md_bars", bar)``), as every stage emits them;
- a :class:`~schemas.columns.TickBatch` tagged ``md_trades`` or ``md_quotes`` (either: its trades
  land in ``md_trades`` and its quotes in ``md_quotes``, see :func:`sinks.columns.tick_tables`);
- a :class:`~schemas.columns.RawTickBatch` tagged ``md_raw`` (:func:`sinks.columns.raw_table`);
- a ``pyarrow.Table`` already in the table's Arrow form.

A value of another kind, or a batch under another table, fails the dataflow with the reason.

Rows go to a :class:`sinks.background.BackgroundWriter`: ``write_batch`` hands them over and
returns, and the writer's thread converts, batches (size and age bounds) and inserts, so the
dataflow thread does not wait for ClickHouse. The sink takes either a BackgroundWriter or a plain
:class:`sinks.writer.BatchingWriter`, which it wraps (the callers keep the writer they made and may
``flush()`` it after the run: that takes it back from the thread with every row written, even when
the dataflow aborted and never closed its sink). A full writer queue blocks ``write_batch``: that is
the back-pressure that keeps a slow warehouse from filling memory.

Recovery: ``snapshot()``, which Bytewax calls at the end of each epoch before it commits recovery
state, waits until every row handed over so far is written (and raises a failed insert), so a crash
can never leave a committed epoch whose rows were not written. A flow without recovery commits
nothing, yet Bytewax still calls ``snapshot()`` every epoch: while ``epoch_barrier`` is false (the
flow's :class:`flows.stateful.FlowRecovery` mark, which ``run_flow`` clears for a run without a
recovery directory) the sink does not wait there, since the wait stops the whole dataflow (no tick is read) while
ClickHouse writes an epoch's rows (measured: p50 0.8 s of every 2 s epoch at 10,000 ticks/s); the
writer's thread keeps writing by its size and age bounds, ``close()`` still writes everything, and
a failed insert is still raised, by the next ``write_batch``. Rows written after the last commit
may be written again on resume; the money tables are ReplacingMergeTree on record ids, so they never
double-count. A failed insert of the thread's own is raised by the next ``write_batch`` already.

Alerts: with an :class:`sinks.alerts.AlertMonitor`, the control and dlq records of each batch go
through its rules, and the alerts they raise land in the control table beside them (alerts raised
outside the tape land at the next batch or epoch end).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from schemas import Record
from schemas.columns import TRADE, RawTickBatch, TickBatch
from sinks.alerts import AlertMonitor
from sinks.background import BackgroundWriter
from sinks.metrics import RecordMetrics
from sinks.writer import BatchingWriter

TICK_TABLES = ("md_trades", "md_quotes")


ALERTING_TABLES = ("control", "dlq")  # what sinks.alerts.AlertRules decides on


class _WarehousePartition(StatefulSinkPartition[tuple[str, Any], None]):
    def __init__(self, writer: BackgroundWriter, counter: Any | None, alerts: AlertMonitor | None = None,
                 metrics: RecordMetrics | None = None, epoch_barrier: Any = True):
        self._writer = writer
        self._epoch_barrier = epoch_barrier
        self._counter = counter
        self._alerts = alerts
        self._metrics = metrics

    def write_batch(self, values: list[tuple[str, Any]]) -> None:
        writer = self._writer
        records: dict[str, list[Record]] = {}  # runs of records per table, kept in order with the Arrow rows
        counts: Counter[str] = Counter()

        def add_records(table: str, run: list[Record]) -> None:
            writer.add_many(table, run)  # a record of another model fails here, with the reason
            counts[table] += len(run)
            if self._metrics is not None:
                self._metrics.observe(table, run)
            if self._alerts is not None and table in ALERTING_TABLES:
                raised = self._alerts.observe(run)
                if raised:
                    writer.add_many("control", raised)
                    counts["control"] += len(raised)

        def add_arrow(table: str, arrow: pa.Table) -> None:
            if table in records:
                add_records(table, records.pop(table))
            writer.add_arrow(table, arrow)
            counts[table] += arrow.num_rows

        for table, value in values:
            kind = type(value)
            if kind is TickBatch:
                if table not in TICK_TABLES:
                    raise TypeError(f"a TickBatch lands in {' and '.join(TICK_TABLES)}, not in {table}")
                for tick_table in TICK_TABLES:
                    if tick_table in records:
                        add_records(tick_table, records.pop(tick_table))
                writer.add_ticks(value)  # the writer thread makes its Arrow rows
                trades = int(np.count_nonzero(value.kind == TRADE))
                counts["md_trades"] += trades
                counts["md_quotes"] += len(value) - trades
            elif kind is RawTickBatch:
                if table != "md_raw":
                    raise TypeError(f"a RawTickBatch lands in md_raw, not in {table}")
                if table in records:
                    add_records(table, records.pop(table))
                writer.add_raw(value)
                counts[table] += len(value)
            elif kind is pa.Table:
                add_arrow(table, value)
            else:
                records.setdefault(table, []).append(value)
        for table, run in records.items():
            add_records(table, run)
        if self._counter is not None:
            for table, n in counts.items():
                self._counter.count_records(table, n)
        if self._metrics is not None:
            for table, n in counts.items():
                self._metrics.count(table, n)

    def snapshot(self) -> None:
        if self._alerts is not None:  # alerts raised outside the tape land at least once an epoch
            raised = self._alerts.pending()
            if raised:
                self._writer.add_many("control", raised)
        if self._epoch_barrier:
            self._writer.flush()
        return None

    def close(self) -> None:
        self._writer.close()


class WarehouseSink(FixedPartitionedSink[tuple[str, Any], None]):
    """One partition: one writer per process keeps inserts few and large. ``epoch_barrier`` (a bool,
    or an object whose truth is read at each snapshot: the flow's ``FlowRecovery``): each epoch's
    snapshot waits until the rows handed over are written; false only for a flow that runs without
    recovery (see the module docstring). ``below_the_tape``: the writer runs at a lower OS priority
    than the dataflow, for a flow whose process also runs the tape (the embedded one)."""

    PARTITION = "warehouse"

    def __init__(self, writer: BackgroundWriter | BatchingWriter, counter: Any | None = None,
                 alerts: AlertMonitor | None = None, metrics: RecordMetrics | None = None,
                 epoch_barrier: Any = True, below_the_tape: bool = False):
        self._writer = (writer if isinstance(writer, BackgroundWriter)
                        else BackgroundWriter(writer, below_the_tape=below_the_tape))
        self._epoch_barrier = epoch_barrier
        self._counter = counter
        self._alerts = alerts
        self._metrics = metrics

    def list_parts(self) -> list[str]:
        return [self.PARTITION]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _WarehousePartition:
        return _WarehousePartition(self._writer, self._counter, self._alerts, self._metrics, self._epoch_barrier)
