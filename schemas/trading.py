"""Trading records: signals, orders, risk rejects, execution reports, positions and P&L."""

from __future__ import annotations

from enum import Enum

from pydantic import Field, PositiveFloat, model_validator

from schemas.base import Record


class Side(str, Enum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1


class OrderType(str, Enum):
    MARKET = "market"
    LIMIT = "limit"


class TimeInForce(str, Enum):
    DAY = "day"
    IOC = "ioc"
    GTC = "gtc"


class OrderAction(str, Enum):
    NEW = "new"
    CANCEL = "cancel"


class OrderState(str, Enum):
    """Order life cycle; every transition is an ExecutionReport (DESIGN §1)."""

    NEW = "new"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"

    @property
    def is_terminal(self) -> bool:
        return self._value_ in _TERMINAL_STATES  # a set lookup: Enum member access is slow


_TERMINAL_STATES = frozenset({"filled", "canceled", "rejected"})


class Signal(Record):
    account: str = Field(min_length=1)
    strategy: str = Field(min_length=1)
    strategy_version: str = Field(min_length=1)
    model_version: str = ""
    symbol: str = Field(min_length=1)
    bar_end: int = Field(ge=0)
    score: float
    target_weight: float = Field(ge=-1.0, le=1.0)
    ts_tick_ingest: int = Field(ge=0)
    section_size: int = Field(
        default=1, ge=1, description="Signals in this bar's cross-section: a consumer across partitions "
        "knows the cross-section is complete once it holds this many.")
    section_seq: int = Field(
        default=0, ge=0, description="1 for the strategy's first released cross-section, 2 for the next...: "
        "a consumer across partitions releases cross-sections in this order.")


class Order(Record):
    """An order request. ``id`` equals ``client_order_id`` for new orders (``<coid>:cancel`` for a
    cancel request), so a replayed or retried order deduplicates everywhere."""

    client_order_id: str = Field(min_length=1)
    action: OrderAction = OrderAction.NEW
    account: str = Field(min_length=1)
    strategy: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    side: Side
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.DAY
    quantity: PositiveFloat
    limit_price: PositiveFloat | None = None
    signal_id: str = ""
    ts_tick_ingest: int = Field(ge=0)

    @model_validator(mode="after")
    def _limit_has_price(self) -> "Order":
        if self.order_type is OrderType.LIMIT and self.limit_price is None:
            raise ValueError("a limit order needs a limit_price")
        if self.order_type is OrderType.MARKET and self.limit_price is not None:
            raise ValueError("a market order must not carry a limit_price")
        return self


class RiskReject(Record):
    """An order denied by pre-trade risk, with every failing reason code."""

    account: str = Field(min_length=1)
    order: Order
    reasons: list[str] = Field(min_length=1)
    ts_tick_ingest: int = Field(ge=0)


class ExecutionReport(Record):
    """One order state transition. A fill report carries ``fill_id``, ``last_qty``, ``last_price``
    and ``fee``; the cumulative fields describe the order after the transition."""

    account: str = Field(min_length=1)
    venue: str = Field(min_length=1)
    client_order_id: str = Field(min_length=1)
    venue_order_id: str = ""
    strategy: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    side: Side
    state: OrderState
    order_qty: PositiveFloat
    cum_qty: float = Field(ge=0)
    leaves_qty: float = Field(ge=0)
    avg_price: float = Field(ge=0)
    fill_id: str = ""
    last_qty: float = Field(default=0.0, ge=0)
    last_price: float = Field(default=0.0, ge=0)
    fee: float = Field(default=0.0, ge=0)
    reason: str = ""
    ts_tick_ingest: int = Field(ge=0)

    @property
    def is_fill(self) -> bool:
        return bool(self.fill_id) and self.last_qty > 0


class PositionSnapshot(Record):
    account: str = Field(min_length=1)
    strategy: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    quantity: float
    avg_cost: float = Field(ge=0)
    mark_price: float = Field(ge=0)
    market_value: float
    realized_pnl: float
    unrealized_pnl: float
    fees: float = Field(ge=0)
    ts_tick_ingest: int = Field(ge=0)


class PnlSnapshot(Record):
    """Account-level (``strategy == '*'``) or per-strategy P&L; equity = capital + realized +
    unrealized - fees."""

    account: str = Field(min_length=1)
    strategy: str = Field(min_length=1)
    realized_pnl: float
    unrealized_pnl: float
    fees: float = Field(ge=0)
    equity: float
    peak_equity: float
    drawdown: float = Field(ge=0)
    gross_exposure: float = Field(ge=0)
    net_exposure: float
    ts_tick_ingest: int = Field(ge=0)
