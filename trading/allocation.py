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
  denied it. Rate and open-order limits stay account-wide: they guard the venue, not a share.
  Operator limit changes (``SET_LIMIT``) reach the account's risk; the strategies' scaled limits
  are those of the run's configuration;
- **loss breaker**: each strategy has its own (``trading/risk_breaker.py``) over its own P&L
  snapshots, with the daily loss limit scaled by ``f`` and the drawdown limit as is (its equity is
  its own capital). A trip puts that strategy alone in REDUCING (only orders that shrink its
  position: ``strategy_reduce_only``) or HALTED (``strategy_trading_halted``), and leaves an
  ``alert`` in ``control`` naming the strategy; the account's breaker still watches the account.
  An operator's ``TRADING_STATE active`` for the account re-arms the strategies' breakers too;
- **P&L**: the ledger values the strategy against its own capital (equity = ``f`` x capital + its
  P&L), so its drawdown is a fraction of what it trades.

The pre-trade checks read the ledger and the venue and keep no state of their own: nothing to
reconcile after a reject, a restart or a replay; the breakers' state is pickled with the desk. Without ``strategy_capital`` (one strategy, today's runs)
every strategy is sized against the whole portfolio capital and only the account's risk applies.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

from schemas import ControlCommand, ControlKind, Order, OrderAction, OrderType, PnlSnapshot, RiskReject, now_ns
from strategies.portfolio import PortfolioConfig, PortfolioConstructor
from trading.risk_breaker import LossBreaker, TradingState
from trading.risk_limits import RiskLimits

SCALED_LIMITS = ("max_order_notional", "max_position_notional", "max_gross_notional", "max_net_notional")
REASON_PREFIX = "strategy_"
ISSUER = "risk"  # ControlCommand.issued_by of what risk emits (trading/risk.py)


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
        self.breaker_limits = {name: limits.model_copy(update={"daily_loss_limit": limits.daily_loss_limit * f})
                               for name, f in self.fractions.items()}
        self.breakers = {name: LossBreaker() for name in self.fractions}
        self.states = {name: TradingState.ACTIVE for name in self.fractions}

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
        state = self.states[order.strategy]
        if state is TradingState.HALTED:
            return self._reject(order, ["trading_halted"])
        position = positions.get(order.symbol, 0.0)
        if state is TradingState.REDUCING and not (position * signed < 0 and abs(signed) <= abs(position)):
            return self._reject(order, ["reduce_only"])
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
        return self._reject(order, reasons) if reasons else None

    def on_pnl(self, snapshot: PnlSnapshot) -> list[ControlCommand]:
        """A strategy's P&L snapshot into its breaker; an ``alert`` when its trading state changes."""
        breaker = self.breakers.get(snapshot.strategy)
        if breaker is None:
            return []  # the account's snapshot (its own breaker is risk's), or an unallocated strategy
        name = snapshot.strategy
        change = breaker.observe(snapshot.ts_event, snapshot.equity, snapshot.peak_equity, self.breaker_limits[name],
                                 self.states[name])
        if change is None:
            return []
        self.states[name], causes = change
        return [ControlCommand(
            id=f"risk:{snapshot.account}:{name}:trading_state:{snapshot.ts_event}", ts_event=snapshot.ts_event,
            ts_ingest=now_ns(), target=snapshot.account, kind=ControlKind.ALERT, name=f"strategy_{change[0].value}",
            value=causes[0][1], issued_by=ISSUER,
            detail=f"strategy {name}: {change[0].value} ({', '.join(cause.value for cause, _ in causes)})")]

    def on_control(self, command: ControlCommand) -> None:
        """An operator's ``TRADING_STATE active`` for the account re-arms every strategy's breaker."""
        if (command.kind is ControlKind.TRADING_STATE and command.issued_by != ISSUER
                and command.name == TradingState.ACTIVE.value):
            for name, breaker in self.breakers.items():
                breaker.rearm()
                self.states[name] = TradingState.ACTIVE

    @staticmethod
    def _reject(order: Order, reasons: list[str]) -> RiskReject:
        return RiskReject(id=f"reject:{order.client_order_id}", ts_event=order.ts_event, ts_ingest=now_ns(),
                          account=order.account, order=order, reasons=[REASON_PREFIX + r for r in reasons],
                          ts_tick_ingest=order.ts_tick_ingest)


def strategy_capital_amounts(capital: float, fractions: Mapping[str, float]) -> dict[str, float]:
    """Each strategy's capital in currency, for the ledger."""
    return {name: capital * f for name, f in fractions.items()}
