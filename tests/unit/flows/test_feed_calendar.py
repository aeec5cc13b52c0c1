"""Which trading calendar a run's desk gets (flows/pipeline.py ``feed_calendar``,
``TradingConfig.from_settings``) and that split stages receive it (tapeflow/split_run.py)."""

from __future__ import annotations

from pathlib import Path

from config.settings import Settings
from feeds.synthetic import SyntheticConfig, SyntheticFeed
from flows.pipeline import TradingConfig, feed_calendar
from tapeflow.split_run import SplitRun

SUMMER_OPEN_NS = 1_719_840_600 * 1_000_000_000  # 2024-07-01 13:30 UTC (09:30 New York)


class _ReplayLike:
    """A feed that declares no calendar (as replayed files do)."""


def test_feed_calendar_when_synthetic_default_then_xnys():
    assert feed_calendar(SyntheticFeed(SyntheticConfig())) == "XNYS"


def test_feed_calendar_when_synthetic_session_runs_past_the_nyse_close_then_24_7():
    # a 6.5 h session from 09:30 New York ends 16:00 in summer, but from 14:30 UTC it ends 17:00 New York
    assert feed_calendar(SyntheticFeed(SyntheticConfig(start_ns=SUMMER_OPEN_NS))) == "XNYS"
    assert feed_calendar(SyntheticFeed(SyntheticConfig(start_ns=SUMMER_OPEN_NS + 3_600 * 10**9))) == "24/7"


def test_feed_calendar_when_feed_declares_none_then_24_7():
    assert feed_calendar(_ReplayLike()) == "24/7"


def test_trading_config_when_setting_given_then_it_overrides_the_feed(monkeypatch):
    monkeypatch.delenv("TAPEFLOW_CALENDAR", raising=False)
    assert TradingConfig.from_settings(Settings(), None, calendar="24/7").desk.venue.calendar == "24/7"
    assert TradingConfig.from_settings(Settings(), None).desk.venue.calendar == "XNYS"
    monkeypatch.setenv("TAPEFLOW_CALENDAR", "XNYS")
    assert TradingConfig.from_settings(Settings(), None, calendar="24/7").desk.venue.calendar == "XNYS"


def test_split_run_when_calendar_chosen_then_every_stage_gets_it(tmp_path: Path):
    split = SplitRun("127.0.0.1:1", "p", tmp_path, "run", "chdb:///x", None, ("trade",), tmp_path, calendar="24/7")
    assert split.stage_env()["TAPEFLOW_CALENDAR"] == "24/7"
