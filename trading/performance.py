"""Performance statistics of an equity curve, and a bounded-memory latency histogram.

An equity curve is a list of ``(ts_event_ns, equity)`` pairs, e.g. the account ``PnlSnapshot``
stream (:func:`equity_curve` extracts it). Everything here is event time; nothing reads the clock.

Conventions
-----------
- **Sharpe**: the curve is first resampled to a regular grid (default: one step per minute),
  as-of (the last equity at or before each grid point), anchored at the first sample. Snapshots
  arrive irregularly (on fills and per bar), and a Sharpe over irregular returns mixes periods of
  different lengths; a regular grid makes every return one period. Returns are simple
  (``e_t / e_{t-1} - 1``), the risk-free rate is 0 (intraday horizon), the deviation is the sample
  one (ddof=1), and the ratio is annualized by ``sqrt(periods_per_year)``. The default year is US
  equity trading time, 252 days x 6.5 h, because tapeflow trades equities off an exchange tape;
  pass ``periods_per_year`` (e.g. :func:`periods_in_year` with ``CONTINUOUS_YEAR_NS`` for a 24/7
  synthetic feed) to change it. Gaps (nights, halts) are forward-filled and so count as flat
  periods. Fewer than 2 returns or zero variance give 0.0, never NaN.
- **Max drawdown** is taken on the raw samples (resampling could skip the trough), as the largest
  ``(peak - equity) / peak`` fraction; non-positive peaks are skipped (a fraction of them means
  nothing).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from schemas import NANOS_PER_SECOND, PnlSnapshot

NANOS_PER_MINUTE = 60 * NANOS_PER_SECOND
US_EQUITY_YEAR_NS = int(252 * 6.5 * 3600) * NANOS_PER_SECOND
"""Trading time in a US equity year: 252 sessions of 6.5 hours."""
CONTINUOUS_YEAR_NS = 365 * 24 * 3600 * NANOS_PER_SECOND
"""A 24/7 year, for synthetic or crypto tapes."""
MAX_GRID_POINTS = 20_000_000
"""Refuse to resample to more points than this (a 1s grid over eight months): a wrong ``step_ns``
should fail loudly instead of allocating gigabytes."""

EquityCurve = Sequence[tuple[int, float]]


def periods_in_year(step_ns: int, year_ns: int = US_EQUITY_YEAR_NS) -> float:
    """How many ``step_ns`` periods a year holds (for ``sharpe_ratio(periods_per_year=...)``)."""
    return year_ns / step_ns


def equity_curve(snapshots: Iterable[PnlSnapshot], strategy: str = "*") -> list[tuple[int, float]]:
    """``(ts_event, equity)`` of one scope (the account by default), in input order."""
    return [(s.ts_event, s.equity) for s in snapshots if s.strategy == strategy]


def resample(equity: EquityCurve, step_ns: int = NANOS_PER_MINUTE) -> np.ndarray:
    """Equity as of ``t0, t0 + step, ...`` up to the first grid point at or after the last sample
    (``t0`` = first sample's time). Samples with equal times: the last one wins."""
    if step_ns <= 0:
        raise ValueError(f"step_ns must be > 0, got {step_ns}")
    if not equity:
        return np.empty(0)
    ts = np.fromiter((t for t, _ in equity), dtype=np.int64, count=len(equity))
    values = np.fromiter((v for _, v in equity), dtype=np.float64, count=len(equity))
    order = np.argsort(ts, kind="stable")  # stable: among equal times, input order is kept
    ts, values = ts[order], values[order]
    span = int(ts[-1] - ts[0])
    n_points = -(-span // step_ns) + 1  # ceil: the last grid point covers the last sample
    if n_points > MAX_GRID_POINTS:
        raise ValueError(f"resampling to {n_points} points; use a coarser step_ns")
    grid = ts[0] + np.arange(n_points, dtype=np.int64) * step_ns
    idx = np.searchsorted(ts, grid, side="right") - 1
    return values[idx]


def period_returns(equity: EquityCurve, step_ns: int = NANOS_PER_MINUTE) -> np.ndarray:
    """Simple returns per grid step; steps starting at non-positive equity are dropped (a return
    on no capital is undefined)."""
    values = resample(equity, step_ns)
    if values.size < 2:
        return np.empty(0)
    prev, cur = values[:-1], values[1:]
    ok = prev > 0
    with np.errstate(over="ignore"):  # a near-zero base overflows to inf; sharpe_ratio rejects it
        return cur[ok] / prev[ok] - 1.0


def sharpe_ratio(
    equity: EquityCurve,
    periods_per_year: float | None = None,
    step_ns: int = NANOS_PER_MINUTE,
) -> float:
    """Annualized Sharpe ratio (risk-free 0) of the curve resampled every ``step_ns``.

    ``periods_per_year`` defaults to the number of ``step_ns`` periods in a US equity trading year.
    """
    returns = period_returns(equity, step_ns)
    if returns.size < 2 or not np.all(np.isfinite(returns)):
        return 0.0
    with np.errstate(over="ignore", invalid="ignore"):  # absurd returns -> inf std -> 0.0 below
        std = float(np.std(returns, ddof=1))
        mean = float(np.mean(returns))
    # a flat curve can leave float noise in std; treat noise relative to the mean level as zero
    if not math.isfinite(std) or std <= 1e-15 * max(1.0, abs(mean)):
        return 0.0
    ppy = periods_per_year if periods_per_year is not None else US_EQUITY_YEAR_NS / step_ns
    ratio = mean / std * math.sqrt(ppy)
    return ratio if math.isfinite(ratio) else 0.0


# A peak below a billionth of a currency unit is no equity to fall from: dividing by it (a curve
# that starts at 5e-324 and ends at -1) would make the drawdown infinite.
MIN_PEAK = 1e-9


def max_drawdown(equity: EquityCurve) -> float:
    """Largest peak-to-trough decline as a fraction of the peak (0.25 = -25%), on raw samples in
    time order."""
    worst = 0.0
    peak = -math.inf
    for _, value in sorted(equity, key=lambda p: p[0]):  # sorted() is stable: ties keep order
        if value > peak:
            peak = value
        elif peak > MIN_PEAK:
            worst = max(worst, (peak - value) / peak)
    return worst


class LatencyStats:
    """Latency samples in ns, summarized as p50 / p99 / max in microseconds, in bounded memory.

    A log-linear histogram (HDR style): values below 256 ns are exact; above, each power of two is
    split into 128 buckets, so a reported percentile is within 1/128 (< 0.8%) of the true sample
    value, and the histogram never holds more than ~7,000 buckets whatever the sample count.
    Percentiles use the nearest-rank method and report the bucket's upper bound clipped to the
    observed max, so ``p100 == max`` exactly. Negative samples (clock skew between hosts) are
    counted and recorded as 0.
    """

    _SIGNIFICANT_BITS = 8  # 2**(8-1) = 128 sub-buckets per power of two

    def __init__(self) -> None:
        self._buckets: dict[int, int] = {}
        self.count = 0
        self.negative = 0
        self._min = 0
        self._max = 0
        self._sum = 0

    def record(self, latency_ns: int) -> None:
        latency_ns = int(latency_ns)
        if latency_ns < 0:
            self.negative += 1
            latency_ns = 0
        key = self._bucket(latency_ns)
        self._buckets[key] = self._buckets.get(key, 0) + 1
        self._min = latency_ns if self.count == 0 else min(self._min, latency_ns)
        self._max = max(self._max, latency_ns)
        self._sum += latency_ns
        self.count += 1

    def merge(self, other: "LatencyStats") -> None:
        """Fold another collector in (e.g. one per worker)."""
        if other.count == 0:
            return
        for key, n in other._buckets.items():
            self._buckets[key] = self._buckets.get(key, 0) + n
        self._min = other._min if self.count == 0 else min(self._min, other._min)
        self._max = max(self._max, other._max)
        self._sum += other._sum
        self.count += other.count
        self.negative += other.negative

    def percentile_ns(self, q: float) -> int:
        """Nearest-rank ``q``-th percentile (0 < q <= 100) in ns; 0 when empty."""
        if not 0 < q <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {q}")
        if self.count == 0:
            return 0
        rank = max(1, math.ceil(q / 100.0 * self.count))
        seen = 0
        for key in sorted(self._buckets):
            seen += self._buckets[key]
            if seen >= rank:
                return min(max(self._upper_bound(key), self._min), self._max)
        return self._max

    def percentile_us(self, q: float) -> float:
        return self.percentile_ns(q) / 1_000.0

    @property
    def p50_us(self) -> float:
        return self.percentile_us(50)

    @property
    def p99_us(self) -> float:
        return self.percentile_us(99)

    @property
    def max_us(self) -> float:
        return self._max / 1_000.0

    @property
    def mean_us(self) -> float:
        return self._sum / self.count / 1_000.0 if self.count else 0.0

    def summary(self) -> dict[str, float]:
        return {
            "count": self.count,
            "p50_us": self.p50_us,
            "p99_us": self.p99_us,
            "max_us": self.max_us,
            "mean_us": self.mean_us,
            "negative": self.negative,
        }

    @classmethod
    def _bucket(cls, value: int) -> int:
        shift = value.bit_length() - cls._SIGNIFICANT_BITS
        if shift <= 0:
            return value  # small values: one bucket per ns
        # keep the top bits; (shift, top) packed so that keys sort in value order
        return (shift << cls._SIGNIFICANT_BITS) + (value >> shift)

    @classmethod
    def _upper_bound(cls, key: int) -> int:
        shift = key >> cls._SIGNIFICANT_BITS
        if shift == 0:
            return key
        top = key & ((1 << cls._SIGNIFICANT_BITS) - 1)
        return ((top + 1) << shift) - 1
