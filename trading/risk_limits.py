"""Pre-trade risk limits: one frozen config, changed only by building a new one.

Defaults are sized for a $1,000,000 paper account trading about 8 US equities priced $20-$500.
They bind on a runaway strategy or a fat finger, not on ordinary rebalancing by the baseline or
LightGBM strategies (target weights of a few percent of equity per symbol).

| limit                   | default    | scope        | why this default                                   |
|-------------------------|------------|--------------|----------------------------------------------------|
| max_order_qty           | 5,000      | order        | 5,000 x $20 = $100k: one notional-limit order at the cheapest price |
| max_order_notional      | 100,000    | order        | 10% of capital per order                           |
| price_collar_pct        | 0.05       | order        | a limit 5% away from the last trade is a fat finger |
| max_position_qty        | 10,000     | symbol       | 10,000 x $20 = $200k: the notional cap at $20      |
| max_position_notional   | 200,000    | symbol       | 20% of capital in one name                         |
| max_gross_notional      | 1,000,000  | account      | 1x gross leverage                                  |
| max_net_notional        | 500,000    | account      | at most half the capital as directional exposure   |
| max_open_orders         | 50         | account      | ~6 working orders per symbol for 8 symbols         |
| max_orders_per_second   | 10         | account      | more than one per symbol per second is a loop bug  |
| max_orders_per_minute   | 200        | account      | 8 symbols x 1s bars would never need more          |
| daily_loss_limit        | 20,000     | account/day  | 2% of capital lost today trips the breaker         |
| max_drawdown_pct        | 0.05       | account      | 5% below peak equity trips the breaker             |
| reduce_then_halt        | True       | breaker      | first trip -> REDUCING, second -> HALTED           |
| halt_multiplier         | 2.0        | breaker      | a loss >= 2x a limit halts at once                 |

Operators change a limit with a ``SET_LIMIT`` control command; :meth:`RiskLimits.with_limit` is
the one validated path (an unknown name or an invalid value raises ``ValueError``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class RiskLimits(BaseModel):
    """Pre-trade and breaker limits for one account. Frozen: change with :meth:`with_limit`.

    Attributes (defaults in brackets):
        max_order_qty: [5,000] largest quantity of a single order.
        max_order_notional: [100,000] largest quantity x price of a single order; limit orders at
            their limit price, market orders at the last trade.
        price_collar_pct: [0.05] a limit price more than this fraction away from the last trade is
            denied (``price_collar``). Market orders are priced at the last trade, so never fail it.
        max_position_qty: [10,000] largest absolute position per symbol after this order, counting
            open orders on the same side as filled (worst case).
        max_position_notional: [200,000] largest absolute position x last price per symbol, same
            projection as ``max_position_qty``.
        max_gross_notional: [1,000,000] largest sum over symbols of |projected position| x last.
        max_net_notional: [500,000] largest |sum over symbols of projected position x last|.
        max_open_orders: [50] most working orders; an approved order is open until the venue
            reports it filled, canceled or rejected.
        max_orders_per_second: [10] most approved new orders in any 1 s event-time window.
        max_orders_per_minute: [200] most approved new orders in any 60 s event-time window.
        daily_loss_limit: [20,000] currency; the breaker trips when equity falls more than this
            below the equity of the first P&L snapshot of the trading day (the calendar's
            session; the UTC date for 24/7).
        max_drawdown_pct: [0.05] the breaker trips when equity falls this fraction below its peak.
        reduce_then_halt: [True] first trip -> REDUCING (only position-reducing orders), a second
            trip -> HALTED; False halts on the first trip.
        halt_multiplier: [2.0] a daily loss or drawdown at least this multiple of its limit halts
            at once, even from ACTIVE.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    max_order_qty: float = Field(default=5_000.0, gt=0)
    max_order_notional: float = Field(default=100_000.0, gt=0)
    price_collar_pct: float = Field(default=0.05, gt=0, le=1)
    max_position_qty: float = Field(default=10_000.0, gt=0)
    max_position_notional: float = Field(default=200_000.0, gt=0)
    max_gross_notional: float = Field(default=1_000_000.0, gt=0)
    max_net_notional: float = Field(default=500_000.0, gt=0)
    max_open_orders: int = Field(default=50, ge=1)
    max_orders_per_second: int = Field(default=10, ge=1)
    max_orders_per_minute: int = Field(default=200, ge=1)
    daily_loss_limit: float = Field(default=20_000.0, gt=0)
    max_drawdown_pct: float = Field(default=0.05, gt=0, lt=1)
    reduce_then_halt: bool = True
    halt_multiplier: float = Field(default=2.0, ge=1)

    @classmethod
    def limit_names(cls) -> tuple[str, ...]:
        return tuple(cls.model_fields)

    def with_limit(self, name: str, value: Any) -> "RiskLimits":
        """A new RiskLimits with ``name`` set to ``value``, fully re-validated.

        Raises ``ValueError`` naming the valid limits for an unknown ``name``, or the validation
        error for a bad value (e.g. a negative notional or ``10.5`` open orders). ``self`` is
        never changed, so a rejected change leaves the active limits in force.
        """
        names = self.limit_names()
        if name not in names:
            raise ValueError(f"unknown risk limit {name!r}; valid limits: {', '.join(names)}")
        values = self.model_dump()
        values[name] = value
        try:
            return RiskLimits.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ValueError(f"invalid value {value!r} for risk limit {name!r}: {first['msg']}") from None


def default_limits() -> RiskLimits:
    # 8 symbols rebalanced on 1-second bars may send 8 orders a second: 200 a minute would bind.
    return RiskLimits(max_orders_per_minute=600)
