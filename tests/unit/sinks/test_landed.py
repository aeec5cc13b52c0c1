"""The landed-id window: a tick id sealed once is never sealed again while it is in the window."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from sinks.landed import LandedIds, LandedTicks, id_hashes


def hashes(ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return id_hashes(pl.Series(ids, dtype=pl.Utf8))


def ids(prefix: str, start: int, stop: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(start, stop)]


def trades(names: list[str]) -> pa.Table:
    return pa.table({"id": pa.array(names, pa.string()), "price": pa.array([float(i) for i in range(len(names))])})


def test_an_id_seen_before_or_earlier_in_the_block_is_dropped_and_the_first_copy_kept():
    window = LandedIds(capacity=100)
    window.admit(*hashes(["a", "b"]))
    keep = window.admit(*hashes(["c", "a", "d", "c", "b", "e", "d"]))
    assert keep.tolist() == [True, False, True, False, False, True, False]
    assert not window.admit(*hashes(["c", "d", "e"])).any()  # what a block kept joined the window


def test_the_window_keeps_at_least_its_capacity_of_the_newest_ids_and_forgets_older_ones():
    window = LandedIds(capacity=1_000)
    for start in range(0, 5_000, 100):  # 50 blocks, merged like a log-structured tree
        assert window.admit(*hashes(ids("t", start, start + 100))).all()
    assert 1_000 <= window.size <= 2_000
    assert len(window._chunks) <= 12  # searched with O(log n) chunks, not one per block
    assert not window.admit(*hashes(ids("t", 4_000, 5_000))).any()  # the newest capacity: all known
    assert window.admit(*hashes(ids("t", 0, 1_000))).all()  # the oldest: forgotten


def test_rows_that_landed_are_taken_out_of_a_tick_table_and_counted():
    landed = LandedTicks(None, capacity=1_000)
    first = landed.drop_landed("md_trades", trades(ids("x:AAPL:t:", 0, 10)))
    assert first.num_rows == 10
    again = landed.drop_landed("md_trades", trades(ids("x:AAPL:t:", 5, 15)))
    assert again.column("id").to_pylist() == ids("x:AAPL:t:", 10, 15)
    assert again.column("price").to_pylist() == [5.0, 6.0, 7.0, 8.0, 9.0]  # the rows kept, whole
    assert landed.dropped == {"md_trades": 5}
    # a quote's id never meets a trade's window; tables that are not tick tables pass untouched
    assert landed.drop_landed("md_quotes", trades(ids("x:AAPL:t:", 0, 3))).num_rows == 3
    bars = trades(["bar-1", "bar-1"])
    assert landed.drop_landed("md_bars", bars) is bars


def test_the_window_starts_with_what_the_table_holds():
    asked = []

    def recent_ids(table: str, limit: int) -> pl.Series:
        asked.append((table, limit))
        return pl.Series(ids("x:AAPL:q:", 0, 4), dtype=pl.Utf8)

    landed = LandedTicks(recent_ids, capacity=50)
    kept = landed.drop_landed("md_quotes", trades(ids("x:AAPL:q:", 2, 6)))
    assert kept.column("id").to_pylist() == ["x:AAPL:q:4", "x:AAPL:q:5"]
    landed.drop_landed("md_quotes", trades(["x:AAPL:q:9"]))
    assert asked == [("md_quotes", 50)]  # once per table


def test_a_window_needs_room():
    with pytest.raises(ValueError, match="capacity"):
        LandedIds(capacity=0)


def test_a_writer_whose_run_nothing_replays_keeps_no_window():
    landed = LandedTicks(lambda table, limit: pytest.fail("a disabled window asks nothing"), enabled=False)
    rows = trades(["x:AAPL:t:1", "x:AAPL:t:1"])
    assert landed.drop_landed("md_trades", rows) is rows
