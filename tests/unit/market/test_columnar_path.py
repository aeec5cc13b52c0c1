"""The market-data path end to end: a tape handed over as column batches cut anywhere (with the
feed's watermarks or without) gives exactly the records of the same tape fed one tick at a time
through normalize, bars and features (DESIGN §2; the per-core properties are in
test_normalize_batch.py and test_bars_batch.py)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.synthetic import SyntheticConfig, SyntheticFeed
from market.bars import BarBuilder
from market.features import FeatureState
from market.normalize import NormalizeConfig, NormalizeState
from schemas import Bar, DeadLetter, FeatureVector, Quote, Trade
from schemas.columns import concat_tick_batches

# wall-clock fields differ between any two runs; a bar's ts_ingest is when it was emitted
IGNORED = {"ts_ingest", "ts_tick_ingest"}


def content(records) -> list[tuple[str, dict]]:
    return [(type(r).__name__, {k: v for k, v in r.model_dump().items() if k not in IGNORED}) for r in records]


def per_symbol(records) -> dict[str, list]:
    out: dict[str, list] = {}
    for kind, fields in content(records):
        out.setdefault(fields["symbol"], []).append((kind, fields))
    return out


def one_tick_at_a_time(ticks, config: NormalizeConfig):
    normalize, bars, features = NormalizeState(config), BarBuilder(), FeatureState()
    market, dead, closed, vectors = [], [], [], []
    for raw in ticks:
        for record in normalize.on_raw(raw):
            if type(record) is DeadLetter:
                dead.append(record)
                continue
            market.append(record)
            made = bars.on_trade(record) if type(record) is Trade else bars.advance(record.symbol, record.ts_event,
                                                                                   record.ts_tick_ingest)
            closed.extend(made)
    closed.extend(bars.flush())
    for bar in closed:
        if type(bar) is Bar:
            vectors.extend(features.on_bar(bar))
    return market, dead, closed, vectors


def as_batches(batches, config: NormalizeConfig):
    normalize, bars, features = NormalizeState(config), BarBuilder(), FeatureState()
    accepted, dead, closed, vectors = [], [], [], []
    for batch in batches:
        ticks, rejected = normalize.on_raw_batch(batch)
        accepted.append(ticks)
        dead.extend(rejected)
        closed.extend(bars.on_batch(ticks))
    closed.extend(bars.flush())
    for bar in closed:
        if type(bar) is Bar:
            vectors.extend(features.on_bar(bar))
    return concat_tick_batches(accepted).to_records(), dead, closed, vectors


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 50), symbols=st.integers(1, 4), rows=st.integers(1, 3_000),
       watermarks=st.booleans(), band=st.sampled_from([None, 10.0, 0.05]), ticks=st.integers(2_000, 12_000))
def test_a_tape_cut_into_batches_anywhere_gives_the_records_of_one_tick_at_a_time(
        seed, symbols, rows, watermarks, band, ticks):
    feed = SyntheticFeed(SyntheticConfig(seed=seed, symbols=tuple(f"S{i}" for i in range(symbols)),
                                         ticks_per_second=300, max_ticks=ticks))
    config = NormalizeConfig(price_band_pct=band)  # a tight band rejects ticks: the exact fallbacks run too
    batches = [b if watermarks else replace(b, watermark=None) for b in feed.batches(0, rows)]
    market, dead, closed, vectors = one_tick_at_a_time(feed.ticks(), config)
    b_market, b_dead, b_closed, b_vectors = as_batches(batches, config)

    assert content(b_market) == content(market)
    assert all(type(r) in (Trade, Quote) for r in b_market)
    assert content(b_dead) == content(dead)
    # across symbols a batch's bars come out by bar end; per symbol, in exactly the same order
    assert per_symbol(b_closed) == per_symbol(closed)
    assert per_symbol(b_vectors) == per_symbol(vectors)
    assert all(type(v) is FeatureVector for v in b_vectors)
    assert closed, "no bar: the comparison would prove little"
