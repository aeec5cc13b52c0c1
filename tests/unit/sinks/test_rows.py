import math

import pyarrow as pa
import pytest

from schemas.feature_set import FEATURE_SET_V1
from sinks.rows import LAYOUTS, layout, to_arrow
from tests.unit.sinks.records import T0, one_of_each, trade
from topics.catalog import TOPICS


def test_every_catalog_topic_has_a_layout_named_after_its_table():
    assert set(LAYOUTS) == {t.table for t in TOPICS}
    for topic in TOPICS:
        assert LAYOUTS[topic.table].model is topic.model


def test_every_layout_starts_with_run_id_and_carries_both_ingest_times():
    for table, table_layout in LAYOUTS.items():
        names = table_layout.column_names
        assert names[0] == "run_id", table
        assert "ts_event" in names and "ts_ingest" in names, table
        if "ts_tick_ingest" in table_layout.model.model_fields:
            assert "ts_tick_ingest" in names, table


def test_to_arrow_of_one_record_of_every_table_gives_one_row_per_column():
    for table, record in one_of_each().items():
        arrow_table = to_arrow(table, [record], "run-1")
        assert arrow_table.num_rows == 1
        assert tuple(arrow_table.column_names) == layout(table).column_names
        assert arrow_table.column("run_id").to_pylist() == ["run-1"]


def test_times_are_utc_ns_timestamps_exact_to_the_nanosecond():
    arrow_table = to_arrow("md_trades", [trade(0), trade(1)], "run-1")
    ts = arrow_table.column("ts_event")
    assert ts.type == pa.timestamp("ns", tz="UTC")
    assert ts.cast(pa.int64()).to_pylist() == [T0, T0 + 1]


def test_enums_are_stored_as_their_values():
    arrow_table = to_arrow("exec_reports", [one_of_each()["exec_reports"]], "r")
    assert arrow_table.column("side").to_pylist() == ["buy"]
    assert arrow_table.column("state").to_pylist() == ["partially_filled"]


def test_feature_vector_expands_to_one_column_per_feature_set_v1_name_in_order():
    names = layout("features").column_names
    start = names.index(FEATURE_SET_V1[0])
    assert names[start:start + len(FEATURE_SET_V1)] == FEATURE_SET_V1
    assert "values" not in names
    record = one_of_each()["features"]
    arrow_table = to_arrow("features", [record], "r")
    assert [arrow_table.column(n)[0].as_py() for n in FEATURE_SET_V1] == [record.values[n] for n in FEATURE_SET_V1]


def test_feature_missing_from_a_vector_is_nan_not_zero():
    record = one_of_each()["features"]
    partial = record.model_copy(update={"values": {"ret_1": 0.5}})
    arrow_table = to_arrow("features", [partial], "r")
    assert arrow_table.column("ret_1")[0].as_py() == 0.5
    assert math.isnan(arrow_table.column("rsi_14")[0].as_py())


def test_feature_without_a_column_raises_instead_of_being_dropped():
    record = one_of_each()["features"]
    extra = record.model_copy(update={"values": {**record.values, "alpha_42": 1.0}})
    with pytest.raises(ValueError, match="alpha_42"):
        to_arrow("features", [extra], "r")


def test_risk_reject_flattens_its_order_to_order_columns_and_keeps_reason_codes():
    record = one_of_each()["orders_rejected"]
    arrow_table = to_arrow("orders_rejected", [record], "r")
    assert arrow_table.column("order_client_order_id").to_pylist() == [record.order.client_order_id]
    assert arrow_table.column("order_type").to_pylist() == ["limit"]  # not order_order_type
    assert arrow_table.column("order_limit_price").to_pylist() == [187.5]
    assert arrow_table.column("order_ts_event").cast(pa.int64()).to_pylist() == [record.order.ts_event]
    assert arrow_table.column("reasons").to_pylist() == [["max_position", "kill_switch"]]


def test_market_order_limit_price_is_null():
    arrow_table = to_arrow("orders_approved", [one_of_each()["orders_approved"]], "r")
    assert arrow_table.column("limit_price").to_pylist() == [None]


def test_raw_tick_payload_is_stored_as_json_text():
    record = one_of_each()["md_raw"]
    arrow_table = to_arrow("md_raw", [record], "r")
    import orjson

    assert orjson.loads(arrow_table.column("payload")[0].as_py()) == record.payload


def test_records_of_another_model_are_refused():
    with pytest.raises(TypeError, match="md_quotes takes Quote"):
        to_arrow("md_quotes", [trade()], "r")


def test_unknown_table_names_the_known_ones():
    with pytest.raises(KeyError, match="md_trades"):
        layout("md.trades")


def test_raw_payload_when_a_producer_sent_an_int_beyond_64_bits_then_it_lands_as_json_text():
    from topics.serde import decode

    # JSON allows it and the md.raw schema takes any payload; one such message must not fail the insert
    raw = decode("md.raw", b'{"id":"x:1","ts_event":1,"ts_ingest":1,"source":"x","symbol":"A","seq":1,'
                           b'"payload":{"type":"trade","price":100000000000000000000000000000}}')
    table = to_arrow("md_raw", [raw], "r")
    assert table.column("payload").to_pylist() == [b'{"type":"trade","price":100000000000000000000000000000}']
