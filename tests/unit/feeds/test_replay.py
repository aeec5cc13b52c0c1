from __future__ import annotations

import csv
import itertools
import math
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from feeds import make_feed
from feeds.pacing import Pacer
from feeds.replay import BarFileError, ColumnMapping, ReplayFeed
from feeds.replay_presets import PRESETS
from schemas import RawTick

SPOT = "binance-btcusdt-trades.parquet"
FUTURES = "binance-futures-btcusdt-trades-20200222.csv"
EURUSD = "eurusd-quotes-20200101.csv"
BAR_FILES = ("btc-perp-20211231-20220201_1m.csv", "fxcm-gbpusd-m1-bid-2012.csv")


def _ns(text: str) -> int:
    """'2020-01-01 17:00:00.065' (UTC) -> ns since epoch, independent of the code under test."""
    dt = datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=timezone.utc)
    return (int(dt.timestamp()) * 1_000_000 + dt.microsecond) * 1_000


def _csv_rows(path: Path, header: bool = True) -> list[list[str]]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[1:] if header else rows


# --- the real files ---------------------------------------------------------------------------


def test_replay_when_binance_spot_parquet_then_2001_ticks_matching_the_file(real_data):
    ticks = list(ReplayFeed(real_data / SPOT).ticks())
    assert len(ticks) == 2_001
    first, last = ticks[0], ticks[-1]
    assert first.symbol == "BTCUSDT" and first.source == "replay:binance-btcusdt-trades"
    assert first.id == "replay:binance-btcusdt-trades:0" and last.seq == 2_000
    assert first.payload == {
        "type": "trade", "ts": _ns("2021-01-08 00:00:00.278"), "price": 39432.48, "size": 0.000263,
        "side": "sell", "trade_id": "553287559",
    }
    assert first.ts_event == first.payload["ts"]
    assert last.payload["ts"] == _ns("2021-01-08 00:00:46.355")
    assert last.payload["price"] == 39491.76 and last.payload["trade_id"] == "553289559"
    assert last.payload["size"] == pytest.approx(0.014596)


def test_replay_when_buyer_maker_true_then_seller_was_aggressor(real_data):
    file = pl.read_parquet(real_data / SPOT)
    side_by_id = {t.payload["trade_id"]: t.payload["side"] for t in ReplayFeed(real_data / SPOT).ticks()}
    expected = {str(tid): ("sell" if maker == "True" else "buy") for tid, maker in file.select("trade_id", "buyer_maker").iter_rows()}
    assert side_by_id == expected
    assert {"buy", "sell"} == set(side_by_id.values())


def test_replay_when_tardis_futures_csv_then_9999_ticks_matching_the_file(real_data):
    rows = _csv_rows(real_data / FUTURES)
    ticks = list(ReplayFeed(real_data / FUTURES).ticks())
    assert len(ticks) == len(rows) == 9_999
    for tick, row in ((ticks[0], rows[0]), (ticks[-1], rows[-1])):
        _, symbol, ts_us, _, trade_id, side, price, amount = row
        assert tick.symbol == symbol == "BTCUSDT"
        assert tick.payload == {
            "type": "trade", "ts": int(ts_us) * 1_000, "price": float(price), "size": float(amount),
            "side": side, "trade_id": trade_id,
        }
    assert [t.payload["side"] for t in ticks] == [r[5] for r in rows]  # file is time-sorted: same order


def test_replay_when_headerless_eurusd_quotes_then_9500_ticks_matching_the_file(real_data):
    rows = _csv_rows(real_data / EURUSD, header=False)
    ticks = list(ReplayFeed(real_data / EURUSD).ticks())
    assert len(ticks) == len(rows) == 9_500
    assert ticks[0].symbol == "EURUSD"
    assert ticks[0].payload == {
        "type": "quote", "ts": _ns("2020-01-01 17:00:00.065"), "bid": 1.1212, "ask": 1.12172,
        "bid_size": 0.0, "ask_size": 0.0,
    }
    assert ticks[-1].payload["ts"] == _ns("2020-01-01 23:00:52.125")
    assert (ticks[-1].payload["bid"], ticks[-1].payload["ask"]) == (float(rows[-1][1]), float(rows[-1][2]))
    assert all(a.ts_event <= b.ts_event for a, b in itertools.pairwise(ticks))


@pytest.mark.parametrize("bar_file", BAR_FILES)
def test_replay_when_bar_file_then_clear_error_naming_it(real_data, bar_file):
    with pytest.raises(BarFileError, match=f"{bar_file} holds .*bars"):
        ReplayFeed(real_data / bar_file)
    with pytest.raises(BarFileError, match=f"{bar_file} holds OHLC bars"):  # even with a tick mapping
        ReplayFeed(real_data / bar_file, mapping="tardis-trades")


def test_replay_when_resumed_then_equals_tail_of_full_run(real_data):
    feed = ReplayFeed(real_data / FUTURES)
    full = [t.content() for t in feed.ticks()]
    for start in (0, 1, 5_000, 9_998, 9_999):
        assert [t.content() for t in ReplayFeed(real_data / FUTURES).ticks(start)] == full[start:]


def test_replay_when_preset_selected_by_name_then_used_for_any_file_name(real_data, tmp_path):
    renamed = tmp_path / "my-trades.parquet"
    renamed.write_bytes((real_data / SPOT).read_bytes())
    with pytest.raises(ValueError, match="no replay preset matches"):
        ReplayFeed(renamed)
    ticks = list(ReplayFeed(renamed, mapping="binance-spot-trades").ticks())
    assert len(ticks) == 2_001 and ticks[0].source == "replay:my-trades"
    assert set(PRESETS) == {"binance-spot-trades", "tardis-trades", "histdata-quotes"}


def test_make_feed_when_replay_kind_then_replay_feed(real_data):
    feed = make_feed("replay", path=real_data / EURUSD, symbol="EUR/USD")
    assert isinstance(feed, ReplayFeed)
    assert next(feed.ticks()).symbol == "EUR/USD"


# --- mapping behaviour on small files ----------------------------------------------------------


TRADES = ColumnMapping(kind="trade", timestamp="ts", timestamp_unit="ms", price="px", size="qty", side="side", symbol="sym")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_replay_when_column_missing_then_error_names_file_column_and_columns_present(tmp_path):
    path = _write(tmp_path / "t.csv", "ts,px,amount,side,sym\n1,2,3,buy,X\n")
    with pytest.raises(ValueError) as err:
        ReplayFeed(path, mapping=TRADES)
    message = str(err.value)
    assert "t.csv" in message and "['qty']" in message
    assert "columns present: ['ts', 'px', 'amount', 'side', 'sym']" in message


def test_replay_when_file_missing_then_file_not_found_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        ReplayFeed(tmp_path / "nope.csv", mapping=TRADES)


def test_replay_when_timestamps_out_of_order_and_tied_then_sorted_stably(tmp_path):
    path = _write(tmp_path / "t.csv", "ts,px,qty,side,sym\n3,1,1,buy,X\n1,2,1,buy,X\n3,3,1,sell,X\n1,4,1,sell,X\n2,5,1,buy,X\n")
    ticks = list(ReplayFeed(path, mapping=TRADES).ticks())
    assert [t.payload["price"] for t in ticks] == [2.0, 4.0, 5.0, 1.0, 3.0]
    assert [t.seq for t in ticks] == [0, 1, 2, 3, 4]
    assert [t.payload["trade_id"] for t in ticks] == ["1", "3", "4", "0", "2"]  # file row numbers


def test_replay_when_values_missing_or_unparseable_then_emitted_raw_not_dropped(tmp_path):
    path = _write(
        tmp_path / "t.csv",
        "ts,px,qty,side,sym\n1000,10.5,1,BUY,X\n2000,n/a,1,sell,X\n,11,1,buy,X\n3000,12,,sideways,X\nlater,13,2,,\n",
    )
    ticks = list(ReplayFeed(path, mapping=TRADES).ticks())
    assert len(ticks) == 5
    p = [t.payload for t in ticks]
    assert p[0]["side"] == "buy" and p[0]["price"] == 10.5  # case folded
    assert p[1]["price"] == "n/a"  # unparseable: the raw text, for the dead-letter reason
    assert p[2]["ts"] is None and ticks[2].ts_event == 2_000_000_000  # borrows the previous stamp
    assert p[3]["size"] is None and p[3]["side"] == "sideways"
    assert p[4]["ts"] == "later" and p[4]["side"] == "unknown" and ticks[4].symbol == "UNKNOWN"
    assert [t.ts_event for t in ticks] == [1_000_000_000, 2_000_000_000, 2_000_000_000, 3_000_000_000, 3_000_000_000]


def test_replay_when_parquet_has_boolean_buyer_maker_and_nan_then_mapped_and_kept(tmp_path):
    path = tmp_path / "bm.parquet"
    pl.DataFrame({
        "t": [1, 2, 3, 4], "p": [1.0, float("nan"), 3.0, None], "q": [1.0, 1.0, 1.0, 1.0],
        "maker": [True, False, None, True],
    }).write_parquet(path)
    mapping = ColumnMapping(kind="trade", timestamp="t", timestamp_unit="s", price="p", size="q", buyer_maker="maker", fixed_symbol="ABC")
    ticks = list(ReplayFeed(path, mapping=mapping).ticks())
    assert [t.payload["side"] for t in ticks] == ["sell", "buy", "unknown", "sell"]
    assert math.isnan(ticks[1].payload["price"]) and ticks[3].payload["price"] is None
    assert [t.ts_event for t in ticks] == [1_000_000_000, 2_000_000_000, 3_000_000_000, 4_000_000_000]
    assert [t.payload["trade_id"] for t in ticks] == ["0", "1", "2", "3"]


def test_replay_when_datetime_strings_then_naive_read_as_utc_and_offsets_honoured(tmp_path):
    path = _write(tmp_path / "q.csv", "time;b;a\n2024-03-01 10:00:00.5;1.0;1.1\n2024-03-01 11:00:00+01:00;1.0;1.2\n")
    mapping = ColumnMapping(kind="quote", timestamp="time", timestamp_unit="datetime", bid="b", ask="a", fixed_symbol="Q", separator=";")
    naive_only = list(ReplayFeed(path, mapping=mapping).ticks())
    assert naive_only[0].payload["ts"] == _ns("2024-03-01 10:00:00.500")
    assert naive_only[0].payload["bid_size"] == 0.0 and naive_only[0].payload["ask_size"] == 0.0
    with_offsets = _write(tmp_path / "q2.csv", "time;b;a\n2024-03-01 11:00:00+01:00;1.0;1.2\n")
    assert next(ReplayFeed(with_offsets, mapping=mapping).ticks()).ts_event == _ns("2024-03-01 10:00:00.000")


def test_replay_when_headerless_csv_with_custom_format_then_named_and_parsed(tmp_path):
    path = _write(tmp_path / "fx.csv", "20240102 093000250|1.5|1.6|7|9\n")
    mapping = ColumnMapping(
        kind="quote", timestamp="when", timestamp_unit="datetime", timestamp_format="%Y%m%d %H%M%S%3f",
        bid="bid", ask="ask", bid_size="bs", ask_size="as", fixed_symbol="FX", has_header=False,
        column_names=("when", "bid", "ask", "bs", "as"), separator="|",
    )
    (tick,) = ReplayFeed(path, mapping=mapping).ticks()
    assert tick.payload == {"type": "quote", "ts": _ns("2024-01-02 09:30:00.250"), "bid": 1.5, "ask": 1.6, "bid_size": 7.0, "ask_size": 9.0}


def test_replay_when_speed_2x_then_paced_at_half_event_gaps(tmp_path, fake_clock):
    path = _write(tmp_path / "t.csv", "ts,px,qty,side,sym\n0,1,1,buy,X\n1000,1,1,buy,X\n1000,1,1,buy,X\n4000,1,1,buy,X\n")
    feed = ReplayFeed(path, mapping=TRADES, speed=2.0, pacer_factory=lambda s: Pacer(s, clock=fake_clock.clock, sleep=fake_clock.sleep))
    start = fake_clock.now_ns
    assert len(list(feed.ticks())) == 4
    assert fake_clock.sleeps == pytest.approx([0.5, 1.5])
    assert fake_clock.now_ns - start == 2_000_000_000


def test_mapping_when_incomplete_then_rejected():
    with pytest.raises(ValueError, match="needs the price and size"):
        ColumnMapping(kind="trade", timestamp="t")
    with pytest.raises(ValueError, match="either a side column or a buyer_maker"):
        ColumnMapping(kind="trade", timestamp="t", price="p", size="q", side="s", buyer_maker="m")


def test_replay_when_no_symbol_anywhere_then_error(tmp_path):
    path = _write(tmp_path / "t.csv", "ts,px,qty\n1,2,3\n")
    mapping = ColumnMapping(kind="trade", timestamp="ts", price="px", size="qty")
    with pytest.raises(ValueError, match="no symbol"):
        ReplayFeed(path, mapping=mapping)
    assert next(ReplayFeed(path, mapping=mapping, symbol="ZZ").ticks()).symbol == "ZZ"


def test_replay_ticks_when_validated_then_good_rows_are_valid_records(real_data):
    for name in (SPOT, FUTURES, EURUSD):
        tick = next(ReplayFeed(real_data / name).ticks())
        assert RawTick.model_validate(tick.model_dump()) == tick


def test_make_feed_when_cli_passes_uniform_options_then_replay_ignores_synthetic_ones(real_data):
    feed = make_feed("replay", path=real_data / FUTURES, symbols=("BTCUSDT",), rate=None, speed=0.0, seed=7)
    assert isinstance(feed, ReplayFeed) and len(feed) == 9_999
