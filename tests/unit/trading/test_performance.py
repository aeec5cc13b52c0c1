"""Equity-curve statistics (Sharpe, max drawdown) on curves with known answers, and LatencyStats."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading.performance import (
    CONTINUOUS_YEAR_NS,
    NANOS_PER_MINUTE,
    US_EQUITY_YEAR_NS,
    LatencyStats,
    equity_curve,
    max_drawdown,
    period_returns,
    resample,
    sharpe_ratio,
)
from trading.ledger import Ledger
from schemas import NANOS_PER_SECOND
from tests.unit.trading.test_ledger import fill

T0 = 1_700_000_000_000_000_000
M = NANOS_PER_MINUTE


def curve(values, step=M, t0=T0):
    return [(t0 + i * step, v) for i, v in enumerate(values)]


# --- resampling --------------------------------------------------------------------------------------


def test_resample_takes_the_last_value_at_or_before_each_grid_point():
    samples = [(T0, 100.0), (T0 + 10 * NANOS_PER_SECOND, 101.0), (T0 + 50 * NANOS_PER_SECOND, 102.0),
               (T0 + 70 * NANOS_PER_SECOND, 103.0)]
    # grid: T0, T0+60s, T0+120s (the last grid point covers the last sample)
    assert resample(samples).tolist() == [100.0, 102.0, 103.0]


def test_resample_with_equal_times_keeps_the_later_sample():
    assert resample([(T0, 1.0), (T0, 2.0), (T0 + M, 3.0)]).tolist() == [2.0, 3.0]


def test_resample_refuses_an_absurd_grid():
    with pytest.raises(ValueError):
        resample([(0, 1.0), (10**18, 1.0)], step_ns=1)


# --- sharpe ------------------------------------------------------------------------------------------


def test_sharpe_of_alternating_returns_matches_hand_computation():
    values = [100.0]
    for r in [0.01, -0.005] * 50:
        values.append(values[-1] * (1 + r))
    returns = np.array([0.01, -0.005] * 50)
    expected = returns.mean() / returns.std(ddof=1) * math.sqrt(US_EQUITY_YEAR_NS / M)
    assert sharpe_ratio(curve(values)) == pytest.approx(expected, rel=1e-9)


def test_sharpe_annualization_follows_periods_per_year():
    values = [100.0, 101.0, 100.5, 102.0, 101.0]
    per_period = sharpe_ratio(curve(values), periods_per_year=1)
    assert sharpe_ratio(curve(values), periods_per_year=CONTINUOUS_YEAR_NS / M) == pytest.approx(
        per_period * math.sqrt(CONTINUOUS_YEAR_NS / M))


def test_sharpe_resamples_irregular_samples_before_computing_returns():
    regular = curve([100.0, 101.0, 100.0, 102.0])
    # the same curve with extra intra-minute samples in between gives the same Sharpe
    noisy = regular + [(T0 + 20 * NANOS_PER_SECOND, 150.0), (T0 + 30 * NANOS_PER_SECOND, 50.0)]
    assert sharpe_ratio(noisy) == pytest.approx(sharpe_ratio(regular))


@pytest.mark.parametrize("values", [[], [100.0], [100.0, 101.0], [100.0] * 50])
def test_sharpe_is_zero_for_too_few_returns_or_zero_variance(values):
    assert sharpe_ratio(curve(values)) == 0.0


def test_sharpe_of_steady_compounding_is_zero_not_inf():
    # constant returns: zero variance (up to float noise), so no meaningful ratio
    assert sharpe_ratio(curve([100.0 * 1.001**i for i in range(100)])) == 0.0


def test_period_returns_skip_steps_from_non_positive_equity():
    assert period_returns(curve([100.0, 0.0, 50.0, 60.0])).tolist() == pytest.approx([-1.0, 0.2])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e9, allow_nan=False), min_size=0, max_size=40),
       st.lists(st.integers(0, 10 * M), min_size=40, max_size=40))
def test_sharpe_and_drawdown_are_always_finite(values, gaps):
    samples = [(T0 + sum(gaps[:i]), v) for i, v in enumerate(values)]
    assert math.isfinite(sharpe_ratio(samples))
    dd = max_drawdown(samples)
    assert math.isfinite(dd) and dd >= 0


# --- drawdown ----------------------------------------------------------------------------------------


def test_max_drawdown_is_the_deepest_fall_from_a_running_peak():
    assert max_drawdown(curve([100, 120, 90, 110, 130, 117, 140])) == pytest.approx(0.25)


def test_max_drawdown_of_a_rising_curve_is_zero():
    assert max_drawdown(curve([1, 2, 3, 4])) == 0.0
    assert max_drawdown([]) == 0.0


def test_max_drawdown_orders_samples_by_time():
    assert max_drawdown([(T0 + 2, 50.0), (T0, 100.0), (T0 + 1, 80.0)]) == pytest.approx(0.5)


def test_equity_curve_from_ledger_snapshots_feeds_the_statistics():
    ledger = Ledger("acct", initial_capital=1_000.0)
    ledger.on_fill(fill("buy", 10, 10.0, account="acct"))
    snaps = []
    for i, px in enumerate([10.0, 20.0, 5.0, 15.0]):
        ledger.on_mark("AAPL", px, T0 + i * M, T0)
        snaps += ledger.snapshot(T0 + i * M, T0)
    eq = equity_curve(snaps)
    assert [v for _, v in eq] == pytest.approx([1_000.0, 1_100.0, 950.0, 1_050.0])
    assert max_drawdown(eq) == pytest.approx(150.0 / 1_100.0)


# --- latency -----------------------------------------------------------------------------------------


def test_latency_percentiles_are_exact_for_small_values():
    stats = LatencyStats()
    for v in range(1, 101):
        stats.record(v)
    assert stats.percentile_ns(50) == 50
    assert stats.percentile_ns(99) == 99
    assert stats.percentile_ns(100) == 100


def test_latency_percentiles_are_within_one_percent_and_reported_in_microseconds():
    rng = random.Random(7)
    samples = [int(rng.lognormvariate(10, 1.5)) for _ in range(50_000)]
    stats = LatencyStats()
    for s in samples:
        stats.record(s)
    ordered = sorted(samples)
    for q in (50, 90, 99, 99.9):
        exact = ordered[math.ceil(q / 100 * len(ordered)) - 1]
        assert stats.percentile_ns(q) == pytest.approx(exact, rel=1 / 128)
        assert stats.percentile_ns(q) >= exact  # upper bound of the bucket: never flatters
    assert stats.max_us == max(samples) / 1_000
    assert stats.p99_us == stats.percentile_ns(99) / 1_000
    assert stats.summary()["count"] == 50_000


def test_latency_memory_is_bounded_whatever_the_sample_count():
    stats = LatencyStats()
    rng = random.Random(1)
    for _ in range(100_000):
        stats.record(rng.randrange(0, 10**12))
    assert len(stats._buckets) < 8_000


def test_latency_negative_samples_from_clock_skew_are_counted_and_clamped():
    stats = LatencyStats()
    stats.record(-5)
    stats.record(10)
    assert stats.negative == 1 and stats.percentile_ns(50) == 0


def test_latency_merge_equals_recording_everything_in_one():
    a, b, both = LatencyStats(), LatencyStats(), LatencyStats()
    for v in range(0, 100_000, 7):
        (a if v % 2 else b).record(v)
        both.record(v)
    a.merge(b)
    assert a.summary() == both.summary()


def test_empty_latency_stats_report_zeros():
    assert LatencyStats().summary() == {"count": 0, "p50_us": 0.0, "p99_us": 0.0, "max_us": 0.0,
                                         "mean_us": 0.0, "negative": 0}
