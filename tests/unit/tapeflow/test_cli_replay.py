"""--path values (files, directories, globs, PATH@SYMBOL) and the feed the run builds from them."""

from __future__ import annotations

import pytest

from feeds.replay import ReplayFeed
from feeds.replay_merge import MergedReplayFeed
from tapeflow.cli_replay import expand_paths, replay_feed, run_feed, split_symbol

TRADES = "ts,price,size\n1700000000000,10,1\n1700000000002,11,1\n"
QUOTES = "ts,bid,ask\n1700000000001,9,12\n"


@pytest.mark.parametrize("spec, expected", [
    ("trades.csv@BTCUSDT", ("trades.csv", "BTCUSDT")),
    ("trades.csv", ("trades.csv", None)),
    ("dir/@x/trades.csv", ("dir/@x/trades.csv", None)),
    ("@X", ("@X", None)),
])
def test_split_symbol_when_at_suffix_then_symbol(spec, expected):
    assert split_symbol(spec) == expected


def test_split_symbol_when_file_name_holds_an_at_then_it_is_the_file(tmp_path):
    path = tmp_path / "a@b.csv"
    path.write_text("x")
    assert split_symbol(str(path)) == (str(path), None)


def test_expand_paths_when_directory_glob_and_file_then_each_file_in_order(tmp_path):
    (tmp_path / "d").mkdir()
    for name in ("b.csv", "a.csv.gz", "notes.md"):
        (tmp_path / "d" / name).write_text("x")
    (tmp_path / "q1.csv").write_text("x")
    (tmp_path / "q2.csv").write_text("x")
    found = expand_paths([f"{tmp_path}/d@AAA", f"{tmp_path}/q*.csv", str(tmp_path / "q1.csv")])
    assert [(p.file.name, p.symbol) for p in found] == [
        ("a.csv.gz", "AAA"), ("b.csv", "AAA"), ("q1.csv", None), ("q2.csv", None), ("q1.csv", None)]


@pytest.mark.parametrize("spec, message", [("nope.csv", "not found: .*nope.csv"), ("none*.csv", "no file matches")])
def test_expand_paths_when_nothing_there_then_error_names_it(tmp_path, spec, message):
    with pytest.raises(FileNotFoundError, match=message):
        expand_paths([str(tmp_path / spec)])


def test_replay_feed_when_trades_and_quotes_then_merged_and_mapping_lines(tmp_path):
    (tmp_path / "trades.csv").write_text(TRADES)
    (tmp_path / "quotes.csv").write_text(QUOTES)
    feed, lines = replay_feed([f"{tmp_path}/trades.csv@X", f"{tmp_path}/quotes.csv@X"])
    assert isinstance(feed, MergedReplayFeed)
    assert [t.payload["type"] for t in feed.ticks()] == ["trade", "quote", "trade"]
    assert "kind=trade,ts=ts:ms,price=price,size=size" in lines[0] and "as X" in lines[0]
    assert "kind=quote,ts=ts:ms,bid=bid,ask=ask" in lines[1]
    assert lines[2] == "merging 2 files in event time (trade, quote)"


def test_replay_feed_when_one_file_then_plain_replay(tmp_path):
    (tmp_path / "trades.csv").write_text(TRADES)
    feed, lines = replay_feed([f"{tmp_path}/trades.csv@X"], columns="ts=ts:ms")
    assert isinstance(feed, ReplayFeed) and len(lines) == 1 and "with --columns" in lines[0]


def test_replay_feed_when_preset_and_mapping_file_then_refused(tmp_path):
    with pytest.raises(ValueError, match="either --preset or --mapping"):
        replay_feed(["x.csv"], preset="tardis-trades", mapping=tmp_path / "m.toml")


@pytest.mark.parametrize("kind, kwargs, message", [
    ("synthetic", {"columns": "ts=t"}, "--columns map the columns of a replayed file"),
    ("synthetic", {"preset": "tardis-trades"}, "--preset map"),
    ("synthetic", {"paths": ["a", "b"]}, "several --path"),
    ("replay", {"paths": []}, "needs --path"),
])
def test_run_feed_when_option_does_not_apply_then_refused(kind, kwargs, message):
    args = {"paths": None, "columns": None, "mapping": None, "preset": None} | kwargs
    with pytest.raises(ValueError, match=message):
        run_feed(kind, args["paths"], args["columns"], args["mapping"], args["preset"], {}, print)


def test_run_feed_when_replay_with_rate_then_refused(tmp_path):
    with pytest.raises(ValueError, match="--speed"):
        run_feed("replay", ["x.csv"], None, None, None, {"rate": 5.0}, print)
