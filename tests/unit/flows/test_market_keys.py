"""Market data keyed by symbol: a column batch is split per symbol, and the feed watermark reaches
every symbol of the universe (flows/builders.py)."""

from __future__ import annotations

import itertools

import numpy as np

from feeds.synthetic import SyntheticConfig, SyntheticFeed
from flows.builders import _batch_by_symbol


def test_batch_split_when_symbols_interleave_then_each_key_gets_only_its_rows_in_feed_order():
    batch = next(SyntheticFeed(SyntheticConfig(symbols=("A", "B", "C"))).batches(0, 500))
    parts = _batch_by_symbol(batch, ("A", "B", "C"))
    assert sorted(key for key, _ in parts) == ["A", "B", "C"]
    for key, part in parts:
        assert set(part.symbol_names()) == {key}
        assert np.all(np.diff(part.seq) > 0)  # the symbol's rows keep their order
        assert part.watermark == batch.watermark
    assert sum(len(p) for _, p in parts) == len(batch)
    rows = sorted(itertools.chain.from_iterable(p.seq.tolist() for _, p in parts))
    assert rows == batch.seq.tolist()


def test_batch_split_when_a_universe_symbol_is_quiet_then_it_gets_an_empty_batch_carrying_the_watermark():
    batch = next(SyntheticFeed(SyntheticConfig(symbols=("A", "B"))).batches(0, 200))
    parts = dict(_batch_by_symbol(batch, ("A", "B", "QUIET")))
    assert len(parts["QUIET"]) == 0 and parts["QUIET"].watermark == batch.watermark


def test_batch_split_when_no_watermark_then_no_empty_batches():
    from dataclasses import replace

    batch = replace(next(SyntheticFeed(SyntheticConfig(symbols=("A", "B"))).batches(0, 200)), watermark=None)
    assert sorted(key for key, _ in _batch_by_symbol(batch, ("A", "B", "QUIET"))) == ["A", "B"]
