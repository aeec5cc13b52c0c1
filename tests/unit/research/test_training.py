"""Training rows: labels strictly after the feature's bar, features from bars <= t, purged folds."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from schemas.feature_set import FEATURE_SET_V1
from market.features import WARMUP_BARS
from schemas import Bar
from research.training import (
    TrainConfig, add_labels, feature_vectors, frame_hash, training_frame, vectors_frame, walk_forward_splits,
)
from tests.unit.strategies.fixtures import T0, SECOND


def bars(closes, symbol="SYN0", start=T0):
    out = []
    for i, close in enumerate(closes):
        end = start + (i + 1) * SECOND
        out.append(Bar(id=f"{symbol}:{i}", ts_event=end, ts_ingest=1, symbol=symbol, interval="1s", bar_start=end - SECOND,
                       bar_end=end, open=close, high=close * 1.001, low=close * 0.999, close=close, volume=10 + i % 3,
                       vwap=close, trade_count=1, buy_volume=6, sell_volume=4, ts_tick_ingest=1))
    return out


def closes(n=80, seed=1):
    return list(100 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 1e-3, n))))


def labelled(prices, horizon):
    return add_labels(vectors_frame(feature_vectors(bars(prices), "1s")), horizon)


@pytest.mark.parametrize("horizon", [1, 3])
def test_label_when_horizon_h_then_log_return_from_bar_t_to_bar_t_plus_h(horizon):
    prices = closes()
    frame = labelled(prices, horizon)
    for row in frame.filter(pl.col("label").is_not_null()).iter_rows(named=True):
        t = (row["bar_end"] - T0) // SECOND - 1
        assert row["label"] == pytest.approx(math.log(prices[t + horizon] / prices[t]), abs=1e-15)
        assert row["label_end"] == row["bar_end"] + horizon * SECOND
    assert frame["label"].null_count() == horizon  # the last h rows have no future bar yet


def test_label_when_a_bar_after_t_plus_h_changes_then_label_at_t_unchanged_and_when_t_plus_h_changes_then_it_changes():
    h, t = 2, 50
    prices = closes()
    base = labelled(prices, h).filter(pl.col("bar_end") == T0 + (t + 1) * SECOND)
    later = list(prices)
    later[t + h + 1] *= 1.05
    at_target = list(prices)
    at_target[t + h] *= 1.05
    row = lambda p: labelled(p, h).filter(pl.col("bar_end") == T0 + (t + 1) * SECOND)  # noqa: E731
    assert row(later)["label"].item() == base["label"].item()
    assert row(at_target)["label"].item() != base["label"].item()
    assert row(at_target).select(FEATURE_SET_V1).equals(base.select(FEATURE_SET_V1))  # features never see t+h


def test_features_when_a_later_bar_changes_then_rows_up_to_t_identical_and_row_after_changes():
    prices = closes()
    t = 60
    changed = list(prices)
    changed[t + 1] *= 1.02
    a = vectors_frame(feature_vectors(bars(prices), "1s"))
    b = vectors_frame(feature_vectors(bars(changed), "1s"))
    cut = T0 + (t + 1) * SECOND
    assert a.filter(pl.col("bar_end") <= cut).equals(b.filter(pl.col("bar_end") <= cut))
    assert not a.filter(pl.col("bar_end") == cut + SECOND).equals(b.filter(pl.col("bar_end") == cut + SECOND))
    assert a["bar_end"].min() == T0 + WARMUP_BARS * SECOND


def test_label_when_symbols_interleave_then_each_uses_its_own_next_bars():
    a, b = closes(seed=1), closes(seed=2)
    frame = add_labels(vectors_frame(list(feature_vectors(bars(a, "AAA"), "1s")) +
                                     list(feature_vectors(bars(b, "BBB"), "1s"))), 1)
    row = frame.filter((pl.col("symbol") == "BBB") & (pl.col("bar_end") == T0 + 40 * SECOND))
    assert row["label"].item() == pytest.approx(math.log(b[40] / b[39]), abs=1e-15)


def synthetic_frame(n_times=400, symbols=4, horizon=3):
    rows = [(f"S{s}", T0 + i * SECOND, 100.0 + i * 0.01 + s, *([0.0] * len(FEATURE_SET_V1)))
            for i in range(n_times) for s in range(symbols) if not (s == 1 and i % 7 == 0)]  # S1 has holes
    schema = {"symbol": pl.String, "bar_end": pl.Int64, "close": pl.Float64, **{n: pl.Float64 for n in FEATURE_SET_V1}}
    return training_frame(pl.DataFrame(rows, schema=schema, orient="row"), horizon)


@pytest.mark.parametrize("window", ["expanding", "rolling"])
@pytest.mark.parametrize("gap", [3, 10])
def test_walk_forward_when_purged_then_no_train_row_within_gap_of_a_test_row_and_no_label_reaching_the_test_block(window, gap):
    frame = synthetic_frame(horizon=3)
    times = np.unique(frame["bar_end"].to_numpy())
    splits = walk_forward_splits(frame, n_folds=4, gap=gap, window=window)
    assert len(splits) == 4
    bar_end, label_end = frame["bar_end"].to_numpy(), frame["label_end"].to_numpy()
    tested = np.concatenate([s.test_rows for s in splits])
    assert len(tested) == len(set(tested.tolist()))  # every row is tested at most once
    for split in splits:
        assert len(split.train_rows) and len(split.test_rows)
        first_test = np.searchsorted(times, bar_end[split.test_rows].min())
        newest_train = np.searchsorted(times, bar_end[split.train_rows].max())
        assert first_test - newest_train > gap  # at least `gap` bar times strictly between
        assert label_end[split.train_rows].max() < bar_end[split.test_rows].min()
        assert bar_end[split.train_rows].max() < split.test_start


def test_train_config_when_gap_shorter_than_horizon_then_refused_naming_both():
    with pytest.raises(ValueError, match="purge gap 2 < label horizon 5"):
        TrainConfig(horizon=5, gap=2)
    assert TrainConfig(horizon=5).purge_gap == 5


def test_walk_forward_when_too_few_bar_times_then_error_says_what_to_do():
    with pytest.raises(ValueError, match="too few"):
        walk_forward_splits(synthetic_frame(n_times=20), n_folds=4, gap=3)


def test_frame_hash_when_one_value_changes_then_hash_changes():
    frame = synthetic_frame(n_times=60)
    changed = frame.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(1.0).otherwise(pl.col("ret_1")).alias("ret_1"))
    assert frame_hash(frame) == frame_hash(frame.clone())
    assert frame_hash(frame) != frame_hash(changed)
