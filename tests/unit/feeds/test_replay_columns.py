"""Mapping a user's tick file: detection from column names, --columns specs, mapping files, errors."""

from __future__ import annotations

import gzip
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from feeds.replay import BarFileError, ReplayFeed
from feeds.replay_columns import (
    MappingError,
    describe_mapping,
    detect_roles,
    guess_unit,
    load_mapping_file,
    parse_columns_spec,
    resolve_mapping,
)

T0_NS = 1_700_000_000_123_456_789  # 2023-11-14T22:13:20.123456789Z


def _user_parquet(path: Path) -> Path:
    """What a user exports: ts in ns, symbol, price, size, side, trade_id."""
    pl.DataFrame({
        "ts": [T0_NS + 2_000, T0_NS, T0_NS + 1_000],
        "symbol": ["ETHUSD", "BTCUSD", "BTCUSD"],
        "price": [2_000.5, 37_000.0, 37_001.0],
        "size": [1.5, 0.25, 0.5],
        "side": ["SELL", "buy", "Buy"],
        "trade_id": [3, 1, 2],
    }).write_parquet(path)
    return path


def test_resolve_when_user_parquet_with_common_names_then_detected_and_replayed_exactly(tmp_path):
    path = _user_parquet(tmp_path / "mytrades.parquet")
    resolved = resolve_mapping(path)
    assert describe_mapping(resolved.mapping) == (
        "kind=trade,ts=ts:ns,price=price,size=size,side=side,trade_id=trade_id,symbol=symbol")
    assert "detected from column names" in resolved.origin and "unit ns" in resolved.origin
    ticks = list(ReplayFeed(path, resolved.mapping).ticks())
    assert [(t.ts_event, t.symbol, t.payload["price"], t.payload["side"], t.payload["trade_id"]) for t in ticks] == [
        (T0_NS, "BTCUSD", 37_000.0, "buy", "1"),
        (T0_NS + 1_000, "BTCUSD", 37_001.0, "buy", "2"),
        (T0_NS + 2_000, "ETHUSD", 2_000.5, "sell", "3"),
    ]


@pytest.mark.parametrize("columns, expected", [
    (["Timestamp", "Price", "Qty", "Aggressor", "Ticker"],
     {"timestamp": "Timestamp", "price": "Price", "size": "Qty", "side": "Aggressor", "symbol": "Ticker"}),
    (["time", "px", "quantity", "is_buyer_maker", "instrument", "id"],
     {"timestamp": "time", "price": "px", "size": "quantity", "buyer_maker": "is_buyer_maker",
      "symbol": "instrument", "trade_id": "id"}),
    (["ts", "bid", "ask", "Bid Size", "ask_qty"],
     {"timestamp": "ts", "bid": "bid", "ask": "ask", "bid_size": "Bid Size", "ask_size": "ask_qty"}),
    (["timestamp", "side", "is_buyer_maker", "price", "amount"],  # an explicit aggressor beats buyer_maker
     {"timestamp": "timestamp", "side": "side", "price": "price", "size": "amount"}),
])
def test_detect_roles_when_common_names_then_each_role_found(columns, expected):
    assert detect_roles(columns) == expected


@pytest.mark.parametrize("values, unit", [
    (["1582329602", "1582329603"], "s"),
    (["1582329602.5"], "s"),
    (["1582329602111"], "ms"),
    (["1582329602111000"], "us"),
    (["1582329602111000123"], "ns"),
    (["2020-02-22T00:00:02.111Z"], "datetime"),
    (["2012-02-01 00:00:00+00:00", ""], "datetime"),
])
def test_guess_unit_when_values_then_unit_by_magnitude_or_text(values, unit):
    assert guess_unit(pl.Series(values)) == unit


def test_guess_unit_when_integer_column_then_by_magnitude():
    assert guess_unit(pl.Series([1_582_329_602_111])) == "ms"


@pytest.mark.parametrize("unit, stamp", [
    ("s", "1582329602"), ("ms", "1582329602111"), ("us", "1582329602111000"), ("ns", "1582329602111000000"),
    ("datetime", "2020-02-22T00:00:02.111+00:00"),
])
def test_resolve_when_csv_timestamps_in_any_unit_then_same_event_time(tmp_path, unit, stamp):
    path = tmp_path / "t.csv"
    path.write_text(f"time,price,size,symbol\n{stamp},10.0,1.0,X\n")
    resolved = resolve_mapping(path)
    assert resolved.mapping.timestamp_unit == unit
    tick = next(ReplayFeed(path, resolved.mapping).ticks())
    expected = 1_582_329_602_000_000_000 if unit == "s" else 1_582_329_602_111_000_000
    assert tick.ts_event == expected


def test_parse_columns_spec_when_roles_units_and_formats_then_mapping_fields():
    assert parse_columns_spec("ts=time:ms, price=px,size=qty,symbol=ticker") == {
        "timestamp": "time", "timestamp_unit": "ms", "price": "px", "size": "qty", "symbol": "ticker"}
    assert parse_columns_spec("ts=when:iso,kind=quote") == {
        "timestamp": "when", "timestamp_unit": "datetime", "kind": "quote"}
    assert parse_columns_spec("ts=when:%Y%m%d %H:%M:%S") == {
        "timestamp": "when", "timestamp_unit": "datetime", "timestamp_format": "%Y%m%d %H:%M:%S"}


@pytest.mark.parametrize("spec, message", [
    ("prce=px", "unknown role 'prce'"),
    ("price", "not ROLE=COLUMN"),
    ("ts=time:minutes", "timestamp unit 'minutes'"),
    ("kind=bar", "trade or quote"),
])
def test_parse_columns_spec_when_malformed_then_error_names_the_item(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_columns_spec(spec)


def test_resolve_when_columns_override_one_role_then_rest_detected(tmp_path, real_data):
    path = tmp_path / "futures.csv"
    path.write_text((real_data / "binance-futures-btcusdt-trades-20200222.csv").read_text())
    resolved = resolve_mapping(path, overrides=parse_columns_spec("ts=local_timestamp:us"))
    m = resolved.mapping
    assert (m.timestamp, m.timestamp_unit, m.price, m.size, m.side, m.symbol) == (
        "local_timestamp", "us", "price", "amount", "side", "symbol")
    assert "with --columns" in resolved.origin


def test_resolve_when_no_names_match_then_error_lists_columns_found_and_roles_missing(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("when,value,how_much\n1,2,3\n")
    with pytest.raises(MappingError) as caught:
        resolve_mapping(path)
    message = str(caught.value)
    assert "odd.csv" in message and "['when', 'value', 'how_much']" in message
    assert "a timestamp column" in message and "price and size" in message and "a symbol" in message


def test_resolve_when_no_symbol_column_then_path_symbol_makes_it_mappable(tmp_path):
    path = tmp_path / "nosym.csv"
    path.write_text("ts,price,size\n1700000000000,1.0,2.0\n")
    with pytest.raises(MappingError, match="PATH@SYMBOL"):
        resolve_mapping(path)
    assert resolve_mapping(path, symbol="ABC").mapping.kind == "trade"


def test_resolve_when_mapping_names_a_column_the_file_lacks_then_error_names_it(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("ts,price,size,symbol\n1,2,3,X\n")
    with pytest.raises(MappingError, match=r"column\(s\) \['qty'\] the file does not have"):
        resolve_mapping(path, overrides={"size": "qty"})


def test_resolve_when_bar_file_then_bar_error_pointing_to_the_bar_feed(real_data):
    with pytest.raises(BarFileError, match="--feed bars"):
        resolve_mapping(real_data / "fxcm-gbpusd-m1-bid-2012.csv")


def test_resolve_when_real_files_by_name_then_presets(real_data):
    assert resolve_mapping(real_data / "eurusd-quotes-20200101.csv").origin == "preset histdata-quotes (file name)"
    futures = resolve_mapping(real_data / "binance-futures-btcusdt-trades-20200222.csv", preset="tardis-trades")
    assert futures.origin == "preset tardis-trades" and futures.mapping.size == "amount"


def test_resolve_when_headerless_file_renamed_then_preset_by_name(tmp_path, real_data):
    path = tmp_path / "fx.csv"
    path.write_text((real_data / "eurusd-quotes-20200101.csv").read_text())
    with pytest.raises(MappingError, match="Columns found"):
        resolve_mapping(path)
    resolved = resolve_mapping(path, preset="histdata-quotes")
    assert len(ReplayFeed(path, resolved.mapping)) == 9_500


def test_mapping_file_when_default_and_per_glob_tables_then_each_file_its_mapping(tmp_path):
    toml = tmp_path / "map.toml"
    toml.write_text(
        'timestamp = "t"\ntimestamp_unit = "ms"\nkind = "trade"\nprice = "p"\nsize = "q"\nfixed_symbol = "XY"\n'
        '[files."*quotes*"]\nkind = "quote"\nbid = "b"\nask = "a"\n'
    )
    (tmp_path / "trades.csv").write_text("t,p,q\n1700000000000,1,2\n")
    (tmp_path / "my-quotes.csv").write_text("t,b,a\n1700000000000,1,2\n")
    loaded = load_mapping_file(toml)
    trades = resolve_mapping(tmp_path / "trades.csv", mapping_file=loaded).mapping
    quotes = resolve_mapping(tmp_path / "my-quotes.csv", mapping_file=loaded).mapping
    assert (trades.kind, trades.price, trades.fixed_symbol) == ("trade", "p", "XY")
    assert (quotes.kind, quotes.bid, quotes.price, quotes.timestamp_unit) == ("quote", "b", None, "ms")


def test_mapping_file_when_unknown_key_then_error_names_it(tmp_path):
    toml = tmp_path / "map.toml"
    toml.write_text('timestamp = "t"\nprise = "p"\n')
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['prise'\]"):
        load_mapping_file(toml)


def test_resolve_when_gzip_and_zstd_csv_then_read_like_the_plain_file(tmp_path):
    import pyarrow as pa  # polars reads .zst itself; pyarrow only writes the test's file

    text = "timestamp,price,size,symbol\n1700000000000,1.5,2.0,X\n1700000000001,1.6,3.0,X\n"
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(text.encode()))
    with pa.CompressedOutputStream(str(tmp_path / "t.csv.zst"), "zstd") as out:
        out.write(text.encode())
    (tmp_path / "t.csv").write_text(text)
    read = {}
    for name in ("t.csv", "t.csv.gz", "t.csv.zst"):
        path = tmp_path / name
        read[name] = [(t.ts_event, t.payload["price"]) for t in ReplayFeed(path, resolve_mapping(path).mapping).ticks()]
    assert read["t.csv"] == read["t.csv.gz"] == read["t.csv.zst"] == [
        (1_700_000_000_000_000_000, 1.5), (1_700_000_000_001_000_000, 1.6)]


def test_resolve_when_iso_strings_with_offset_then_utc(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("time,price,size,symbol\n2024-03-01T10:00:00+01:00,1,1,X\n")
    tick = next(ReplayFeed(path, resolve_mapping(path).mapping).ticks())
    assert tick.ts_event == int(datetime(2024, 3, 1, 9, tzinfo=timezone.utc).timestamp()) * 1_000_000_000
