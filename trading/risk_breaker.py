"""The loss breaker: daily loss and drawdown over account equity, in event time.

Split from ``trading/risk.py`` because it is its own state machine: it reads account-level P&L and
decides the account's ``TradingState``; the pre-trade checks only read that state.

Rules (``RiskLimits`` supplies the numbers):

- Daily loss = equity of the first snapshot of the trading day - equity now. Over
  ``daily_loss_limit`` it is breached. The trading day is the calendar's
  (``market/calendar.py`` ``session_day``): with XNYS it rolls at each session close (a snapshot
  after Friday's close already counts in Monday's session), with 24/7 (crypto) and without a
  calendar it is the UTC date of ``ts_event``.
- Drawdown = (peak - equity) / peak. The peak starts at the ledger's ``peak_equity`` (so a
  restarted split-topology risk keeps it) and then follows the equity this breaker sees.
- A *trip* is an edge, not breached -> breached, per measure. First trip -> REDUCING (HALTED when
  ``reduce_then_halt`` is off); any trip while REDUCING -> HALTED. Without edges a persisting
  breach would count as "a second trip" on the very next snapshot.
- A measure at least ``halt_multiplier`` x its limit halts at once, from any state: the loss is
  already too large for an orderly reduce.
- A new trading day re-bases the daily loss but never leaves REDUCING or HALTED: leaving them is an
  operator's decision (``rearm``, on ``TRADING_STATE active``).
"""

from __future__ import annotations

from enum import Enum

from market.calendar import TradingCalendar
from trading.risk_limits import RiskLimits
from schemas.base import NANOS_PER_SECOND

NANOS_PER_DAY = 86_400 * NANOS_PER_SECOND

# A value within this relative tolerance of its limit is at the limit, not over it: an order or a
# loss sized exactly to a limit must not trip because 0.1 + 0.2 != 0.3 in floating point.
_TOLERANCE = 1e-9


def over_limit(value: float, limit: float) -> bool:
    return value > limit * (1.0 + _TOLERANCE)


class TradingState(str, Enum):
    """What the account may do. ACTIVE: anything the limits allow; REDUCING: only orders that
    shrink a position without flipping it; HALTED: no new orders (cancels still pass)."""

    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


class BreakerTrip(str, Enum):
    """Why the breaker changed the trading state (``detail`` of the emitted TRADING_STATE)."""

    DAILY_LOSS = "daily_loss"  # today's loss over daily_loss_limit
    DRAWDOWN = "drawdown"  # drawdown from peak over max_drawdown_pct
    DAILY_LOSS_HALT = "daily_loss_halt"  # daily loss >= halt_multiplier x daily_loss_limit
    DRAWDOWN_HALT = "drawdown_halt"  # drawdown >= halt_multiplier x max_drawdown_pct


class LossBreaker:
    """Daily-loss and drawdown breaker for one account; plain attributes, picklable."""

    def __init__(self, calendar: TradingCalendar | None = None) -> None:
        self.calendar = calendar  # pickles by name (market/calendar.py)
        self.last_ts = -1
        self.day = -1  # trading day number (days since 1970-01-01); -1 before the first snapshot
        self.day_start_equity = 0.0
        self.equity = 0.0
        self.peak_equity: float | None = None
        self.daily_breached = False
        self.drawdown_breached = False

    @property
    def daily_loss(self) -> float:
        """Loss since the start of the trading day (negative when in profit)."""
        return self.day_start_equity - self.equity if self.day >= 0 else 0.0

    @property
    def drawdown_pct(self) -> float:
        peak = self.peak_equity
        return (peak - self.equity) / peak if peak else 0.0

    def observe(
        self, ts_event: int, equity: float, ledger_peak: float, limits: RiskLimits, state: TradingState
    ) -> tuple[TradingState, list[tuple[BreakerTrip, float]]] | None:
        """Take one account-level equity reading; return ``(new state, causes)`` when the state
        must change, else ``None``. Causes pair a ``BreakerTrip`` with its measure (currency for
        daily loss, a fraction for drawdown). A reading older than the last one is ignored:
        stale P&L must not move the breaker."""
        if ts_event < self.last_ts:
            return None
        self.last_ts = ts_event
        self.equity = equity
        day = ts_event // NANOS_PER_DAY if self.calendar is None else self.calendar.session_day(ts_event)
        if day != self.day:
            self.day = day
            self.day_start_equity = equity
            self.daily_breached = False
        if self.peak_equity is None:
            self.peak_equity = max(ledger_peak, equity)
        elif equity > self.peak_equity:
            self.peak_equity = equity

        daily_loss, drawdown = self.daily_loss, self.drawdown_pct
        daily_now = over_limit(daily_loss, limits.daily_loss_limit)
        drawdown_now = over_limit(drawdown, limits.max_drawdown_pct)
        trips: list[tuple[BreakerTrip, float]] = []
        if daily_now and not self.daily_breached:
            trips.append((BreakerTrip.DAILY_LOSS, daily_loss))
        if drawdown_now and not self.drawdown_breached:
            trips.append((BreakerTrip.DRAWDOWN, drawdown))
        self.daily_breached = daily_now
        self.drawdown_breached = drawdown_now

        if state is TradingState.HALTED:
            return None
        severe: list[tuple[BreakerTrip, float]] = []
        if daily_loss >= limits.halt_multiplier * limits.daily_loss_limit:
            severe.append((BreakerTrip.DAILY_LOSS_HALT, daily_loss))
        if drawdown >= limits.halt_multiplier * limits.max_drawdown_pct:
            severe.append((BreakerTrip.DRAWDOWN_HALT, drawdown))
        if severe:
            return TradingState.HALTED, severe
        if trips:
            reduce_first = limits.reduce_then_halt and state is TradingState.ACTIVE
            return (TradingState.REDUCING if reduce_first else TradingState.HALTED), trips
        return None

    def rearm(self) -> None:
        """An operator set ACTIVE: accept the drawdown so far (the peak becomes today's equity)
        and let both measures trip again. The daily loss still counts from the day start, so a
        reset while today's loss is over the limit trips again on the next snapshot unless the
        operator raised the limit too."""
        self.daily_breached = False
        self.drawdown_breached = False
        if self.peak_equity is not None:
            self.peak_equity = self.equity
