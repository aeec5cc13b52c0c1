"""The warehouse on a ClickHouse *server* (``Warehouse.connect("http://user:password@host:8123")``):
the path the compose stack's sink and dashboard take. DDL, round trips, dedup with FINAL and the
1m OHLCV view, as tests/integration/test_warehouse.py checks them on embedded chDB.

Needs a server: ``TAPEFLOW_CLICKHOUSE_URL`` or a Docker engine (tests/clickhouse_fixtures.py);
without either they skip, naming what is missing.
"""

import socket

import polars as pl
import pytest

from sinks import migrations
from sinks.warehouse import Warehouse, WarehouseConnectError
from tests.integration.test_warehouse import (
    EXPECTED_ENGINES,
    assert_ohlcv_1m_view_equals_a_direct_aggregation,
    assert_retried_block_written_once,
    record_from_row,
)
from tests.unit.sinks.records import T0, fill, one_of_each, trade
from topics.catalog import TOPICS

pytestmark = pytest.mark.integration


def test_server_url_with_credentials_that_cannot_connect_fails_without_leaking_the_password():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(WarehouseConnectError) as failure:
        Warehouse.connect(f"http://tapeflow:s3cret-pw@127.0.0.1:{port}")
    message = str(failure.value)
    assert f"http://tapeflow:***@127.0.0.1:{port}" in message
    assert "s3cret-pw" not in message


def test_ddl_applies_once_and_again_as_a_no_op_on_the_server(clickhouse_url: str):
    with Warehouse.connect(clickhouse_url, database="server_fresh_ddl") as wh:
        try:
            wh.command("DROP DATABASE IF EXISTS server_fresh_ddl")
            assert wh.apply_ddl() == [m.version for m in migrations.bundled_migrations()]
            tables = wh.tables()
            assert wh.apply_ddl() == []
            assert wh.tables() == tables == EXPECTED_ENGINES
            recorded = wh.query("SELECT version, count() FROM schema_migrations GROUP BY version ORDER BY version")
            assert recorded.rows == [(m.version, 1) for m in migrations.bundled_migrations()]
        finally:
            wh.command("DROP DATABASE IF EXISTS server_fresh_ddl")


@pytest.mark.parametrize("table", [t.table for t in TOPICS])
def test_one_record_of_every_type_round_trips_exactly_through_the_server(server_warehouse: Warehouse, table: str):
    record = one_of_each()[table]
    server_warehouse.insert_records(table, [record], "run-rt")

    frame = server_warehouse.query_df(f"SELECT * FROM {table}")
    times = [n for n, t in frame.schema.items() if isinstance(t, pl.Datetime) and n != "ts_written"]
    frame = frame.with_columns(pl.col(times).dt.epoch("ns"))

    assert frame.height == 1
    assert record_from_row(table, frame.row(0, named=True)) == record


def test_times_come_back_exact_to_the_ns_and_as_aware_utc_from_the_server(server_warehouse: Warehouse):
    server_warehouse.insert_records("md_trades", [trade(0)], "run-ts")
    assert server_warehouse.query("SELECT toUnixTimestamp64Nano(ts_event) FROM md_trades").scalar() == T0
    moment = server_warehouse.query("SELECT ts_event FROM md_trades").scalar()
    assert moment.utcoffset().total_seconds() == 0
    assert server_warehouse.query_df("SELECT ts_event FROM md_trades").schema["ts_event"] == pl.Datetime("ns", "UTC")


def test_same_fill_twice_counts_once_under_final_on_the_server(server_warehouse: Warehouse):
    report = fill("f-1")
    replayed = report.model_copy(update={"ts_ingest": report.ts_ingest + 10**9})
    server_warehouse.insert_records("exec_reports", [report], "run-1")
    server_warehouse.insert_records("exec_reports", [replayed], "run-1")

    assert server_warehouse.query("SELECT count() FROM exec_reports FINAL").scalar() == 1
    assert server_warehouse.query("SELECT count(), sum(last_qty) FROM fills").rows == [(1, 4.0)]


def test_retried_block_with_the_same_token_is_written_once_on_the_server(server_warehouse: Warehouse):
    assert_retried_block_written_once(server_warehouse)


def test_ohlcv_1m_view_equals_a_direct_aggregation_on_the_server(server_warehouse: Warehouse):
    assert_ohlcv_1m_view_equals_a_direct_aggregation(server_warehouse)
