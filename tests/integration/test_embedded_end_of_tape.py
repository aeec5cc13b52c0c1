"""The embedded run trades its last bar on the feed's end-of-tape batch, in the tape's own data flow,
instead of on the engine's end of input (which reaches one stage after another, milliseconds each),
and lands the same records as the end of input alone gives."""

from __future__ import annotations

import pytest

import flows.pipeline as pipeline
from feeds import make_feed
from flows.source import FeedSource
from tests.integration.embedded_runs import run_embedded, table_content
from trading.desk import T_PNL, TradingDesk

pytestmark = pytest.mark.integration

TABLES = ("md_bars", "features", "signals", "orders_intent", "orders_approved", "exec_reports", "positions", "pnl")


def _run(wh, monkeypatch, run_id: str, end_of_tape: bool) -> list:
    """One run cut short mid-bar (max_ticks); returns what the desk's end-of-input flush gave."""
    flushed: list = []

    class WatchedDesk(TradingDesk):
        def flush(self):
            out = super().flush()
            flushed.extend(out)
            return out

    monkeypatch.setattr(pipeline, "TradingDesk", WatchedDesk)
    if not end_of_tape:
        monkeypatch.setattr(pipeline, "FeedSource", lambda feed, progress, limits, end_of_tape: FeedSource(
            feed, progress, limits))
    run_embedded(wh, make_feed("synthetic", seed=5, ticks_per_second=100), run_id, max_ticks=15_000, trading=True)
    monkeypatch.undo()
    return flushed


def test_embedded_run_when_the_tape_ends_mid_bar_then_the_last_bar_is_traded_before_the_end_of_input_same_records(
        module_warehouse, monkeypatch):
    wh = module_warehouse
    flushed_with_marker = _run(wh, monkeypatch, "marked", end_of_tape=True)
    flushed_without = _run(wh, monkeypatch, "unmarked", end_of_tape=False)

    last_tick = wh.query("SELECT toUnixTimestamp64Nano(max(ts_event)) FROM md_trades WHERE run_id = 'marked'").scalar()
    last_bar_pnl = wh.query("SELECT count() FROM pnl FINAL WHERE run_id = 'marked' "
                            "AND toUnixTimestamp64Nano(ts_event) > {t:Int64}", {"t": int(last_tick)}).scalar()
    assert last_bar_pnl > 0  # the bar the tape's end cut short was closed and marked to market
    # without the end-of-tape batch the desk worked that bar only when the end of input reached it
    assert [r for table, r in flushed_without if table == T_PNL]
    assert flushed_with_marker == []  # with it, nothing was left for the end of input
    for table in TABLES:
        marked, unmarked = table_content(wh, table, "marked"), table_content(wh, table, "unmarked")
        assert marked == unmarked and marked, table
