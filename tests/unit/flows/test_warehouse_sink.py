"""The warehouse sink partition: records, tick batches and Arrow tables in; snapshot waits for the writes."""

from __future__ import annotations

from collections import Counter

import pytest

from flows.sink import WarehouseSink
from schemas import RawTick
from schemas.columns import RawTickBatch, TickBatch
from sinks.background import BackgroundWriter
from sinks.columns import tick_tables
from sinks.writer import BatchingWriter, WarehouseWriteError
from tests.unit.sinks.records import T0, fill, one_of_each, trade
from tests.unit.sinks.test_background import Call, GatedWarehouse


class Progress:
    def __init__(self):
        self.records: Counter[str] = Counter()

    def count_records(self, table: str, n: int) -> None:
        self.records[table] += n


def raw(seq: int) -> RawTick:
    return RawTick(id=f"feed:{seq}", ts_event=T0 + seq, ts_ingest=T0 + seq + 1, source="feed", symbol="AAPL", seq=seq,
                   payload={"type": "trade", "ts": T0 + seq, "price": 100.0, "size": 1e-7, "side": "buy",
                            "trade_id": f"x{seq}"})


@pytest.fixture
def setup():
    warehouse = GatedWarehouse()
    writer = BatchingWriter(warehouse, "run-1", max_age_s=3600.0, retries=0, backoff_s=0.0)
    progress = Progress()
    part = WarehouseSink(writer, progress).build_part("warehouse", WarehouseSink.PARTITION, None)
    yield warehouse, writer, part, progress
    warehouse.gate.set()
    warehouse.failures = 0
    try:
        part.close()
    except WarehouseWriteError:
        pass


def test_records_tick_batches_raw_batches_and_arrow_land_in_their_tables_in_order(setup):
    warehouse, _, part, progress = setup
    quote = one_of_each()["md_quotes"]
    arrow = tick_tables(TickBatch.from_records([trade(9)]), "run-1")["md_trades"]
    part.write_batch([
        ("md_trades", trade(0)),
        ("md_trades", TickBatch.from_records([trade(1), quote, trade(2)])),
        ("exec_reports", fill("f-1")),
        ("md_trades", trade(3)),
        ("md_raw", RawTickBatch.from_records([raw(0), raw(1)])),
        ("md_raw", raw(2)),
        ("md_trades", arrow),
        ("md_trades", TickBatch.empty()),  # a heartbeat of a quiet tape lands nothing
    ])
    part.snapshot()

    assert warehouse.ids("md_trades") == ["AAPL:t0", "AAPL:t1", "AAPL:t2", "AAPL:t3", "AAPL:t9"]
    assert warehouse.ids("md_quotes") == ["q-1"]
    assert warehouse.ids("md_raw") == ["feed:0", "feed:1", "feed:2"]
    assert warehouse.ids("exec_reports") == ["er:f-1"]
    assert progress.records == {"md_trades": 5, "md_quotes": 1, "md_raw": 3, "exec_reports": 1}


def test_write_batch_returns_while_an_insert_is_held_and_snapshot_waits_for_it(setup):
    warehouse, writer, part, _ = setup
    warehouse.gate.clear()
    part.write_batch([("md_trades", trade(0))])
    held = Call(part.snapshot)
    assert warehouse.entered.wait(20)

    assert Call(lambda: part.write_batch([("md_trades", trade(1))])).result() is None
    assert held.still_blocked()

    warehouse.gate.set()
    held.result()
    assert warehouse.ids("md_trades")[:1] == ["AAPL:t0"]


def test_without_the_epoch_barrier_snapshot_returns_while_an_insert_is_held_and_close_writes_it():
    warehouse = GatedWarehouse()
    writer = BatchingWriter(warehouse, "run-1", max_age_s=3600.0, retries=0, backoff_s=0.0)
    part = WarehouseSink(writer, epoch_barrier=False).build_part("warehouse", WarehouseSink.PARTITION, None)
    warehouse.gate.clear()
    part.write_batch([("md_trades", trade(0))])
    part.write_batch([("md_trades", trade(1))])
    assert Call(part.snapshot).result() is None  # the tape goes on; nothing was committed to wait for
    assert warehouse.ids("md_trades") == []

    closing = Call(part.close)
    assert closing.still_blocked()
    warehouse.gate.set()
    closing.result()
    assert warehouse.ids("md_trades") == ["AAPL:t0", "AAPL:t1"]


def test_snapshot_raises_a_failed_insert_and_the_next_snapshot_writes_it_once(setup):
    warehouse, _, part, _ = setup
    warehouse.failures = 1
    part.write_batch([("md_trades", trade(0))])
    with pytest.raises(WarehouseWriteError, match="md_trades of 1 rows"):
        Call(part.snapshot).result()
    Call(part.snapshot).result()
    assert warehouse.ids("md_trades") == ["AAPL:t0"]


def test_a_batch_under_a_table_it_cannot_land_in_fails_with_the_reason(setup):
    _, _, part, _ = setup
    with pytest.raises(TypeError, match="TickBatch lands in md_trades and md_quotes, not in md_raw"):
        part.write_batch([("md_raw", TickBatch.from_records([trade(0)]))])
    batch = RawTickBatch.from_records([raw(0)])
    with pytest.raises(TypeError, match="RawTickBatch lands in md_raw, not in md_trades"):
        part.write_batch([("md_trades", batch)])
    with pytest.raises(TypeError, match="md_trades takes Trade"):
        part.write_batch([("md_trades", fill())])


def test_close_writes_everything_and_the_owners_writer_is_free_again(setup):
    warehouse, writer, part, _ = setup
    part.write_batch([("md_trades", trade(0))])
    Call(part.close).result()
    assert warehouse.ids("md_trades") == ["AAPL:t0"]
    writer.add("md_trades", trade(1))  # the owner's own use, on its thread
    assert writer.flush() == 1


def test_the_sink_uses_a_background_writer_it_is_given_as_is():
    background = BackgroundWriter(BatchingWriter(GatedWarehouse(), "run-1"))
    part = WarehouseSink(background).build_part("warehouse", WarehouseSink.PARTITION, None)
    part.write_batch([("md_trades", trade(0))])
    assert background.pending_rows == 1
    Call(part.close).result()
    assert background.rows_written == 1 and background.pending_rows == 0
