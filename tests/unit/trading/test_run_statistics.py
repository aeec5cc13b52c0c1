"""Run statistics, checked against an independent pandas computation of the same conventions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from trading.performance import NANOS_PER_MINUTE, US_EQUITY_YEAR_NS
from trading.run_statistics import MIN_SPAN_TO_ANNUALIZE_NS, grid_step_ns, run_statistics

S = 1_000_000_000
T0 = 1_700_000_000 * S


def irregular_curve(seed: int, span_s: float, samples: int) -> list[tuple[int, float]]:
    rng = np.random.default_rng(seed)
    times = np.sort(rng.uniform(0, span_s * S, samples).astype(np.int64)) + T0
    times[0], times[-1] = T0, T0 + int(span_s * S)
    equity = 1_000_000 * np.cumprod(1 + rng.normal(0.00002, 0.0004, samples))
    return [(int(t), float(e)) for t, e in zip(times, equity)]


def pandas_statistics(curve: list[tuple[int, float]], step_ns: int) -> dict[str, float]:
    """As-of resampling with pandas' forward fill, then the textbook formulas."""
    series = pd.Series([e for _, e in curve], index=pd.to_datetime([t for t, _ in curve], unit="ns"))
    series = series[~series.index.duplicated(keep="last")]
    start, end = series.index[0], series.index[-1]
    steps = -(-(end - start).value // step_ns)
    grid = pd.DatetimeIndex([start + pd.Timedelta(step_ns * k, unit="ns") for k in range(steps + 1)])
    returns = series.reindex(grid, method="ffill").pct_change().dropna()
    downside = math.sqrt((returns.clip(upper=0) ** 2).mean())
    peaks = series.cummax()
    return {
        "sharpe": returns.mean() / returns.std(ddof=1),
        "sortino": returns.mean() / downside,
        "total_return": series.iloc[-1] / series.iloc[0] - 1,
        "max_drawdown": ((peaks - series) / peaks).max(),
        "periods": len(returns),
    }


@pytest.mark.parametrize("seed,span_s,samples", [(1, 150.0, 400), (2, 3 * 3600.0, 2_000), (3, 40.0, 60)])
def test_statistics_equal_an_independent_pandas_computation(seed, span_s, samples):
    curve = irregular_curve(seed, span_s, samples)
    stats = run_statistics(curve)
    expected = pandas_statistics(curve, grid_step_ns(curve[-1][0] - curve[0][0]))
    assert stats.periods == expected["periods"]
    assert stats.sharpe == pytest.approx(expected["sharpe"], rel=1e-9)
    assert stats.sortino == pytest.approx(expected["sortino"], rel=1e-9)
    assert stats.total_return == pytest.approx(expected["total_return"], rel=1e-12)
    assert stats.max_drawdown == pytest.approx(expected["max_drawdown"], rel=1e-12)


def test_a_short_run_is_measured_per_second_and_never_annualized():
    stats = run_statistics(irregular_curve(4, 150.0, 300))  # a 2.5-minute paced run
    assert stats.step_ns == S and stats.sharpe_annualized is None
    text = stats.describe()
    assert "per 1-second period" in text and "2.5 min of tape" in text and "not annualized" in text


def test_a_run_of_hours_uses_minutes_and_a_month_of_sessions_is_annualized():
    hours = run_statistics(irregular_curve(5, 3 * 3600.0, 500))
    assert hours.step_ns == NANOS_PER_MINUTE and hours.sharpe_annualized is None
    month = run_statistics(irregular_curve(6, MIN_SPAN_TO_ANNUALIZE_NS / S, 5_000))
    assert month.sharpe_annualized == pytest.approx(month.sharpe * math.sqrt(US_EQUITY_YEAR_NS / NANOS_PER_MINUTE))
    assert "annualized Sharpe" in month.describe()


def test_a_flat_or_empty_curve_gives_zeros_or_nothing_never_nan():
    flat = run_statistics([(T0 + i * S, 1_000.0) for i in range(10)])
    assert (flat.sharpe, flat.sortino, flat.volatility, flat.total_return, flat.max_drawdown) == (0, 0, 0, 0, 0)
    assert run_statistics([]) is None
