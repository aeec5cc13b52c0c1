"""From target weights to delta orders: size, cap, round to the lot, net, drop dust.

The constructor is stateless: it is handed the book (filled positions and quantities still working
at the venue) and returns only the orders that move the book to the target. Because the netting
counts working orders, asking twice for the same target yields no second order, and because
client_order_ids derive from the bar time, re-running a bar yields the same ids.

Two ways to execute (``PortfolioConfig.execution``):

- ``market`` (default): :meth:`PortfolioConstructor.orders_for`, delta market orders netted against
  positions and working quantity. Immediate, and it pays the half spread, the impact and the fee.
- ``passive``: :meth:`PortfolioConstructor.passive_orders_for`, a limit order *at the touch* for the
  delta (a buy at the bid, a sell at the ask), so a fill earns the half spread instead of paying it
  and has no impact; the price is that it may not fill, and that it fills more readily when the
  market comes to it (adverse selection, which the simulated venue models: a price that trades
  through a resting limit fills it at its limit). Each bar the order is re-quoted: a working order
  still on the right side, for the right quantity, at the current touch is left alone; any other
  working order of that symbol is canceled and, if a delta remains, one new limit goes out. So at
  most one order per symbol works, and it is never more than one bar stale. It needs the touch,
  which only the trading desk sees (it processes the quotes); a symbol without a quote yet gets no
  order that bar. Measured on the synthetic tape (see ``research/evaluation.py``): with a
  1-second forecast worth 1-2 bp, crossing the spread costs more than the forecast earns, and
  resting at the touch is what leaves something after fees.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Iterable, Literal, Mapping, Protocol

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat

from schemas import Order, OrderAction, OrderType, Side, TimeInForce, now_ns
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
    execution: Literal["market", "passive"] = Field(
        default="market",
        description="market: delta market orders. passive: one limit order at the touch per symbol, "
        "re-quoted every bar (see the module docstring); needs quotes, so only the trading desk uses it.",
    )


class WorkingOrderView(Protocol):
    """What passive execution reads of a working order (``venues.order_book.OpenOrder`` fits)."""

    client_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    leaves_qty: float
    limit_price: float | None


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

    def passive_orders_for(
        self,
        targets: Mapping[str, float],
        prices: Mapping[str, float],
        touches: Mapping[str, tuple[float, float]],
        positions: Mapping[str, float],
        working: Iterable[WorkingOrderView],
        bar_end: int,
        account: str,
        strategy: str,
        ts_tick_ingest: int,
    ) -> list[Order]:
        """Cancels and limit orders at the touch that move ``positions`` to the targets.

        ``touches`` maps a symbol to its current ``(bid, ask)``; ``working`` is this strategy's
        working orders (any symbols). Per symbol, sorted: the working order is kept if it alone
        already asks for the whole delta at the current touch; otherwise every working order of
        the symbol is canceled (cancels first) and, when the delta is worth an order and there is
        a touch to price it at, one DAY limit goes out at the bid (buy) or the ask (sell). As in
        :meth:`orders_for`, symbols absent from ``targets`` are not touched and prices size the
        targets. A cancel keeps the canceled order's client_order_id (its id gets ``:cancel``).
        """
        cfg = self.config
        ts_ingest = now_ns()
        by_symbol: dict[str, list[WorkingOrderView]] = {}
        for order in working:
            by_symbol.setdefault(order.symbol, []).append(order)
        out: list[Order] = []
        for symbol, target_qty in sorted(self.target_quantities(targets, prices).items()):
            working_here = sorted(by_symbol.get(symbol, ()), key=lambda o: o.client_order_id)
            delta = round_to_lot(target_qty - positions.get(symbol, 0.0), cfg.qty_increment)
            size = abs(delta)
            worth_an_order = size > 0.0 and not (
                size < cfg.min_order_qty - _LOT_EPSILON or size * prices[symbol] < cfg.min_order_notional
            )
            side = Side.BUY if delta > 0 else Side.SELL
            touch = touches.get(symbol)
            limit = None if touch is None else (touch[0] if side is Side.BUY else touch[1])
            if worth_an_order and limit is not None and len(working_here) == 1:
                current = working_here[0]
                if (current.side is side and current.order_type is OrderType.LIMIT
                        and current.limit_price == limit and abs(current.leaves_qty - size) <= _LOT_EPSILON):
                    continue  # already working exactly what this bar asks for
            for current in working_here:
                out.append(self._cancel(current, bar_end, ts_ingest, account, strategy, ts_tick_ingest))
            if not worth_an_order or limit is None or not (limit > 0.0 and math.isfinite(limit)):
                continue
            coid = client_order_id(strategy, symbol, side, bar_end, 0)
            out.append(Order(
                id=coid, client_order_id=coid, ts_event=bar_end, ts_ingest=ts_ingest, account=account,
                strategy=strategy, symbol=symbol, side=side, order_type=OrderType.LIMIT,
                time_in_force=cfg.time_in_force, quantity=size, limit_price=limit,
                signal_id=signal_id(strategy, symbol, bar_end), ts_tick_ingest=ts_tick_ingest,
            ))
        return out

    @staticmethod
    def _cancel(order: WorkingOrderView, bar_end: int, ts_ingest: int, account: str, strategy: str,
                ts_tick_ingest: int) -> Order:
        coid = order.client_order_id
        is_limit = order.order_type is OrderType.LIMIT and order.limit_price is not None
        return Order(
            id=f"{coid}:cancel", client_order_id=coid, action=OrderAction.CANCEL, ts_event=bar_end,
            ts_ingest=ts_ingest, account=account, strategy=strategy, symbol=order.symbol, side=order.side,
            order_type=OrderType.LIMIT if is_limit else OrderType.MARKET, quantity=order.leaves_qty,
            limit_price=order.limit_price if is_limit else None, ts_tick_ingest=ts_tick_ingest,
        )
