"""Which tick rows a table already holds: the writer drops a tick that landed before.

The market-data tables (md_raw, md_trades, md_quotes) are plain MergeTree, appended to and summed
from (the 1m OHLCV view), so a row inserted twice counts twice. Two things insert a tick twice
without any insert being retried:

- an upstream stage resumed from its snapshot produces again the ticks it had produced after that
  snapshot: new Kafka messages, same tick ids (the split topology after a crash);
- the writer's own process resumed from its snapshot writes again the rows it wrote after it (both
  topologies after a crash).

So the writer keeps, per tick table, the ids of the last :data:`LANDED_WINDOW` rows it sealed, and
seals only rows whose id is in neither that window nor earlier in the same block.
:class:`LandedIds` seeds the window from the table itself (the run's most recently written rows)
the first time it is used, so a writer that starts after a crash knows what its predecessor
wrote. A tick id is the record's deterministic id (``{source}:{symbol}:t:{trade_id}``,
``{source}:{symbol}:q:{seq}``, ``{source}:{seq}`` for raw ticks): the same tick has the same id on
every replay of a run, and two ticks of a run never share one (normalize dead-letters a resent
trade id as ``duplicate_trade``; a quote's and a raw tick's ids hold the feed position).

Bound: a tick is caught when fewer than :data:`LANDED_WINDOW` rows of its table were sealed between
its first copy and its second. A resumed stage produces again at most what followed its last
snapshot: at most an epoch of ticks (2 s by default) and what was in flight, inside that bound up to
about 250,000 ticks/s through the stage (the chaos run re-produces at most a few thousand). Memory: 16
bytes per id, at most twice the window (16 MB per table). A writer whose run nothing replays (an
embedded run without recovery) keeps no window (``enabled=False``).

Ids are held as two independent 64-bit hashes each (Polars' string hash under two seeds), kept as
sorted NumPy chunks that merge like a log-structured tree, so a block is checked with a few
``np.searchsorted`` calls and no Python work per row. Two different ids are taken for one only if
both hashes collide (odds about 2**-128 per pair).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Callable

import numpy as np
import polars as pl
import pyarrow as pa

log = logging.getLogger(__name__)

TICK_TABLES = ("md_raw", "md_trades", "md_quotes")  # append-only: deduplicated here, not by the engine
LANDED_WINDOW = 500_000  # ids remembered per table
_SEEDS = (0x5EED_0001, 0x5EED_0002)
_MIN_CHUNKS_TO_MERGE = 2


def id_hashes(ids: pa.Array | pa.ChunkedArray | pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Two independent uint64 hashes of each id (as int64 arrays, for searching)."""
    series = ids if isinstance(ids, pl.Series) else pl.Series(ids)
    series = series.cast(pl.Utf8)
    return tuple(series.hash(seed=seed).to_numpy().view(np.int64) for seed in _SEEDS)  # type: ignore[return-value]


class LandedIds:
    """The ids of the last ``capacity`` rows sealed for one table (at least that many, at most
    twice), and the check of a block against them."""

    def __init__(self, capacity: int = LANDED_WINDOW):
        if capacity < 1:
            raise ValueError("a landed-id window needs a capacity >= 1")
        self.capacity = capacity
        # oldest first; each (first hashes sorted, second hashes in the same order)
        self._chunks: deque[tuple[np.ndarray, np.ndarray]] = deque()
        self.size = 0

    def admit(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """A mask of the rows to keep (their id is neither in the window nor on an earlier row),
        whose ids join the window as the newest."""
        n = len(first)
        keep = np.ones(n, dtype=bool)
        if n == 0:
            return keep
        # stable: the first copy of an id sorts first (ids that share a first hash and not a second
        # may sit apart and then both count as new: a duplicate kept, never a row lost)
        order = np.argsort(first, kind="stable")
        a, b = first[order], second[order]
        fresh = np.ones(n, dtype=bool)
        fresh[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
        for seen_first, seen_second in self._chunks:  # sorted probes: a cache-friendly search
            at = np.searchsorted(seen_first, a)
            np.minimum(at, len(seen_first) - 1, out=at)
            fresh &= (seen_first[at] != a) | (seen_second[at] != b)
        keep[order[~fresh]] = False
        self._remember_sorted(a[fresh], b[fresh])
        return keep

    def _remember_sorted(self, first: np.ndarray, second: np.ndarray) -> None:
        if len(first) == 0:
            return
        self._chunks.append((first, second))
        self.size += len(first)
        # merge the newest chunks while the older of two is no larger: O(log n) chunks to search
        while len(self._chunks) >= _MIN_CHUNKS_TO_MERGE and len(self._chunks[-2][0]) <= len(self._chunks[-1][0]):
            newer, older = self._chunks.pop(), self._chunks.pop()
            merged_first = np.concatenate((older[0], newer[0]))
            merged_second = np.concatenate((older[1], newer[1]))
            order = np.argsort(merged_first, kind="stable")
            self._chunks.append((merged_first[order], merged_second[order]))
        # forget the oldest chunk once the rest still holds the window
        while len(self._chunks) > 1 and self.size - len(self._chunks[0][0]) >= self.capacity:
            self.size -= len(self._chunks.popleft()[0])


class LandedTicks:
    """The landed-id windows of the tick tables of one run, seeded from the warehouse on first use.

    ``recent_ids(table, limit)`` gives the ids of the run's ``limit`` most recently written rows of
    ``table`` (oldest first), or None when the writer's warehouse cannot be queried (an in-memory
    inserter in tests): then the window starts empty, which is right for a table the run has not
    written to yet.
    """

    def __init__(self, recent_ids: Callable[[str, int], pl.Series | None] | None,
                 capacity: int = LANDED_WINDOW, enabled: bool = True):
        self._recent_ids = recent_ids
        self.capacity = capacity
        self.enabled = enabled
        self._windows: dict[str, LandedIds] = {}
        self.dropped: dict[str, int] = {}  # rows not sealed because they had landed, per table

    def window(self, table: str) -> LandedIds:
        window = self._windows.get(table)
        if window is None:
            window = self._windows[table] = LandedIds(self.capacity)
            seed = self._recent_ids(table, self.capacity) if self._recent_ids is not None else None
            if seed is not None and len(seed):
                window.admit(*id_hashes(seed))
        return window

    def drop_landed(self, table: str, rows: pa.Table) -> pa.Table:
        """``rows`` (a tick table's Arrow rows, with an ``id`` column) without the rows that landed
        before or repeat an earlier row; the rows kept are remembered as landed."""
        if not self.enabled or table not in TICK_TABLES or rows.num_rows == 0:
            return rows
        window = self.window(table)
        keep = window.admit(*id_hashes(rows.column("id")))
        kept = int(keep.sum())
        if kept < rows.num_rows:
            dropped = rows.num_rows - kept
            self.dropped[table] = self.dropped.get(table, 0) + dropped
            log.warning("warehouse: %d %s rows had landed before (ticks produced again after a restart): "
                        "not written twice", dropped, table)
            rows = rows.filter(pa.array(keep))
        return rows


def recent_ids_of(warehouse: Any, run_id: str) -> Callable[[str, int], pl.Series | None] | None:
    """The seed query of :class:`LandedTicks` over a warehouse that can answer it (``query_df``)."""
    query_df = getattr(warehouse, "query_df", None)
    if query_df is None:
        return None

    def recent_ids(table: str, limit: int) -> pl.Series:
        if table not in TICK_TABLES:
            raise ValueError(f"{table} is not a tick table")
        frame = query_df(
            f"SELECT id FROM (SELECT id, ts_written FROM {table} WHERE run_id = {{run:String}} "
            f"ORDER BY ts_written DESC LIMIT {int(limit)}) ORDER BY ts_written",
            {"run": run_id},
        )
        return frame.get_column("id") if frame.height else pl.Series("id", [], dtype=pl.Utf8)

    return recent_ids
