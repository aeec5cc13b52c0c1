"""Reading bar files: detected columns, the interval, missing fields left None, bad rows refused."""

from __future__ import annotations

import pytest

from feeds.bar_replay import BarFileError, BarFileFeed, read_bar_file

BTC = "btc-perp-20211231-20220201_1m.csv"
FX = "fxcm-gbpusd-m1-bid-2012.csv"


def test_bar_feed_when_real_btc_file_then_45031_1m_bars_with_volume_and_nothing_else_invented(real_data):
    feed = BarFileFeed([(real_data / BTC, "BTC-PERP")])
    assert (len(feed), feed.interval) == (45_031, "1m")
    first = next(feed.bars())[0]
    assert (first.bar_start, first.bar_end, first.open, first.close, first.volume) == (
        1_640_991_660_000_000_000, 1_640_991_720_000_000_000, 46_319.0, 46_377.0, 2_300_413.7295)
    assert (first.vwap, first.trade_count, first.buy_volume, first.sell_volume) == (None, None, None, None)
    assert first.id == "BTC-PERP:1m:1640991660000000000" and first.ts_event == first.bar_end


def test_bar_feed_when_fx_file_without_volume_then_volume_none_and_offsets_read(real_data):
    feed = BarFileFeed([(real_data / FX, "GBPUSD")])
    bars = [b for batch in feed.bars(max_bars=10_000) for b in batch]
    assert len(bars) == 30_117 and all(b.volume is None for b in bars)
    assert bars[0].bar_start == 1_328_054_400_000_000_000  # 2012-02-01 00:00:00+00:00
    assert all(a.bar_end <= b.bar_end for a, b in zip(bars, bars[1:]))
    assert "left empty: volume" in feed.lines[0]


def test_bar_feed_when_two_symbols_then_merged_by_bar_end_and_resumable_at_any_index(tmp_path):
    (tmp_path / "a.csv").write_text("ts,o,h,l,c,symbol\n0,1,2,1,2,A\n1,2,2,1,1,A\n2,1,1,1,1,A\n")
    (tmp_path / "b.csv").write_text("ts,o,h,l,c\n1,5,5,5,5\n2,5,6,5,6\n")
    feed = BarFileFeed([(tmp_path / "a.csv", None), (tmp_path / "b.csv", "B")])
    assert feed.interval == "1s"
    whole = [(b.symbol, b.bar_end) for batch in feed.bars(max_bars=1) for b in batch]
    assert whole == [("A", 1e9), ("A", 2e9), ("B", 2e9), ("A", 3e9), ("B", 3e9)]
    assert [(b.symbol, b.bar_end) for batch in feed.bars(3) for b in batch] == whole[3:]


@pytest.mark.parametrize("rows, message", [
    ("0,1,2,1,2\n60,1,0.5,1,1\n", "OHLC out of order"),
    ("0,1,2,1,2\n60,x,2,1,1\n", "unreadable or missing open/high/low/close"),
    ("0,1,2,1,2\n60,0,2,0,1\n", "a price not above 0"),
    ("0,1,2,1,2\n0,1,2,1,2\n", "second bar of its symbol"),
    ("0,1,2,1,2\n60,1,NaN,1,1\n", "a NaN or infinite value"),
])
def test_read_bar_file_when_a_bad_row_then_refused_naming_the_line(tmp_path, rows, message):
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,open,high,low,close\n" + rows)
    with pytest.raises(BarFileError, match=f"{message}.*line 3"):
        read_bar_file(path, "X")


def test_read_bar_file_when_spacing_unknown_then_refused_naming_the_known_intervals(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("timestamp,open,high,low,close\n0,1,1,1,1\n3600,1,1,1,1\n")
    with pytest.raises(BarFileError, match="3600 s apart.*1m"):
        read_bar_file(path, "X")


def test_read_bar_file_when_no_symbol_then_refused_pointing_to_path_at_symbol(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("timestamp,open,high,low,close\n0,1,1,1,1\n60,1,1,1,1\n")
    with pytest.raises(BarFileError, match="PATH@SYMBOL"):
        read_bar_file(path)


@pytest.mark.parametrize("volume, message", [("n/a", "unreadable volume"), ("-1", "negative volume"),
                                             ("inf", "NaN or infinite")])
def test_read_bar_file_when_a_volume_is_bad_then_refused_not_taken_as_missing(tmp_path, volume, message):
    path = tmp_path / "v.csv"
    path.write_text(f"timestamp,open,high,low,close,volume\n0,1,2,1,2,5\n60,1,2,1,1,{volume}\n")
    with pytest.raises(BarFileError, match=f"{message}.*line 3"):
        read_bar_file(path, "X")


def test_read_bar_file_when_a_volume_cell_is_empty_then_that_bar_has_none(tmp_path):
    path = tmp_path / "v.csv"
    path.write_text("timestamp,open,high,low,close,volume\n0,1,2,1,2,5\n60,1,2,1,1,\n")
    frame, interval, _ = read_bar_file(path, "X")
    assert frame["volume"].to_list() == [5.0, None] and interval == "1m"


def test_bar_feed_when_paced_then_each_instant_handed_over_when_its_bar_end_is_due(tmp_path, fake_clock):
    from feeds.pacing import Pacer

    (tmp_path / "a.csv").write_text("ts,o,h,l,c,symbol\n0,1,1,1,1,A\n0,1,1,1,1,B\n60,1,1,1,1,A\n120,1,1,1,1,A\n")
    feed = BarFileFeed([(tmp_path / "a.csv", None)], speed=60.0,
                       pacer_factory=lambda speed: Pacer(speed, clock=fake_clock.clock, sleep=fake_clock.sleep))
    handed = []
    for batch in feed.bars(max_bars=100):
        handed.append(([b.symbol for b in batch], fake_clock.now_ns))
    start = handed[0][1]
    # one instant per handover; a minute of bars is one second of wall time at 60x
    assert [(names, round((ns - start) / 1e9, 3)) for names, ns in handed] == [
        (["A", "B"], 0.0), (["A"], 1.0), (["A"], 2.0)]
