"""Performance statistics of one run, taken over periods that fit the run's length.

A Sharpe ratio is a mean over a deviation of per-period returns; annualizing multiplies it by the
square root of the periods in a year. That is only an estimate of a yearly figure when the sample
covers enough of a year for the per-period returns to stand for it: a 2.5-minute paced run
annualized as if it were a year printed "Sharpe -625.71". So:

- the grid (the period) follows the run's length: one minute for a run spanning at least two hours
  of event time, one second below (a few minutes of tape still has a hundred returns or more);
- ratios are reported **per period**, with the period named, always;
- the annualized Sharpe is reported only when the run spans at least ``MIN_SPAN_TO_ANNUALIZE_NS``
  (20 US trading sessions of 6.5 hours), and then on the convention of ``trading.performance``
  (252 sessions x 6.5 h, risk-free 0); otherwise it is ``None`` and the text says why.

Sortino uses the downside deviation ``sqrt(mean(min(r, 0)^2))`` over all returns (target 0), the
convention of most libraries (quantstats, empyrical). Volatility is the sample deviation (ddof=1)
per period. Total return is ``last / first - 1`` of the raw curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from schemas import NANOS_PER_SECOND
from trading.performance import (
    NANOS_PER_MINUTE,
    US_EQUITY_YEAR_NS,
    EquityCurve,
    max_drawdown,
    period_returns,
)

SESSION_NS = int(6.5 * 3600) * NANOS_PER_SECOND
MIN_SPAN_TO_ANNUALIZE_NS = 20 * SESSION_NS
MINUTE_GRID_FROM_NS = 2 * 3600 * NANOS_PER_SECOND


@dataclass(frozen=True)
class RunStatistics:
    start_ns: int
    end_ns: int
    step_ns: int
    periods: int  # returns on the grid
    total_return: float
    max_drawdown: float
    volatility: float  # per period
    sharpe: float  # per period
    sortino: float  # per period
    sharpe_annualized: float | None  # None: the run is too short to stand for a year

    @property
    def span_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def period_name(self) -> str:
        return "1-minute" if self.step_ns == NANOS_PER_MINUTE else f"{self.step_ns / NANOS_PER_SECOND:g}-second"

    def describe(self) -> str:
        """One line for the run summary, naming the period every ratio is taken over."""
        span = format_span(self.span_ns)
        text = (f"return {self.total_return:+.4%} over {span} of tape | Sharpe {self.sharpe:.3f} and Sortino "
                f"{self.sortino:.3f} per {self.period_name} period ({self.periods:,} periods)")
        if self.sharpe_annualized is None:
            return text + f"; not annualized (under {MIN_SPAN_TO_ANNUALIZE_NS // SESSION_NS} trading sessions)"
        return text + f"; annualized Sharpe {self.sharpe_annualized:.2f} (252 sessions x 6.5 h)"


def format_span(span_ns: int) -> str:
    seconds = span_ns / NANOS_PER_SECOND
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7_200:
        return f"{seconds / 60:.1f} min"
    if seconds < 3 * 86_400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"


def grid_step_ns(span_ns: int) -> int:
    return NANOS_PER_MINUTE if span_ns >= MINUTE_GRID_FROM_NS else NANOS_PER_SECOND


def run_statistics(equity: EquityCurve) -> RunStatistics | None:
    """The statistics of a curve of ``(ts_event_ns, equity)``; None for an empty curve."""
    if not equity:
        return None
    ordered = sorted(equity, key=lambda point: point[0])
    start, end = int(ordered[0][0]), int(ordered[-1][0])
    step = grid_step_ns(end - start)
    returns = period_returns(ordered, step)
    returns = returns[np.isfinite(returns)]
    first, last = float(ordered[0][1]), float(ordered[-1][1])
    total = last / first - 1.0 if first > 0 else 0.0
    volatility = sharpe = sortino = 0.0
    if returns.size >= 2:
        mean = float(np.mean(returns))
        volatility = float(np.std(returns, ddof=1))
        if volatility > 1e-15 * max(1.0, abs(mean)):
            sharpe = mean / volatility
        downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
        if downside > 1e-15 * max(1.0, abs(mean)):
            sortino = mean / downside
    annualized = None
    if end - start >= MIN_SPAN_TO_ANNUALIZE_NS:
        annualized = sharpe * math.sqrt(US_EQUITY_YEAR_NS / step)
    return RunStatistics(start, end, step, int(returns.size), total, max_drawdown(ordered), volatility, sharpe,
                         sortino, annualized)
