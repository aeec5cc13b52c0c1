import pyarrow as pa
import pytest

from schemas.columns import TickBatch
from sinks.columns import tick_tables
from sinks.rows import layout
from sinks.writer import BatchingWriter, WarehouseWriteError
from tests.unit.sinks.records import T0, fill, one_of_each, trade


class FlakyWarehouse:
    """Fails the first ``failures`` inserts, then succeeds; records every attempt."""

    def __init__(self, failures: int = 0, error: Exception | None = None):
        self.failures = failures
        self.error = error or ConnectionError("connection reset by peer")
        self.attempts: list[tuple[str, int, str | None]] = []
        self.written: list[tuple[str, pa.Table, str | None]] = []

    def insert_arrow(self, table, arrow_table, *, dedup_token=None):
        self.attempts.append((table, arrow_table.num_rows, dedup_token))
        if self.failures > 0:
            self.failures -= 1
            raise self.error
        self.written.append((table, arrow_table, dedup_token))
        return arrow_table.num_rows


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_writer(warehouse, clock=None, **kwargs) -> BatchingWriter:
    clock = clock or FakeClock()
    return BatchingWriter(warehouse, "run-1", clock=clock, sleep=clock.sleep, **kwargs)


def test_flush_when_insert_fails_twice_then_succeeds_writes_once_after_exponential_backoff():
    warehouse, clock = FlakyWarehouse(failures=2), FakeClock()
    writer = make_writer(warehouse, clock, backoff_s=0.2)
    writer.add_many("md_trades", [trade(i) for i in range(3)])

    assert writer.flush() == 3

    assert clock.sleeps == pytest.approx([0.2, 0.4])
    assert len(warehouse.written) == 1
    assert warehouse.written[0][1].column("id").to_pylist() == ["AAPL:t0", "AAPL:t1", "AAPL:t2"]
    tokens = {token for _, _, token in warehouse.attempts}
    assert len(tokens) == 1 and None not in tokens  # every retry reuses the block's token
    assert writer.insert_retries == 2
    assert writer.rows_written == 3 and writer.pending_rows == 0


def test_flush_when_every_retry_fails_raises_naming_table_rows_and_cause_and_keeps_the_batch():
    warehouse, clock = FlakyWarehouse(failures=100, error=TimeoutError("read timed out")), FakeClock()
    writer = make_writer(warehouse, clock, retries=3, backoff_s=0.5)
    writer.add_many("exec_reports", [fill("f-1"), fill("f-2")])

    with pytest.raises(WarehouseWriteError) as raised:
        writer.flush()

    error = raised.value
    assert (error.table, error.rows, error.attempts) == ("exec_reports", 2, 4)
    assert isinstance(error.cause, TimeoutError)
    assert "exec_reports" in str(error) and "2 rows" in str(error) and "read timed out" in str(error)
    assert clock.sleeps == pytest.approx([0.5, 1.0, 2.0])
    assert writer.pending_rows == 2 and writer.rows_written == 0
    assert writer.due()  # a stuck block keeps the writer due


def test_failed_block_is_retried_with_the_same_token_on_the_next_flush_and_written_once():
    warehouse = FlakyWarehouse(failures=2)
    writer = make_writer(warehouse, retries=1)
    writer.add("exec_reports", fill())
    with pytest.raises(WarehouseWriteError):
        writer.flush()

    assert writer.flush() == 1

    assert len({token for _, _, token in warehouse.attempts}) == 1
    assert len(warehouse.written) == 1
    assert writer.rows_written_by_table["exec_reports"] == 1


def test_rows_added_after_a_failed_flush_go_to_a_new_block_not_into_the_retried_one():
    warehouse = FlakyWarehouse(failures=1)
    writer = make_writer(warehouse, retries=0)
    writer.add("md_trades", trade(0))
    with pytest.raises(WarehouseWriteError):
        writer.flush()
    writer.add("md_trades", trade(1))

    writer.flush()

    blocks = [(t.column("id").to_pylist(), token) for _, t, token in warehouse.written]
    assert [ids for ids, _ in blocks] == [["AAPL:t0"], ["AAPL:t1"]]  # the failed block first, unchanged
    assert blocks[0][1] == warehouse.attempts[0][2]  # and under the token of its first attempt
    assert blocks[0][1] != blocks[1][1]


def test_due_when_a_table_buffer_reaches_max_rows():
    writer = make_writer(FlakyWarehouse(), max_rows=3, max_age_s=60)
    writer.add_many("md_trades", [trade(0), trade(1)])
    assert not writer.due()
    writer.add("md_trades", trade(2))
    assert writer.due()


def test_due_when_the_oldest_row_of_a_table_has_waited_max_age():
    clock = FakeClock()
    writer = make_writer(FlakyWarehouse(), clock, max_rows=1000, max_age_s=1.0)
    writer.add("md_trades", trade(0))
    clock.now += 0.6
    writer.add("md_trades", trade(1))  # a later row does not restart the age of the buffer
    assert not writer.due()
    clock.now += 0.4
    assert writer.due()


def test_flush_due_writes_the_tables_that_are_due_and_keeps_the_others_with_their_age():
    clock = FakeClock()
    warehouse = FlakyWarehouse()
    writer = make_writer(warehouse, clock, max_rows=3, max_age_s=1.0)
    writer.add("exec_reports", fill("f-1"))
    clock.now += 0.5
    writer.add_many("md_trades", [trade(i) for i in range(3)])  # full

    assert writer.flush_due() == 3
    assert [t for t, _, _ in warehouse.written] == ["md_trades"]
    assert writer.pending_by_table() == {"exec_reports": 1}
    assert writer.oldest_opened_at() == 1000.0  # the fill's own hand-over, not the write's
    assert writer.flush_due() == 0  # nothing due yet

    clock.now += 0.5  # the fill has waited max_age_s
    assert writer.flush_due() == 1
    assert [t for t, _, _ in warehouse.written] == ["md_trades", "exec_reports"]
    assert writer.pending_rows == 0 and writer.oldest_opened_at() is None


def test_flush_due_lands_a_full_table_in_whole_blocks_and_keeps_the_rest_with_its_age():
    clock = FakeClock()
    warehouse = FlakyWarehouse()
    writer = make_writer(warehouse, clock, max_rows=3, max_age_s=1.0)
    writer.add_many("md_trades", [trade(i) for i in range(7)])

    assert writer.flush_due() == 6
    assert [t.column("id").to_pylist() for _, t, _ in warehouse.written] == [
        ["AAPL:t0", "AAPL:t1", "AAPL:t2"], ["AAPL:t3", "AAPL:t4", "AAPL:t5"]]
    assert writer.pending_by_table() == {"md_trades": 1} and writer.oldest_opened_at() == 1000.0
    clock.now += 1.0  # aged: the rest goes too, however short
    assert writer.flush_due() == 1
    assert warehouse.written[-1][1].column("id").to_pylist() == ["AAPL:t6"]
    writer.add_many("md_trades", [trade(i) for i in range(7, 11)])
    assert writer.flush() == 4  # a flush lands everything
    assert writer.pending_rows == 0


def test_the_rows_a_full_table_keeps_hold_no_memory_of_the_batch_they_were_cut_from():
    class IdsWarehouse:  # keeps a block's ids as Python strings, none of its Arrow buffers
        def __init__(self):
            self.ids: list[str] = []

        def insert_arrow(self, table, arrow_table, *, dedup_token=None):
            self.ids += arrow_table.column("id").to_pylist()
            return arrow_table.num_rows

    warehouse = IdsWarehouse()
    writer = make_writer(warehouse, max_rows=5_000, max_age_s=1.0)
    held_before = pa.total_allocated_bytes()
    writer.add_arrow("md_trades", trades_arrow(0, 12_000))
    batch_bytes = pa.total_allocated_bytes() - held_before

    assert writer.flush_due() == 10_000
    # the 2,000 rows kept are their own buffers: the 12,000-row batch is freed once its blocks land
    assert pa.total_allocated_bytes() - held_before < batch_bytes / 3
    assert writer.flush() == 2_000
    assert warehouse.ids == [f"AAPL:t{i}" for i in range(12_000)]


def test_extend_counts_a_buffers_age_from_when_its_rows_were_accepted():
    clock = FakeClock()
    writer = make_writer(FlakyWarehouse(), clock, max_rows=1000, max_age_s=1.0)
    clock.now = 5.0
    writer.extend("md_trades", [trade(0)], accepted_at=4.2)
    assert writer.oldest_opened_at() == 4.2
    clock.now = 5.2
    assert writer.due()
    writer.extend("md_quotes", [], accepted_at=1.0)  # no rows: no buffer opened
    writer.extend("exec_reports", [fill("f-1")], accepted_at=9.0)  # never later than now
    assert writer.oldest_opened_at() == 4.2 and writer.pending_by_table() == {"md_trades": 1, "exec_reports": 1}


def test_not_due_when_nothing_is_pending():
    clock = FakeClock()
    writer = make_writer(FlakyWarehouse(), clock)
    clock.now += 100
    assert not writer.due()


def test_flush_writes_every_pending_table_and_counts_rows_per_table():
    warehouse = FlakyWarehouse()
    writer = make_writer(warehouse)
    for table, record in one_of_each().items():
        writer.add(table, record)
    writer.add("md_trades", trade(1))

    assert writer.flush() == 15

    assert {table for table, _, _ in warehouse.written} == set(one_of_each())
    assert writer.rows_written == 15
    assert writer.rows_written_by_table["md_trades"] == 2
    assert writer.rows_written_by_table["pnl"] == 1
    assert not writer.due() and writer.pending_rows == 0


def test_flush_splits_a_large_buffer_into_blocks_of_at_most_max_rows():
    warehouse = FlakyWarehouse()
    writer = make_writer(warehouse, max_rows=4)
    writer.add_many("md_trades", [trade(i) for i in range(10)])

    writer.flush()

    assert [t.num_rows for _, t, _ in warehouse.written] == [4, 4, 2]
    assert len({token for _, _, token in warehouse.written}) == 3
    assert writer.blocks_written == 3


def test_flush_with_nothing_pending_writes_nothing():
    warehouse = FlakyWarehouse()
    assert make_writer(warehouse).flush() == 0
    assert warehouse.attempts == []


def test_add_of_a_record_of_another_model_fails_at_the_caller():
    writer = make_writer(FlakyWarehouse())
    with pytest.raises(TypeError, match="exec_reports takes ExecutionReport"):
        writer.add("exec_reports", trade())
    assert writer.pending_rows == 0


def test_add_to_an_unknown_table_fails_at_the_caller():
    with pytest.raises(KeyError, match="no warehouse table"):
        make_writer(FlakyWarehouse()).add("exec.reports", fill())


# -- Arrow rows (sinks.columns) beside records --------------------------------------------------


def trades_arrow(start: int, stop: int, run_id: str = "run-1") -> pa.Table:
    return tick_tables(TickBatch.from_records([trade(i) for i in range(start, stop)]), run_id)["md_trades"]


def test_arrow_rows_and_records_of_a_table_are_written_in_the_order_added_in_blocks_of_max_rows():
    warehouse = FlakyWarehouse()
    writer = make_writer(warehouse, max_rows=4)
    writer.add_many("md_trades", [trade(0), trade(1)])
    writer.add_arrow("md_trades", trades_arrow(2, 5))
    writer.add("md_trades", trade(5))
    writer.add_arrow("md_trades", trades_arrow(6, 10))

    assert writer.pending_rows == 10 and writer.pending_by_table() == {"md_trades": 10}
    assert writer.flush() == 10

    ids = [t.column("id").to_pylist() for _, t, _ in warehouse.written]
    assert ids == [[f"AAPL:t{i}" for i in range(0, 4)], [f"AAPL:t{i}" for i in range(4, 8)], ["AAPL:t8", "AAPL:t9"]]
    assert all(t.column("id").num_chunks == 1 for _, t, _ in warehouse.written)
    assert all(t.schema == layout("md_trades").to_arrow([trade()], "run-1").schema for _, t, _ in warehouse.written)
    assert writer.rows_written_by_table["md_trades"] == 10 and writer.rows_written == 10


def test_arrow_rows_count_towards_the_size_and_age_bounds():
    clock = FakeClock()
    writer = make_writer(FlakyWarehouse(), clock, max_rows=3, max_age_s=1.0)
    writer.add_arrow("md_trades", trades_arrow(0, 2))
    assert not writer.due() and writer.due_in() == pytest.approx(1.0)
    clock.now += 0.25
    assert writer.due_in() == pytest.approx(0.75)
    writer.add_arrow("md_trades", trades_arrow(2, 3))
    assert writer.due() and writer.due_in() == 0.0


def test_failed_arrow_block_stays_pending_and_is_retried_under_its_token():
    warehouse = FlakyWarehouse(failures=1)
    writer = make_writer(warehouse, retries=0)
    writer.add_arrow("md_trades", trades_arrow(0, 3))
    with pytest.raises(WarehouseWriteError, match="md_trades of 3 rows"):
        writer.flush()
    assert writer.pending_rows == 3 and writer.due()

    assert writer.flush() == 3

    assert [token for _, _, token in warehouse.attempts] == [warehouse.written[0][2]] * 2


def test_add_arrow_of_another_tables_form_fails_at_the_caller_naming_the_columns():
    writer = make_writer(FlakyWarehouse())
    quotes = tick_tables(TickBatch.from_records([one_of_each()["md_quotes"]]), "run-1")["md_quotes"]
    with pytest.raises(TypeError, match=r"md_trades.*bid_price: double \(expected not a column\)"):
        writer.add_arrow("md_trades", quotes)
    ints = trades_arrow(0, 1).set_column(3, "ts_event", pa.array([T0], pa.int64()))
    with pytest.raises(TypeError, match=r"ts_event: int64 \(expected timestamp\[ns, tz=UTC\]\)"):
        writer.add_arrow("md_trades", ints)  # ClickHouse would misread plain int64 times
    with pytest.raises(TypeError, match="run-other"):
        writer.add_arrow("md_trades", trades_arrow(0, 1, run_id="run-other"))
    with pytest.raises(KeyError, match="no warehouse table"):
        writer.add_arrow("md.trades", trades_arrow(0, 1))
    assert writer.pending_rows == 0
