from __future__ import annotations

import pytest

from feeds import make_feed
from feeds.synthetic import SyntheticConfig, SyntheticFeed


def test_make_feed_when_synthetic_with_fields_then_configured_feed():
    feed = make_feed("synthetic", seed=3, max_ticks=10, speed=0.0)
    assert isinstance(feed, SyntheticFeed)
    assert feed.config.seed == 3
    assert [t.seq for t in feed.ticks()] == list(range(10))


def test_make_feed_when_synthetic_with_config_then_used_as_is():
    config = SyntheticConfig(seed=5, max_ticks=3)
    assert make_feed("synthetic", config=config).config is config
    with pytest.raises(ValueError, match="either config= or config fields"):
        make_feed("synthetic", config=config, seed=6)


def test_make_feed_when_unknown_field_then_rejected():
    with pytest.raises(ValueError, match="not_a_field"):
        make_feed("synthetic", not_a_field=1)


def test_make_feed_when_unknown_kind_then_error_lists_kinds():
    with pytest.raises(ValueError, match="unknown feed kind 'tardis'.*synthetic"):
        make_feed("tardis")
    with pytest.raises(ValueError, match="needs path"):
        make_feed("replay")


def test_make_feed_when_cli_passes_uniform_options_then_synthetic_takes_what_applies():
    feed = make_feed("synthetic", path=None, symbols=("AAA", "BBB"), rate=None, speed=0.0, seed=9, max_ticks=50)
    assert feed.config.symbols == ("AAA", "BBB") and feed.config.seed == 9 and feed.speed == 0.0
    assert {t.symbol for t in feed.ticks()} == {"AAA", "BBB"}


def test_make_feed_when_rate_given_then_event_time_follows_wall_clock_at_that_density():
    feed = make_feed("synthetic", rate=500.0)
    assert feed.config.ticks_per_second == 500.0
    assert feed.speed == 1.0


def test_make_feed_when_rate_given_then_the_open_carries_that_rate_not_twice_it():
    # a U-shaped day averages N ticks/s but runs at 2N at the open, where every paced run starts
    paced = make_feed("synthetic", rate=500.0)
    unpaced = SyntheticFeed(paced.config.model_copy(update={"max_ticks": 20_000}))
    ticks = list(unpaced.ticks())
    first_ten_seconds = sum(1 for t in ticks if t.ts_event < ticks[0].ts_event + 10 * 10**9)
    assert 4_500 <= first_ten_seconds <= 5_500
    assert make_feed("synthetic", rate=500.0, u_shape=3.0).config.u_shape == 3.0


def test_make_feed_when_synthetic_given_a_path_then_rejected():
    with pytest.raises(ValueError, match="reads no file"):
        make_feed("synthetic", path="x.csv")


def test_make_feed_when_replay_given_rate_then_rejected(tmp_path):
    with pytest.raises(ValueError, match="use speed|pace a replay with speed"):
        make_feed("replay", path=tmp_path / "x.csv", rate=10.0)


def test_make_feed_when_alpaca_without_symbols_then_error_asks_for_them():
    with pytest.raises(ValueError, match="--symbols"):
        make_feed("alpaca")


def test_make_feed_when_alpaca_without_keys_then_error_names_the_variables(monkeypatch, tmp_path):
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    with pytest.raises(ValueError, match="APCA_API_KEY_ID"):
        make_feed("alpaca", symbols=("AAPL",))
