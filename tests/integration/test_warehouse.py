"""The warehouse against the real embedded engine (chDB): DDL, round trips, dedup, views."""

import math

import orjson
import polars as pl
import pytest

from schemas.feature_set import FEATURE_SET_V1
from schemas import Aggressor, Order, RawTick, RiskReject
from schemas.columns import RawTickBatch, TickBatch
from sinks import migrations
from sinks.rows import LAYOUTS, layout
from sinks.warehouse import Warehouse, WarehouseConnectError
from sinks.background import BackgroundWriter
from sinks.columns import raw_table, tick_tables
from sinks.writer import BatchingWriter
from tests.unit.sinks.records import MINUTE, T0, fill, one_of_each, pnl, trade
from topics.catalog import TOPICS

pytestmark = pytest.mark.integration

EXPECTED_ENGINES = {
    "md_raw": "MergeTree", "md_trades": "MergeTree", "md_quotes": "MergeTree",
    "md_bars": "ReplacingMergeTree", "features": "ReplacingMergeTree", "signals": "ReplacingMergeTree",
    "orders_intent": "ReplacingMergeTree", "orders_approved": "ReplacingMergeTree",
    "orders_rejected": "ReplacingMergeTree", "exec_reports": "ReplacingMergeTree",
    "positions": "ReplacingMergeTree", "pnl": "ReplacingMergeTree", "control": "ReplacingMergeTree",
    "sink_batches": "ReplacingMergeTree",
    "dlq": "ReplacingMergeTree",
    "fills": "View", "ohlcv_1m_state": "AggregatingMergeTree", "ohlcv_1m_mv": "MaterializedView",
    "ohlcv_1m": "View", "pnl_1m_state": "AggregatingMergeTree", "pnl_1m_mv": "MaterializedView",
    "pnl_1m": "View", "schema_migrations": "ReplacingMergeTree",
}


def test_apply_ddl_twice_is_a_no_op_and_records_each_migration_once(warehouse: Warehouse):
    tables_before = warehouse.tables()

    assert warehouse.apply_ddl() == []

    assert warehouse.tables() == tables_before
    recorded = warehouse.query("SELECT version, count() FROM schema_migrations GROUP BY version ORDER BY version")
    bundled = [m.version for m in migrations.bundled_migrations()]
    assert recorded.rows == [(v, 1) for v in bundled]


def test_ddl_applies_to_a_fresh_database_on_an_open_engine(warehouse_path):
    with Warehouse.connect(f"chdb://{warehouse_path}", database="fresh_ddl") as wh:
        try:
            assert wh.apply_ddl() == [m.version for m in migrations.bundled_migrations()]
            assert wh.apply_ddl() == []
        finally:
            wh.command("DROP DATABASE IF EXISTS fresh_ddl")


def test_changed_applied_migration_raises_a_clear_error(warehouse: Warehouse):
    first = migrations.bundled_migrations()[0]
    edited = migrations.Migration(first.version, first.name, first.sql + "\n-- an edit\n")
    recorded = warehouse.query("SELECT version, name, checksum FROM schema_migrations FINAL").rows
    with pytest.raises(migrations.MigrationChanged, match=f"{first.version:03d}_{first.name}.sql"):
        migrations.apply(
            warehouse.database, warehouse.command, lambda: {v: (n, c) for v, n, c in recorded}, lambda m: None, [edited]
        )


def test_second_chdb_path_in_one_process_fails_with_a_clear_error(warehouse: Warehouse, tmp_path):
    with pytest.raises(WarehouseConnectError, match="one data path per process"):
        Warehouse.connect(f"chdb://{tmp_path / 'other'}")
    assert warehouse.query("SELECT 1").scalar() == 1  # the open engine is unharmed


def test_every_topic_has_its_table_with_the_expected_engine(warehouse: Warehouse):
    tables = warehouse.tables()
    assert {t.table for t in TOPICS} <= set(tables)
    assert tables == EXPECTED_ENGINES


def test_every_table_has_the_columns_and_types_of_its_record_layout(warehouse: Warehouse):
    for table, table_layout in LAYOUTS.items():
        columns = warehouse.query(
            "SELECT name, type FROM system.columns"
            " WHERE database = {db:String} AND table = {t:String} ORDER BY position",
            {"db": warehouse.database, "t": table},
        ).rows
        expected = [*table_layout.column_types.items(), ("ts_written", "DateTime64(6, 'UTC')")]
        assert columns == expected, table


def test_features_table_has_one_column_per_feature_set_v1_name():
    names = layout("features").column_names
    assert [n for n in names if n in FEATURE_SET_V1] == list(FEATURE_SET_V1)


@pytest.mark.parametrize("table", [t.table for t in TOPICS])
def test_one_record_of_every_type_round_trips_exactly(module_warehouse: Warehouse, table: str):
    record = one_of_each()[table]
    run_id = f"run-rt-{table}"
    module_warehouse.insert_records(table, [record], run_id)

    frame = module_warehouse.query_df(f"SELECT * FROM {table} WHERE run_id = {{run:String}}", {"run": run_id})
    # Datetime('ns', 'UTC') -> the ns ints the records carry, exactly.
    times = [n for n, t in frame.schema.items() if isinstance(t, pl.Datetime) and n != "ts_written"]
    frame = frame.with_columns(pl.col(times).dt.epoch("ns"))

    assert frame.height == 1
    assert record_from_row(table, frame.row(0, named=True)) == record


def test_times_come_back_exact_to_the_ns_and_as_utc(warehouse: Warehouse):
    warehouse.insert_records("md_trades", [trade(0)], "run-ts")
    nanos = warehouse.query(
        "SELECT toUnixTimestamp64Nano(ts_event), toUnixTimestamp64Nano(ts_tick_ingest) FROM md_trades"
    )
    assert nanos.rows == [(T0, T0 + 7)]
    (moment,) = warehouse.query("SELECT ts_event FROM md_trades").rows[0]
    assert moment.utcoffset().total_seconds() == 0  # aware UTC, though chDB itself drops the zone
    assert int(moment.timestamp()) == T0 // 1_000_000_000
    frame = warehouse.query_df("SELECT ts_event FROM md_trades")
    assert frame.schema["ts_event"] == pl.Datetime("ns", "UTC")
    assert frame["ts_event"].dt.epoch("ns").to_list() == [T0]


def test_same_fill_inserted_twice_counts_once_under_final_and_in_fills(warehouse: Warehouse):
    report = fill("f-1")
    replayed = report.model_copy(update={"ts_ingest": report.ts_ingest + 10**9})  # same id, new wall clock
    warehouse.insert_records("exec_reports", [report], "run-1")
    warehouse.insert_records("exec_reports", [replayed], "run-1")

    assert warehouse.query("SELECT count() FROM exec_reports").scalar() == 2  # both stored until a merge
    assert warehouse.query("SELECT count() FROM exec_reports FINAL").scalar() == 1
    assert warehouse.query("SELECT count(), sum(last_qty) FROM fills").rows == [(1, 4.0)]


def test_identical_block_inserted_without_a_token_is_dropped_by_the_server(warehouse: Warehouse):
    # The dedup window hashes tokenless blocks: an exact duplicate block (same rows, same wall-clock
    # fields) is a true duplicate and is not stored twice.
    warehouse.insert_records("md_trades", [trade(0), trade(1)], "run-1")
    warehouse.insert_records("md_trades", [trade(0), trade(1)], "run-1")
    assert warehouse.query("SELECT count() FROM md_trades").scalar() == 2


def test_non_fill_reports_are_not_in_fills(warehouse: Warehouse):
    accepted = fill("f-1").model_copy(update={"id": "er:ack", "fill_id": "", "last_qty": 0.0, "last_price": 0.0})
    warehouse.insert_records("exec_reports", [accepted, fill("f-2")], "run-1")
    assert warehouse.query("SELECT fill_id FROM fills").rows == [("f-2",)]


def assert_retried_block_written_once(warehouse: Warehouse) -> None:
    """Shared with the server-path tests (test_warehouse_server.py)."""
    trades = [trade(i) for i in range(5)]
    warehouse.insert_records("md_trades", trades, "run-1", dedup_token="run-1/md_trades/block-1")
    warehouse.insert_records("md_trades", trades, "run-1", dedup_token="run-1/md_trades/block-1")

    assert warehouse.query("SELECT count() FROM md_trades").scalar() == 5
    assert warehouse.query("SELECT trade_count, volume FROM ohlcv_1m").rows == [(5, 500.0)]


def test_retried_block_with_the_same_token_is_written_once_in_table_and_view(warehouse: Warehouse):
    assert_retried_block_written_once(warehouse)


def assert_ohlcv_1m_view_equals_a_direct_aggregation(warehouse: Warehouse) -> None:
    """Shared with the server-path tests (test_warehouse_server.py)."""
    trades = []
    for i in range(600):  # 3 symbols over ~5 minutes, inserted out of order across 3 blocks
        symbol = ("AAPL", "MSFT", "NVDA")[i % 3]
        price = 100.0 + ((i * 37) % 101) / 10
        side = Aggressor.BUY if i % 4 else Aggressor.SELL
        ts_event = T0 + i * 500_000_000 + i
        trades.append(trade(i, symbol=symbol, price=price, size=1.0 + i % 9, ts_event=ts_event, aggressor=side))
    shuffled = trades[::-1]
    for start in range(0, 600, 200):
        warehouse.insert_records("md_trades", shuffled[start:start + 200], "run-ohlcv")

    view = warehouse.query_df("SELECT * FROM ohlcv_1m ORDER BY symbol, minute")
    direct = warehouse.query_df("""
        SELECT run_id, symbol, toDateTime64(toStartOfMinute(ts_event), 9, 'UTC') AS minute,
               argMin(price, ts_event) AS open, max(price) AS high, min(price) AS low,
               argMax(price, ts_event) AS close, sum(size) AS volume, sum(price * size) / sum(size) AS vwap,
               sumIf(size, aggressor = 'buy') AS buy_volume, sumIf(size, aggressor = 'sell') AS sell_volume,
               count() AS trade_count
        FROM md_trades GROUP BY run_id, symbol, minute ORDER BY symbol, minute""")

    assert view.height == direct.height >= 15
    for column in direct.columns:
        if direct.schema[column] == pl.Float64:
            assert view[column].to_list() == pytest.approx(direct[column].to_list(), rel=1e-12), column
        else:
            assert view[column].cast(direct.schema[column]).to_list() == direct[column].to_list(), column


def test_ohlcv_1m_view_equals_a_direct_aggregation_of_trades(warehouse: Warehouse):
    assert_ohlcv_1m_view_equals_a_direct_aggregation(warehouse)


def test_pnl_1m_keeps_the_last_snapshot_of_each_minute_per_strategy(warehouse: Warehouse):
    minute0 = (T0 // MINUTE) * MINUTE
    snapshots = [
        pnl(minute0 + 1_000, 100_010.0),
        pnl(minute0 + 50_000_000_000, 100_030.0),  # last of minute 0
        pnl(minute0 + 20_000_000_000, 99_990.0),  # inserted late, still not the last
        pnl(minute0 + MINUTE + 5, 100_050.0),
        pnl(minute0 + 30, 100_100.0, strategy="lgbm"),
    ]
    warehouse.insert_records("pnl", snapshots[:2], "run-pnl")
    warehouse.insert_records("pnl", snapshots[2:], "run-pnl")
    replayed = snapshots[1].model_copy(update={"ts_ingest": snapshots[1].ts_ingest + 10**9})
    warehouse.insert_records("pnl", [replayed], "run-pnl")  # a replayed snapshot changes nothing
    assert warehouse.query("SELECT count() FROM pnl").scalar() == 6

    rows = warehouse.query(
        "SELECT strategy, toUnixTimestamp64Nano(minute), equity, max_drawdown FROM pnl_1m ORDER BY strategy, minute"
    ).rows
    assert rows == [
        ("baseline", minute0, 100_030.0, 10.0),
        ("baseline", minute0 + MINUTE, 100_050.0, 0.0),
        ("lgbm", minute0, 100_100.0, 0.0),
    ]


def test_parameterised_query_binds_values_server_side(warehouse: Warehouse):
    warehouse.insert_records("md_trades", [trade(i, symbol=s) for i, s in enumerate(["AAPL", "MSFT", "AAPL"])], "run-p")
    result = warehouse.query(
        "SELECT symbol, count() AS n FROM md_trades WHERE symbol IN {symbols:Array(String)}"
        " AND ts_event >= fromUnixTimestamp64Nano({since:Int64}, 'UTC') GROUP BY symbol ORDER BY symbol",
        {"symbols": ["AAPL", "'; DROP TABLE md_trades; --"], "since": T0},
    )
    columns, rows = result
    assert columns == ("symbol", "n") and rows == [("AAPL", 2)]
    assert result.column_names == ("symbol", "n")
    assert result.rows == [("AAPL", 2)]
    assert result.dicts() == [{"symbol": "AAPL", "n": 2}]


def test_writer_flushes_large_batches_into_the_engine(warehouse: Warehouse):
    writer = BatchingWriter(warehouse, "run-w", max_rows=25_000)
    writer.add_many("md_trades", [trade(i, symbol=("AAPL", "MSFT")[i % 2]) for i in range(60_000)])
    writer.add("exec_reports", fill())

    assert writer.flush() == 60_001

    counts = warehouse.query("SELECT count(), uniqExact(id) FROM md_trades WHERE run_id = 'run-w'")
    assert counts.rows == [(60_000, 60_000)]
    assert warehouse.query("SELECT sum(trade_count) FROM ohlcv_1m WHERE run_id = 'run-w'").scalar() == 60_000
    assert writer.rows_written_by_table == {"md_trades": 60_000, "exec_reports": 1}


def test_tick_batches_written_as_arrow_by_the_writer_thread_land_as_their_records_would(warehouse: Warehouse):
    records = [trade(i, symbol=("AAPL", "MSFT")[i % 2]) for i in range(500)]
    records.insert(7, one_of_each()["md_quotes"])
    raw = [RawTick(id=f"feed:{i}", ts_event=T0 + i, ts_ingest=T0 + i + 1, source="feed", symbol="AAPL", seq=i,
                   payload={"type": "trade", "ts": T0 + i, "price": 100.0 + i / 3, "size": 1e-7,
                            "side": (None, "buy")[i % 2], "trade_id": f'x"{i}\\'}) for i in range(300)]
    writer = BatchingWriter(warehouse, "by-records", max_rows=128)
    writer.add_many("md_trades", [r for r in records if r.id.startswith(("AAPL", "MSFT"))])
    writer.add_many("md_quotes", [r for r in records if r.id == "q-1"])
    writer.add_many("md_raw", raw)
    writer.flush()
    background = BackgroundWriter(BatchingWriter(warehouse, "by-columns", max_rows=128))
    for start in range(0, len(records), 100):  # several batches, and blocks cut across them
        for table, arrow in tick_tables(TickBatch.from_records(records[start:start + 100]), "by-columns").items():
            background.add_arrow(table, arrow)
    background.add_arrow("md_raw", raw_table(RawTickBatch.from_records(raw), "by-columns"))
    background.close()

    for table in ("md_trades", "md_quotes", "md_raw"):
        columns = [c for c in layout(table).column_names if c != "run_id"]
        rows = {run: warehouse.query(f"SELECT {', '.join(columns)} FROM {table} WHERE run_id = {{r:String}} ORDER BY id",
                                     {"r": run}).rows for run in ("by-records", "by-columns")}
        assert rows["by-columns"] == rows["by-records"] and rows["by-records"], table
    assert warehouse.query("SELECT sum(trade_count) FROM ohlcv_1m WHERE run_id = 'by-columns'").scalar() == 500
    assert background.rows_written_by_table == {"md_trades": 500, "md_quotes": 1, "md_raw": 300}


def test_ticks_written_again_after_a_restart_or_produced_again_upstream_land_once(warehouse: Warehouse):
    """A writer that starts after a crash (a new writer of the same run) and a stage that produced
    its ticks again (the same ids in a later batch) put no tick twice in md_trades or the OHLCV sums."""
    first = BatchingWriter(warehouse, "resumed", max_rows=100)
    first.add_many("md_trades", [trade(i) for i in range(300)])
    first.flush()
    # the predecessor died after writing 0..299; its successor reads again from 200, and upstream
    # resent 250..279 once more within the same stretch
    again = BatchingWriter(warehouse, "resumed", max_rows=100)
    again.add_many("md_trades", [trade(i) for i in range(200, 400)])
    again.add_many("md_trades", [trade(i) for i in range(250, 280)])
    again.flush()

    assert warehouse.query("SELECT count(), uniqExact(id) FROM md_trades WHERE run_id = 'resumed'").rows == [(400, 400)]
    assert warehouse.query("SELECT sum(trade_count) FROM ohlcv_1m WHERE run_id = 'resumed'").scalar() == 400
    assert again.landed.dropped == {"md_trades": 130}
    assert again.rows_written_by_table == {"md_trades": 100}
    # another run's ticks with the same ids are that run's own
    other = BatchingWriter(warehouse, "another-run")
    other.add_many("md_trades", [trade(i) for i in range(10)])
    assert other.flush() == 10


# -- a row back into its record: the inverse of sinks.rows, for the round-trip test ---------------


def record_from_row(table: str, row: dict) -> object:
    model = layout(table).model
    values = {k: v for k, v in row.items() if k not in ("run_id", "ts_written")}
    if table == "md_raw":
        values["payload"] = orjson.loads(values["payload"])
    if table == "features":
        values["values"] = {n: values.pop(n) for n in FEATURE_SET_V1 if not math.isnan(values[n])}
    if table == "orders_rejected":
        order_fields = {}
        for name in Order.model_fields:
            column = name if name.startswith("order_") else f"order_{name}"
            order_fields[name] = values.pop(column)
        values["order"] = Order(**order_fields)
        return RiskReject(**values)
    return model(**values)


def test_the_market_tables_merge_column_by_column(warehouse: Warehouse):
    # the vertical algorithm bounds a merge's memory by a column, not a part (sinks/ddl/007)
    settings = dict(warehouse.query(
        "SELECT name, engine_full FROM system.tables WHERE database = {db:String}", {"db": warehouse.database}).rows)
    for table in ("md_raw", "md_trades", "md_quotes", "md_bars", "features"):
        assert "vertical_merge_algorithm_min_rows_to_activate = 1" in settings[table], table
        assert "vertical_merge_algorithm_min_columns_to_activate = 1" in settings[table], table
    assert "vertical_merge_algorithm" not in settings["orders_intent"]  # small tables keep the defaults
