"""The warehouse writer thread: adds return at once, flush waits, failures surface, back-pressure holds.

Every call that could block runs in a helper thread joined with a generous guard, so a wrong
implementation fails the test instead of hanging it; no assertion depends on how fast anything is.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import pyarrow as pa
import pytest

from schemas.columns import TickBatch
from sinks.background import BackgroundWriter, _Work, _coalesced
from sinks.columns import tick_tables
from sinks.writer import BatchingWriter, WarehouseWriteError
from tests.unit.sinks.records import fill, one_of_each, trade

GUARD_S = 20.0  # only ever waited out by a broken implementation


class GatedWarehouse:
    """An inserter that can be held shut (``gate``) and made to fail its next ``failures`` inserts."""

    def __init__(self, failures: int = 0):
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # set when an insert has begun
        self.failures = failures
        self.attempts: list[tuple[str, int, str | None]] = []
        self.written: list[tuple[str, pa.Table, str | None]] = []
        self.threads: set[str] = set()

    def insert_arrow(self, table, arrow_table, *, dedup_token=None):
        self.threads.add(threading.current_thread().name)
        self.attempts.append((table, arrow_table.num_rows, dedup_token))
        self.entered.set()
        assert self.gate.wait(GUARD_S), "insert held shut past the guard"
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("connection reset by peer")
        self.written.append((table, arrow_table, dedup_token))
        return arrow_table.num_rows

    def ids(self, table: str) -> list[str]:
        return [i for t, block, _ in self.written if t == table for i in block.column("id").to_pylist()]


class Call:
    """``fn()`` in a thread of its own, to watch whether it blocks."""

    def __init__(self, fn: Callable[[], Any]):
        self.value: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn):
        try:
            self.value = fn()
        except BaseException as exc:
            self.error = exc

    def still_blocked(self, wait_s: float = 0.3) -> bool:
        self.thread.join(wait_s)
        return self.thread.is_alive()

    def result(self) -> Any:
        self.thread.join(GUARD_S)
        assert not self.thread.is_alive(), "call still blocked past the guard"
        if self.error is not None:
            raise self.error
        return self.value


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + GUARD_S
    while not condition():
        assert time.monotonic() < deadline, "condition not reached within the guard"
        time.sleep(0.001)


def make(warehouse, *, max_rows=1000, max_age_s=3600.0, retries=0, max_pending_rows=None):
    writer = BatchingWriter(warehouse, "run-1", max_rows=max_rows, max_age_s=max_age_s, retries=retries,
                            backoff_s=0.0)
    return writer, BackgroundWriter(writer, max_pending_rows=max_pending_rows)


@pytest.fixture
def closing():
    opened: list[BackgroundWriter] = []
    yield opened.append
    for background in opened:
        for writer in (background.writer,):
            writer._warehouse.gate.set()
            writer._warehouse.failures = 0
        try:
            background.close()
        except WarehouseWriteError:
            pass  # a test that left a failure behind has asserted on it already


def test_add_returns_while_an_insert_is_held_and_flush_waits_for_it(closing):
    warehouse = GatedWarehouse()
    _, background = make(warehouse, max_rows=2)
    closing(background)
    warehouse.gate.clear()
    background.add_many("md_trades", [trade(0), trade(1)])  # a full block: the thread inserts it
    assert warehouse.entered.wait(GUARD_S)

    assert Call(lambda: background.add("md_trades", trade(2))).result() is None  # not held by the insert
    flush = Call(background.flush)
    assert flush.still_blocked()

    warehouse.gate.set()
    flush.result()
    assert warehouse.ids("md_trades") == ["AAPL:t0", "AAPL:t1", "AAPL:t2"]
    assert background.pending_rows == 0 and background.rows_written_by_table == {"md_trades": 3}
    assert warehouse.threads == {"tapeflow-warehouse"}  # never the caller's thread


def test_the_thread_writes_a_full_block_on_its_own_without_a_flush(closing):
    warehouse = GatedWarehouse()
    _, background = make(warehouse, max_rows=3)
    closing(background)
    background.add_many("md_trades", [trade(i) for i in range(3)])
    wait_until(lambda: background.rows_written == 3)
    assert warehouse.ids("md_trades") == ["AAPL:t0", "AAPL:t1", "AAPL:t2"]


def test_the_thread_writes_rows_that_reached_the_age_bound_on_its_own(closing):
    warehouse = GatedWarehouse()
    _, background = make(warehouse, max_rows=1000, max_age_s=0.01)
    closing(background)
    background.add("exec_reports", fill("f-1"))
    wait_until(lambda: background.rows_written == 1)
    assert not background.due() and background.pending_rows == 0


def test_a_full_table_is_written_on_its_own_and_the_other_tables_wait_for_their_age_bound(closing):
    """An insert's fixed cost: a table that fills does not take every other table's few rows along."""
    warehouse = GatedWarehouse()
    _, background = make(warehouse, max_rows=3, max_age_s=0.5)
    closing(background)
    background.add("exec_reports", fill("f-1"))
    accepted = time.monotonic()
    background.add_many("md_trades", [trade(i) for i in range(3)])  # full: the thread writes it now
    wait_until(lambda: background.rows_written_by_table["md_trades"] == 3)
    assert background.rows_written_by_table["exec_reports"] == 0
    assert background.pending_by_table() == {"exec_reports": 1}
    # the fill's age counts from its own hand-over, not from the write that left it buffered
    wait_until(lambda: background.rows_written_by_table["exec_reports"] == 1)
    assert time.monotonic() - accepted < 0.5 + GUARD_S / 4
    assert [t for t, _, _ in warehouse.written] == ["md_trades", "exec_reports"]
    assert background.pending_rows == 0 and not background.due()


def test_a_flush_still_writes_every_table_at_once(closing):
    warehouse = GatedWarehouse()
    _, background = make(warehouse, max_rows=3)
    closing(background)
    background.add("exec_reports", fill("f-1"))
    background.add_many("md_trades", [trade(i) for i in range(4)])
    background.flush()
    assert background.rows_written_by_table == {"md_trades": 4, "exec_reports": 1}
    assert background.pending_rows == 0


def test_a_failed_insert_surfaces_from_flush_and_the_next_flush_writes_the_block_once(closing):
    warehouse = GatedWarehouse(failures=1)
    _, background = make(warehouse)
    closing(background)
    background.add_many("md_trades", [trade(0), trade(1)])

    with pytest.raises(WarehouseWriteError, match="md_trades of 2 rows") as raised:
        Call(background.flush).result()
    assert (raised.value.table, raised.value.rows) == ("md_trades", 2)
    assert background.pending_rows == 2 and background.rows_written == 0

    # the block is due again at once (no backoff here), so the thread may retry it on its own just before
    # this flush asks, and the flush then counts none of it: what matters is that it is written, once
    Call(background.flush).result()
    assert background.rows_written == 2 and background.pending_rows == 0
    assert warehouse.ids("md_trades") == ["AAPL:t0", "AAPL:t1"]
    assert len(warehouse.written) == 1
    assert len({token for _, _, token in warehouse.attempts}) == 1  # the retry reused the block's token


def test_a_failure_of_the_threads_own_write_is_raised_by_the_next_add_before_it_accepts_rows(closing):
    warehouse = GatedWarehouse(failures=1)
    _, background = make(warehouse, max_rows=2)
    closing(background)
    background.add_many("md_trades", [trade(0), trade(1)])
    wait_until(lambda: background.failed)  # the thread's insert failed; the error waits for the caller
    assert background.due()

    with pytest.raises(WarehouseWriteError, match="md_trades of 2 rows"):
        background.add("md_trades", trade(2))
    assert background.pending_rows == 2  # the failed block, not the refused row
    assert len(warehouse.attempts) == 1  # no insert of its own until the error was raised

    background.add("md_trades", trade(2))
    Call(background.flush).result()
    assert warehouse.ids("md_trades") == ["AAPL:t0", "AAPL:t1", "AAPL:t2"]


def test_an_add_past_the_bound_blocks_until_the_thread_has_written_room(closing):
    warehouse = GatedWarehouse()
    _, background = make(warehouse, max_rows=1000, max_pending_rows=3)
    closing(background)
    warehouse.gate.clear()
    background.add_many("md_trades", [trade(0), trade(1), trade(2)])  # at the bound: accepted

    held = Call(lambda: background.add("md_trades", trade(3)))
    assert held.still_blocked()
    assert warehouse.entered.wait(GUARD_S)  # a caller waiting for room makes the thread write now
    assert background.pending_rows == 3

    warehouse.gate.set()
    held.result()
    Call(background.flush).result()
    assert warehouse.ids("md_trades") == [f"AAPL:t{i}" for i in range(4)]


def test_an_add_larger_than_the_bound_goes_in_alone_when_nothing_is_pending(closing):
    warehouse = GatedWarehouse()
    _, background = make(warehouse, max_pending_rows=2)
    closing(background)
    Call(lambda: background.add_many("md_trades", [trade(i) for i in range(5)])).result()
    Call(background.flush).result()
    assert background.rows_written == 5


def test_a_waiting_add_raises_the_threads_failure_instead_of_waiting_forever(closing):
    warehouse = GatedWarehouse(failures=1)
    _, background = make(warehouse, max_pending_rows=2)
    closing(background)
    warehouse.gate.clear()
    background.add_many("md_trades", [trade(0), trade(1)])
    held = Call(lambda: background.add("md_trades", trade(2)))
    assert warehouse.entered.wait(GUARD_S)

    warehouse.gate.set()  # the insert fails
    with pytest.raises(WarehouseWriteError):
        held.result()


def test_blocks_of_each_table_are_written_in_the_order_added(closing):
    warehouse = GatedWarehouse()
    _, background = make(warehouse, max_rows=3)
    closing(background)
    expected_trades, expected_fills = [], []
    for i in range(40):
        background.add("md_trades", trade(i))
        expected_trades.append(f"AAPL:t{i}")
        if i % 3 == 0:
            background.add("exec_reports", fill(f"f-{i}"))
            expected_fills.append(f"er:f-{i}")
        if i % 7 == 0:
            arrow = tick_tables(TickBatch.from_records([trade(1000 + i)]), "run-1")["md_trades"]
            background.add_arrow("md_trades", arrow)
            expected_trades.append(f"AAPL:t{1000 + i}")
    Call(background.flush).result()

    assert warehouse.ids("md_trades") == expected_trades
    assert warehouse.ids("exec_reports") == expected_fills
    assert all(block.num_rows <= 3 for _, block, _ in warehouse.written)


def test_arrow_of_another_form_fails_at_the_caller_and_arrow_rows_are_counted(closing):
    warehouse = GatedWarehouse()
    _, background = make(warehouse)
    closing(background)
    tables = tick_tables(TickBatch.from_records([trade(0), trade(1)]), "run-1")
    with pytest.raises(TypeError, match="md_quotes"):
        background.add_arrow("md_quotes", tables["md_trades"])
    with pytest.raises(TypeError, match="takes ExecutionReport"):
        background.add("exec_reports", trade(0))

    background.add_arrow("md_trades", tables["md_trades"])
    assert background.pending_by_table() == {"md_trades": 2}
    Call(background.flush).result()
    assert background.rows_written_by_table == {"md_trades": 2} and background.blocks_written == 1


def test_close_writes_everything_and_stops_the_thread_and_a_later_add_starts_a_new_one(closing):
    warehouse = GatedWarehouse()
    writer, background = make(warehouse)
    closing(background)
    background.add("md_trades", trade(0))
    Call(background.close).result()
    assert warehouse.ids("md_trades") == ["AAPL:t0"]
    assert not any(t.name == "tapeflow-warehouse" for t in threading.enumerate())
    assert writer.flush() == 0  # the owner has its writer back, with nothing left in it

    background.add("md_trades", trade(1))
    Call(background.flush).result()
    assert warehouse.ids("md_trades") == ["AAPL:t0", "AAPL:t1"]


def test_the_owners_flush_of_a_lent_writer_takes_it_back_with_every_queued_row_written(closing):
    # an aborted dataflow never closes its sink; its owner flushes the BatchingWriter it passed in
    warehouse = GatedWarehouse()
    writer, background = make(warehouse)
    closing(background)
    background.add_many("md_trades", [trade(0), trade(1)])

    Call(writer.flush).result()

    assert warehouse.ids("md_trades") == ["AAPL:t0", "AAPL:t1"]
    assert writer.pending_rows == 0 and background.pending_rows == 0


def test_close_raises_a_failure_and_leaves_the_block_with_the_owner(closing):
    warehouse = GatedWarehouse(failures=1)
    writer, background = make(warehouse)
    closing(background)
    background.add("md_trades", trade(0))
    with pytest.raises(WarehouseWriteError):
        Call(background.close).result()

    assert writer.pending_rows == 1
    assert writer.flush() == 1 and warehouse.ids("md_trades") == ["AAPL:t0"]


def test_counters_read_from_another_thread_while_rows_are_written(closing):
    warehouse = GatedWarehouse()
    _, background = make(warehouse, max_rows=5)
    closing(background)
    stop, seen = threading.Event(), []

    def read():
        while not stop.is_set():
            seen.append((background.pending_rows, sum(background.rows_written_by_table.values()),
                         background.pending_by_table(), background.due()))

    reader = Call(read)
    for i in range(300):
        background.add("md_trades" if i % 2 else "md_quotes", trade(i) if i % 2 else quote(i))
    Call(background.flush).result()
    stop.set()
    reader.result()
    assert seen and all(pending >= 0 and written <= 300 for pending, written, _, _ in seen)
    assert background.rows_written_by_table == {"md_trades": 150, "md_quotes": 150}


def quote(i: int):
    from tests.unit.sinks.records import one_of_each

    base = one_of_each()["md_quotes"]
    return base.model_copy(update={"id": f"q-{i}"})


def test_a_tick_batch_whose_two_puts_fall_into_two_takes_lands_each_row_once():
    """add_ticks queues a batch once for md_trades and once for md_quotes; when the thread takes the
    queue between the two puts, each take must land only its own table's rows (both, converted
    once, when a take holds the batch for both)."""
    quote = one_of_each()["md_quotes"]
    batch = TickBatch.from_records([trade(0), quote, trade(1)])
    as_trades, as_quotes = _Work("md_trades", batch, 2, 0.0), _Work("md_quotes", batch, 1, 0.0)

    first, second = _coalesced([as_trades], "run-1"), _coalesced([as_quotes], "run-1")
    assert [(t, rows.num_rows) for t, rows in first] == [("md_trades", 2)]
    assert [(t, rows.num_rows) for t, rows in second] == [("md_quotes", 1)]
    together = _coalesced([as_trades, as_quotes], "run-1")
    assert sorted((t, rows.num_rows) for t, rows in together) == [("md_quotes", 1), ("md_trades", 2)]


def test_interleaved_hand_overs_are_converted_per_table_in_one_go_with_every_table_in_its_order():
    """A paced feed's hand-overs (raw ticks, normalized ticks, a record of another table, again and
    again) are converted once per table, into exactly the rows of one conversion per hand-over."""
    from feeds import make_feed
    from market.normalize import NormalizeConfig, NormalizeState
    from schemas.columns import TRADE, RawTickBatch
    from sinks.background import _coalesced, _Work
    from sinks.columns import raw_table

    normalize = NormalizeState(NormalizeConfig())
    raws = [b for _, b in zip(range(6), make_feed("synthetic", seed=3).batches(0, max_rows=7))]
    ticks = [normalize.on_raw_batch(raw)[0] for raw in raws]
    items = []
    for i, (raw, tick) in enumerate(zip(raws, ticks)):  # queued as the sink queues them (BackgroundWriter._put)
        items.append(_Work("md_raw", raw, len(raw), 0.0))
        trades = int((tick.kind == TRADE).sum())
        items += [_Work("md_trades", tick, trades, 0.0), _Work("md_quotes", tick, len(tick) - trades, 0.0)]
        items.append(_Work("exec_reports", [fill(f"f-{i}")], 1, 0.0))
    assert all(type(r) is RawTickBatch for r in raws) and sum(len(r) for r in raws) == 42

    out = _coalesced(items, "run-1")

    tables = [table for table, _ in out]
    assert tables.count("md_raw") == tables.count("md_trades") == tables.count("md_quotes") == 1
    by_table = dict(out)
    assert by_table["md_raw"].equals(pa.concat_tables([raw_table(r, "run-1") for r in raws]))
    for table in ("md_trades", "md_quotes"):
        one_by_one = [tick_tables(t, "run-1").get(table) for t in ticks]
        assert by_table[table].equals(pa.concat_tables([t for t in one_by_one if t is not None]))
    assert [r.id for table, rows in out if table == "exec_reports" for r in rows] == [f"er:f-{i}" for i in range(6)]


# -- small column batches are held by the caller and joined (HOLD_BATCHES) -----------------------

def small_tick_batches(count: int) -> list[TickBatch]:
    """``count`` hand-overs of a trade and a quote each, as a paced feed's milliseconds."""
    return [TickBatch.from_records([trade(i), quote(i)]) for i in range(count)]


def test_small_tick_batches_reach_the_thread_joined_and_land_as_if_each_had_been_queued(closing):
    from sinks.background import HOLD_BATCHES

    warehouse = GatedWarehouse()
    _, background = make(warehouse, max_rows=1, max_pending_rows=10_000)
    closing(background)
    warehouse.gate.clear()
    background.add("exec_reports", fill("f-0"))  # a full block: the thread waits in its insert
    assert warehouse.entered.wait(GUARD_S)
    batches = small_tick_batches(HOLD_BATCHES + 1)

    for batch in batches[:HOLD_BATCHES - 1]:
        background.add_ticks(batch)
    assert not background._queue  # held by the caller: nothing handed over yet, but counted
    assert background.pending_by_table() == {"md_trades": HOLD_BATCHES - 1, "md_quotes": HOLD_BATCHES - 1,
                                             "exec_reports": 1}
    background.add_ticks(batches[HOLD_BATCHES - 1])
    assert [(w.table, w.rows_n) for w in background._queue] == [("md_trades", HOLD_BATCHES),
                                                                 ("md_quotes", HOLD_BATCHES)]
    background.add_ticks(batches[HOLD_BATCHES])  # held again
    assert len(background._queue) == 2 and background.pending_rows == 2 * HOLD_BATCHES + 2 + 1

    warehouse.gate.set()
    background.flush()
    assert background.pending_rows == 0
    for table, prefix in (("md_trades", "AAPL:t"), ("md_quotes", "q-")):
        assert warehouse.ids(table) == [f"{prefix}{i}" for i in range(HOLD_BATCHES + 1)]
        one_by_one = pa.concat_tables([tick_tables(b, "run-1")[table] for b in batches])
        landed = pa.concat_tables([block for t, block, _ in warehouse.written if t == table])
        assert landed.equals(one_by_one)


def test_the_thread_writes_held_batches_that_reached_the_age_bound_without_another_add(closing):
    warehouse = GatedWarehouse()
    _, background = make(warehouse, max_rows=1000, max_age_s=0.01)
    closing(background)
    background.add_ticks(small_tick_batches(1)[0])
    wait_until(lambda: background.rows_written == 2)
    assert warehouse.ids("md_trades") == ["AAPL:t0"] and warehouse.ids("md_quotes") == ["q-0"]
    assert background.pending_rows == 0


def test_held_ticks_go_before_records_of_their_table_added_after_them(closing):
    warehouse = GatedWarehouse()
    _, background = make(warehouse)
    closing(background)
    background.add_ticks(TickBatch.from_records([trade(0), trade(1)]))  # held
    background.add_many("md_trades", [trade(2)])
    background.add_ticks(TickBatch.from_records([trade(3)]))
    background.flush()
    assert warehouse.ids("md_trades") == ["AAPL:t0", "AAPL:t1", "AAPL:t2", "AAPL:t3"]


def test_held_rows_count_against_the_back_pressure_bound_and_the_thread_takes_them_to_make_room(closing):
    warehouse = GatedWarehouse()
    _, background = make(warehouse, max_rows=1000, max_pending_rows=5)
    closing(background)
    background.add_ticks(TickBatch.from_records([trade(i) for i in range(4)]))  # held, 4 pending
    warehouse.gate.clear()
    add = Call(lambda: background.add_many("exec_reports", [fill("f-1"), fill("f-2")]))
    assert warehouse.entered.wait(GUARD_S)  # the waiting add made the thread write, held rows too
    assert add.still_blocked()
    warehouse.gate.set()
    add.result()
    background.flush()
    assert warehouse.ids("md_trades") == [f"AAPL:t{i}" for i in range(4)]
    assert background.rows_written_by_table == {"md_trades": 4, "exec_reports": 2}


def test_small_raw_batches_are_joined_too_and_land_in_order(closing):
    from feeds import make_feed
    from sinks.background import HOLD_BATCHES
    from sinks.columns import raw_table

    warehouse = GatedWarehouse()
    _, background = make(warehouse, max_rows=100_000)
    closing(background)
    raws = [b for _, b in zip(range(HOLD_BATCHES + 3), make_feed("synthetic", seed=3).batches(0, max_rows=3))]
    for raw in raws:
        background.add_raw(raw)
    background.flush()
    landed = pa.concat_tables([block for t, block, _ in warehouse.written if t == "md_raw"])
    assert landed.equals(pa.concat_tables([raw_table(r, "run-1") for r in raws]))


def test_a_large_batch_is_queued_as_it_is_after_the_small_ones_held_before_it(closing):
    from sinks.background import HOLD_BELOW_ROWS

    warehouse = GatedWarehouse()
    _, background = make(warehouse, max_rows=100_000)  # the thread writes nothing before the flush
    closing(background)
    small = TickBatch.from_records([trade(0), trade(1)])
    large = TickBatch.from_records([trade(i) for i in range(2, 2 + HOLD_BELOW_ROWS)])
    background.add_ticks(small)
    background.add_ticks(large)
    queued = [(w.table, w.rows_n, w.rows is large) for w in background._queue if w.table == "md_trades"]
    assert queued == [("md_trades", 2, False), ("md_trades", HOLD_BELOW_ROWS, True)]  # not joined, not copied
    background.flush()
    assert warehouse.ids("md_trades") == [f"AAPL:t{i}" for i in range(2 + HOLD_BELOW_ROWS)]
