"""Several strategies on one account: each trades its own share of the capital, within its own limits.

``DeskConfig.strategy_capital`` maps a strategy's name to the fraction of the account it trades
(``--strategy NAME=FRACTION``). With it, for a strategy with fraction ``f``:

- **sizing**: its target weights are fractions of ``f`` x the portfolio capital, netted against its
  own positions (the ledger is keyed by strategy) and its own working orders;
- **pre-trade limits**: the account's order, position, gross and net notional limits scaled by ``f``
  apply to the strategy's own book (its filled positions, plus its working orders on the order's
  side, plus the order: the account check's worst-case projection); then the account's risk
  checks the order against the whole account as always. A strategy's reject carries the reason
  codes prefixed ``strategy_`` (``strategy_max_gross_notional``), so a reject says which scope
  denied it. Rate, open-order and loss-breaker limits stay account-wide: they guard the venue and
  the account, not a strategy's share. Operator limit changes (``SET_LIMIT``) reach the account's
  risk; the strategies' scaled limits are those of the run's configuration;
- **P&L**: the ledger values the strategy against its own capital (equity = ``f`` x capital + its
  P&L), so its drawdown is a fraction of what it trades.

The checks read the ledger and the venue, and keep no state of their own: nothing to reconcile
after a reject, a restart or a replay. Without ``strategy_capital`` (one strategy, today's runs)
every strategy is sized against the whole portfolio capital and only the account's risk applies.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

from schemas import Order, OrderAction, OrderType, RiskReject, now_ns
from strategies.portfolio import PortfolioConfig, PortfolioConstructor
from trading.risk_limits import RiskLimits

SCALED_LIMITS = ("max_order_notional", "max_position_notional", "max_gross_notional", "max_net_notional")
REASON_PREFIX = "strategy_"


class CapitalAllocation:
    """Per-strategy portfolio constructors and notional limits of one account."""

    def __init__(self, fractions: Mapping[str, float], portfolio: PortfolioConfig, limits: RiskLimits) -> None:
        for name, fraction in fractions.items():
            if not (math.isfinite(fraction) and 0.0 < fraction <= 1.0):
                raise ValueError(f"strategy {name!r}: capital fraction must be in (0, 1], got {fraction!r}")
        if math.fsum(fractions.values()) > 1.0 + 1e-9:
            raise ValueError(f"capital fractions sum to more than 1: {dict(fractions)}")
        self.fractions = dict(sorted(fractions.items()))
        self.portfolios = {name: PortfolioConstructor(portfolio.model_copy(update={"capital": portfolio.capital * f}))
                           for name, f in self.fractions.items()}
        self.limits = {name: {limit: getattr(limits, limit) * f for limit in SCALED_LIMITS}
                       for name, f in self.fractions.items()}

    def portfolio(self, strategy: str) -> PortfolioConstructor | None:
        """The strategy's constructor; None for a strategy the run was not configured with."""
        return self.portfolios.get(strategy)

    def check(self, order: Order, positions: Mapping[str, float], working: Iterable, marks: Mapping[str, float]
              ) -> RiskReject | None:
        """A reject when ``order`` would take its strategy's book past the strategy's limits.

        ``positions``: the strategy's filled positions; ``working``: its working orders (anything with
        symbol, side and leaves_qty); ``marks``: the account's marks (the last trade price)."""
        if order.action is OrderAction.CANCEL:
            return None  # cancelling only ever reduces risk
        limits = self.limits.get(order.strategy)
        mark = marks.get(order.symbol)
        if limits is None or mark is None:
            return None  # an unknown strategy never gets here; no mark: the account's risk denies it
        signed = order.side.sign * order.quantity
        price = order.limit_price if order.order_type is OrderType.LIMIT and order.limit_price else mark
        buys: dict[str, float] = {}
        sells: dict[str, float] = {}
        for w in working:
            side = buys if w.side.sign > 0 else sells
            side[w.symbol] = side.get(w.symbol, 0.0) + w.leaves_qty
        projected: dict[str, float] = {}
        for symbol in sorted(set(positions) | set(buys) | set(sells) | {order.symbol}):
            position = positions.get(symbol, 0.0)
            if symbol == order.symbol:  # the order's side: working orders on that side fill as well
                same = buys.get(symbol, 0.0) if signed > 0 else -sells.get(symbol, 0.0)
                projected[symbol] = position + same + signed
            else:  # the side that grows |position| more, as the account's projection does
                long_case, short_case = position + buys.get(symbol, 0.0), position - sells.get(symbol, 0.0)
                projected[symbol] = long_case if abs(long_case) >= abs(short_case) else short_case
        values = {s: q * marks.get(s, mark if s == order.symbol else 0.0) for s, q in projected.items()}
        reasons = []
        if order.quantity * price > limits["max_order_notional"]:
            reasons.append("max_order_notional")
        if abs(values[order.symbol]) > limits["max_position_notional"]:
            reasons.append("max_position_notional")
        if math.fsum(abs(v) for v in values.values()) > limits["max_gross_notional"]:
            reasons.append("max_gross_notional")
        if abs(math.fsum(values.values())) > limits["max_net_notional"]:
            reasons.append("max_net_notional")
        if not reasons:
            return None
        return RiskReject(id=f"reject:{order.client_order_id}", ts_event=order.ts_event, ts_ingest=now_ns(),
                          account=order.account, order=order, reasons=[REASON_PREFIX + r for r in reasons],
                          ts_tick_ingest=order.ts_tick_ingest)


def strategy_capital_amounts(capital: float, fractions: Mapping[str, float]) -> dict[str, float]:
    """Each strategy's capital in currency, for the ledger."""
    return {name: capital * f for name, f in fractions.items()}
