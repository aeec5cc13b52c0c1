"""From target weights to delta orders: size, cap, round to the lot, net, drop dust.

The constructor is stateless: it is handed the book (filled positions and quantities still working
at the venue) and returns only the orders that move the book to the target. Because the netting
counts working orders, asking twice for the same target yields no second order, and because
client_order_ids derive from the bar time, re-running a bar yields the same ids.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Mapping

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat

from schemas import Order, OrderType, Side, TimeInForce, now_ns
from strategies.base import scale_to_gross
from strategies.ids import client_order_id, signal_id

# Float tolerance when counting whole lots, so 0.3 / 0.1 counts as 3 lots, not 2.999...
_LOT_EPSILON = 1e-9


class PortfolioConfig(BaseModel):
    """Sizing rules for one strategy's book. Defaults suit whole-share US equities on a paper account."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    capital: PositiveFloat = Field(default=100_000.0, description="Capital the weights are fractions of.")
    max_weight_per_name: float = Field(
        default=0.25, gt=0.0, le=1.0, description="Cap on |weight| per symbol, applied before the gross cap."
    )
    gross_cap: float = Field(
        default=1.0, gt=0.0, le=1.0, description="Cap on the sum of |weight|; larger books are scaled down pro rata."
    )
    min_order_qty: float = Field(default=1.0, ge=0.0, description="Smaller deltas are not sent.")
    min_order_notional: float = Field(
        default=1.0, ge=0.0, description="Smaller deltas (qty * price) are not sent; Alpaca's minimum is $1."
    )
    qty_increment: PositiveFloat = Field(
        default=1.0,
        description="Lot size / quantity step. Whole shares by default: Alpaca cannot short fractional shares.",
    )
    allow_short: bool = Field(default=True, description="If false, negative weights are treated as flat.")
    time_in_force: TimeInForce = TimeInForce.DAY


def increment_decimals(increment: float) -> int:
    """Decimal places of a quantity step, to print quantities without float noise (0.1 -> 1)."""
    return max(0, -int(Decimal(str(increment)).normalize().as_tuple().exponent))


def round_to_lot(qty: float, increment: float) -> float:
    """Round toward zero to a whole number of ``increment`` steps.

    Toward zero, never away: rounding must never make the book larger than the target (or a
    position flip past zero), which the per-name and gross caps assume.
    """
    lots = math.floor(abs(qty) / increment + _LOT_EPSILON)
    if lots == 0:
        return 0.0
    return math.copysign(round(lots * increment, increment_decimals(increment)), qty)


class PortfolioConstructor:
    """Turns target weights into delta market orders for one account and strategy."""

    def __init__(self, config: PortfolioConfig | None = None) -> None:
        self.config = config or PortfolioConfig()

    def capped_weights(self, targets: Mapping[str, float]) -> dict[str, float]:
        """Weights after the short rule, the per-name cap and the gross cap."""
        cfg = self.config
        capped: dict[str, float] = {}
        for symbol in sorted(targets):
            w = float(targets[symbol])
            if not math.isfinite(w):
                raise ValueError(f"non-finite target weight for {symbol}: {w}")
            if w < 0 and not cfg.allow_short:
                w = 0.0
            capped[symbol] = max(-cfg.max_weight_per_name, min(cfg.max_weight_per_name, w))
        return scale_to_gross(capped, cfg.gross_cap)

    def target_quantities(self, targets: Mapping[str, float], prices: Mapping[str, float]) -> dict[str, float]:
        """Signed target quantity per symbol that has a usable price; symbols without one are skipped
        (no price means no sizing, and sizing against a stale guess is worse than waiting a bar)."""
        cfg = self.config
        quantities: dict[str, float] = {}
        for symbol, w in self.capped_weights(targets).items():
            price = prices.get(symbol)
            if price is None or not math.isfinite(price) or price <= 0:
                continue
            quantities[symbol] = round_to_lot(w * cfg.capital / price, cfg.qty_increment)
        return quantities

    def orders_for(
        self,
        targets: Mapping[str, float],
        prices: Mapping[str, float],
        positions: Mapping[str, float],
        open_qty: Mapping[str, float],
        bar_end: int,
        account: str,
        strategy: str,
        ts_tick_ingest: int,
    ) -> list[Order]:
        """Delta orders, sorted by symbol, that move ``positions + open_qty`` to the targets.

        ``positions`` and ``open_qty`` are signed (long/buy positive). Symbols absent from
        ``targets`` are not touched: no signal this bar means no new information, not "flatten".
        At most one order per symbol per bar (seq 0); a long-to-short flip is one order.
        """
        cfg = self.config
        ts_ingest = now_ns()
        orders: list[Order] = []
        for symbol, target_qty in sorted(self.target_quantities(targets, prices).items()):
            price = prices[symbol]
            working = positions.get(symbol, 0.0) + open_qty.get(symbol, 0.0)
            delta = round_to_lot(target_qty - working, cfg.qty_increment)
            if delta == 0.0:
                continue
            size = abs(delta)
            if size < cfg.min_order_qty - _LOT_EPSILON or size * price < cfg.min_order_notional:
                continue
            side = Side.BUY if delta > 0 else Side.SELL
            coid = client_order_id(strategy, symbol, side, bar_end, 0)
            orders.append(
                Order(
                    id=coid,
                    client_order_id=coid,
                    ts_event=bar_end,
                    ts_ingest=ts_ingest,
                    account=account,
                    strategy=strategy,
                    symbol=symbol,
                    side=side,
                    order_type=OrderType.MARKET,
                    time_in_force=cfg.time_in_force,
                    quantity=size,
                    signal_id=signal_id(strategy, symbol, bar_end),
                    ts_tick_ingest=ts_tick_ingest,
                )
            )
        return orders
