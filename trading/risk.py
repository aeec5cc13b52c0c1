"""Pre-trade risk: the gate every order passes before it reaches a venue, and the loss breaker.

``RiskState`` is the functional core for one account (DESIGN §2). In the fused topology one
operator keyed by account runs risk -> simulated venue -> ledger, so fills reach
:meth:`RiskState.on_execution_report` before the next order; in the split topology the same class
reads fills and P&L back from ``exec.reports`` and ``pnl``. It imports nothing from Bytewax, Kafka
or ClickHouse, and holds only plain containers so Bytewax recovery can pickle it.

Time is event time only (``ts_event``): rate windows, day boundaries and breaker trips never read
the wall clock, so a replay makes the same decisions. ``now_ns()`` fills ``ts_ingest`` and nothing else.

Decisions worth knowing (each also noted where it is implemented):

- **Every check runs**: a ``RiskReject`` lists all failing reasons, in ``RejectReason``
  declaration order, so a reject explains itself completely and the order of codes is stable.
- **Pricing**: market orders are priced at the last trade for every check; limit orders at their
  limit price for order notional, and positions are always marked at the last trade.
- **Projection**: a symbol's position after an order = filled position + leaves of open orders on
  the order's side + the order (the worst case: all same-side working orders fill). Gross and net
  project every other symbol the same way, on whichever side grows its |position| more.
- **Rate limits count approved new orders only**: they protect the venue's message rate, and a
  strategy hammering rejects is already visible in ``stats()``. Cancels are never rate-limited,
  because cancelling must always be possible. The window clock is the high-water mark of order
  ``ts_event`` (out-of-order orders cannot un-slide a window); windows are half-open ``(t - w, t]``.
- **Duplicate client_order_id**: every id seen (approved or rejected) is kept for the session, so a
  replayed intent never reaches the venue twice. Its reject has the same id as the first reject.
- **Breaker** (``trading/risk_breaker.py``): first trip REDUCING, second HALTED. HALTED and REDUCING are never left automatically, not
  even at a new trading day; an operator sends ``TRADING_STATE active`` via control.
"""

from __future__ import annotations

from collections import deque
from enum import Enum

from market.calendar import TradingCalendar
from trading.risk_breaker import BreakerTrip, LossBreaker, TradingState, over_limit
from trading.risk_book import SymbolBook as _SymbolBook
from trading.risk_limits import RiskLimits
from schemas.base import NANOS_PER_SECOND, now_ns
from schemas.control import ControlCommand, ControlKind
from schemas.trading import ExecutionReport, Order, OrderAction, OrderType, PnlSnapshot, RiskReject, Side

NANOS_PER_MINUTE = 60 * NANOS_PER_SECOND
ACCOUNT_WIDE = "*"  # PnlSnapshot.strategy of the account-level snapshot
GLOBAL_TARGET = "global"  # ControlCommand.target that addresses every account
ISSUER = "risk"  # ControlCommand.issued_by of everything this stage emits

__all__ = ["RejectReason", "RiskState", "RiskLimits", "TradingState", "BreakerTrip"]


class RejectReason(str, Enum):
    """Why risk denied an order. ``RiskReject.reasons`` lists codes in this declaration order."""

    KILL_SWITCH = "kill_switch"  # kill switch on, globally or for this account
    TRADING_HALTED = "trading_halted"  # breaker or operator put the account in HALTED
    MARKET_CLOSED = "market_closed"  # order's ts_event outside a session of the venue's calendar
    REDUCE_ONLY = "reduce_only"  # REDUCING, and the order would open, grow or flip a position
    MAX_ORDER_QTY = "max_order_qty"
    MAX_ORDER_NOTIONAL = "max_order_notional"
    PRICE_COLLAR = "price_collar"  # limit price too far from the last trade
    NO_REFERENCE_PRICE = "no_reference_price"  # no trade seen for the symbol yet
    MAX_POSITION = "max_position"  # |projected position| over max_position_qty
    MAX_POSITION_NOTIONAL = "max_position_notional"
    MAX_GROSS_NOTIONAL = "max_gross_notional"
    MAX_NET_NOTIONAL = "max_net_notional"
    MAX_OPEN_ORDERS = "max_open_orders"
    RATE_LIMIT_SECOND = "rate_limit_second"
    RATE_LIMIT_MINUTE = "rate_limit_minute"
    DUPLICATE_ORDER_ID = "duplicate_order_id"  # client_order_id seen before in this session
    UNKNOWN_ORDER = "unknown_order"  # cancel for an order that is not open


# Plain strings for the hot path: RiskReject.reasons is list[str].
_R = {reason.name: reason.value for reason in RejectReason}


class RiskState:
    """Pre-trade risk and the loss breaker for one account.

    Inputs: ``on_order`` (returns the order or a ``RiskReject``), ``on_trade`` (reference
    prices), ``on_execution_report`` (open orders and positions), ``on_pnl`` (breaker),
    ``on_control`` (kill switch, limits, operator trading state).
    """

    def __init__(self, account: str, limits: RiskLimits | None = None, calendar: TradingCalendar | None = None) -> None:
        if not account:
            raise ValueError("RiskState needs an account")
        self._account = account
        self._limits = limits if limits is not None else RiskLimits()
        self._state = TradingState.ACTIVE
        self._kill_global = False
        self._kill_account = False
        self._books: dict[str, _SymbolBook] = {}
        # client_order_id -> [symbol, sign, leaves] for every order approved and not yet closed.
        self._open: dict[str, list] = {}
        self._seen_order_ids: set[str] = set()
        self._seen_fill_ids: set[str] = set()
        self._clock_ns = 0  # high-water mark of order ts_event: the rate windows' "now"
        self._sent_last_second: deque[int] = deque()
        self._sent_last_minute: deque[int] = deque()
        # The venue's sessions (market/calendar.py; None: always open, UTC days): new orders outside
        # a session are denied, and the breaker's trading day follows them.
        self._calendar = calendar
        self._breaker = LossBreaker(calendar)  # driven by account-level P&L snapshots
        # Last approved order, for the per-order rows of utilisation().
        self._last_order_qty = 0.0
        self._last_order_notional = 0.0
        self._last_collar_pct = 0.0
        self._counters: dict[str, int] = {
            "approved": 0, "rejected": 0, "cancels_approved": 0, "cancels_rejected": 0,
            "fills_applied": 0, "fills_duplicate": 0, "breaker_trips": 0,
        }

    # ----------------------------------------------------------------------------------- state

    @property
    def account(self) -> str:
        return self._account

    @property
    def limits(self) -> RiskLimits:
        return self._limits

    @property
    def trading_state(self) -> TradingState:
        return self._state

    @property
    def kill_switch(self) -> bool:
        """True if the kill switch is on globally or for this account."""
        return self._kill_global or self._kill_account

    def position(self, symbol: str) -> float:
        """Filled position in ``symbol`` (open orders excluded)."""
        book = self._books.get(symbol)
        return book.position if book is not None else 0.0

    @property
    def open_order_ids(self) -> frozenset[str]:
        return frozenset(self._open)

    # ---------------------------------------------------------------------------------- orders

    def on_order(self, order: Order) -> Order | RiskReject:
        """Approve (return ``order`` unchanged) or deny (return a ``RiskReject`` with every reason).

        A cancel passes whenever its order is open, even with the kill switch on or HALTED:
        cancelling only ever reduces risk. Otherwise it is denied with ``unknown_order``.
        """
        self._require_account(order.account, "order")
        if order.action is OrderAction.CANCEL:
            return self._on_cancel(order)
        reasons = self._check_new(order)
        self._seen_order_ids.add(order.client_order_id)
        if reasons:
            return self._reject(order, reasons, f"reject:{order.client_order_id}")
        self._approve_new(order)
        return order

    def on_reducing_order(self, order: Order) -> Order | RiskReject:
        """An operator's unwind (a flatten's closing order): checked as REDUCING checks it, whatever
        the state. It must shrink its symbol's position without flipping it (with the working
        orders on its side), stay within ``max_order_qty`` and ``max_order_notional``, and carry a
        new id. The kill switch, HALTED, the exposure limits (a reducing order only lowers them),
        the open-order count and the rate windows do not stop it, as they never stop a cancel:
        unwinding must always be possible. Approved, it is working at once like any order."""
        self._require_account(order.account, "order")
        if order.action is OrderAction.CANCEL:
            return self._on_cancel(order)
        limits = self._limits
        sign = 1 if order.side is Side.BUY else -1
        book = self._book(order.symbol)
        same_side_leaves = book.buy_leaves if sign > 0 else book.sell_leaves
        projected = book.position + sign * (same_side_leaves + order.quantity)
        reasons: list[str] = []
        if not (book.position * sign < 0 and projected * book.position >= 0):
            reasons.append(_R["REDUCE_ONLY"])
        if over_limit(order.quantity, limits.max_order_qty):
            reasons.append(_R["MAX_ORDER_QTY"])
        price = order.limit_price if order.order_type is OrderType.LIMIT else book.mark
        if price and over_limit(order.quantity * price, limits.max_order_notional):
            reasons.append(_R["MAX_ORDER_NOTIONAL"])
        if order.client_order_id in self._seen_order_ids:
            reasons.append(_R["DUPLICATE_ORDER_ID"])
        self._seen_order_ids.add(order.client_order_id)
        if reasons:
            return self._reject(order, reasons, f"reject:{order.client_order_id}")
        if order.ts_event > self._clock_ns:
            self._clock_ns = order.ts_event
        book.add_leaves(sign, order.quantity)
        self._open[order.client_order_id] = [order.symbol, sign, order.quantity]
        self._counters["approved"] += 1
        self._counters["unwind_approved"] = self._counters.get("unwind_approved", 0) + 1
        return order

    def _check_new(self, order: Order) -> list[str]:
        limits = self._limits
        reasons: list[str] = []
        qty = order.quantity
        sign = 1 if order.side is Side.BUY else -1
        book = self._books.get(order.symbol)
        if book is None:
            position = same_side_leaves = last = fill_price = 0.0
        else:
            position = book.position
            same_side_leaves = book.buy_leaves if sign > 0 else book.sell_leaves
            last = book.last_price
            fill_price = book.fill_price
        projected = position + sign * (same_side_leaves + qty)
        is_limit = order.order_type is OrderType.LIMIT
        if order.ts_event > self._clock_ns:
            self._clock_ns = order.ts_event

        if self._kill_global or self._kill_account:
            reasons.append(_R["KILL_SWITCH"])
        if self._state is TradingState.HALTED:
            reasons.append(_R["TRADING_HALTED"])
        if self._calendar is not None and not self._calendar.is_open(order.ts_event):
            reasons.append(_R["MARKET_CLOSED"])
        # Reduce-only: opposite side to a non-zero position, and with the other working reducing
        # orders it must not cross through zero (a flip opens a new position).
        if self._state is TradingState.REDUCING and not (position * sign < 0 and projected * position >= 0):
            reasons.append(_R["REDUCE_ONLY"])
        if over_limit(qty, limits.max_order_qty):
            reasons.append(_R["MAX_ORDER_QTY"])
        order_price = order.limit_price if is_limit else last
        if order_price and over_limit(qty * order_price, limits.max_order_notional):
            reasons.append(_R["MAX_ORDER_NOTIONAL"])
        if last:
            if is_limit and over_limit(abs(order.limit_price - last), limits.price_collar_pct * last):
                reasons.append(_R["PRICE_COLLAR"])
        else:
            reasons.append(_R["NO_REFERENCE_PRICE"])
        if over_limit(abs(projected), limits.max_position_qty):
            reasons.append(_R["MAX_POSITION"])
        # Mark at the last trade; with none (already denied above) fall back so the notional
        # checks still report what they can.
        mark = last or (order.limit_price if is_limit else fill_price) or 0.0
        if over_limit(abs(projected) * mark, limits.max_position_notional):
            reasons.append(_R["MAX_POSITION_NOTIONAL"])
        gross, net = self._projected_exposure(order.symbol, projected * mark)
        if over_limit(gross, limits.max_gross_notional):
            reasons.append(_R["MAX_GROSS_NOTIONAL"])
        if over_limit(abs(net), limits.max_net_notional):
            reasons.append(_R["MAX_NET_NOTIONAL"])
        if len(self._open) >= limits.max_open_orders:
            reasons.append(_R["MAX_OPEN_ORDERS"])
        if self._window_count(self._sent_last_second, NANOS_PER_SECOND) >= limits.max_orders_per_second:
            reasons.append(_R["RATE_LIMIT_SECOND"])
        if self._window_count(self._sent_last_minute, NANOS_PER_MINUTE) >= limits.max_orders_per_minute:
            reasons.append(_R["RATE_LIMIT_MINUTE"])
        if order.client_order_id in self._seen_order_ids:
            reasons.append(_R["DUPLICATE_ORDER_ID"])
        return reasons

    def _projected_exposure(self, symbol: str, order_symbol_value: float) -> tuple[float, float]:
        """Gross and net notional with ``symbol`` at ``order_symbol_value`` and every other
        symbol at its worst-case position x mark."""
        gross = abs(order_symbol_value)
        net = order_symbol_value
        for other, book in self._books.items():
            if other == symbol:
                continue
            value = book.worst_case_position() * book.mark
            gross += abs(value)
            net += value
        return gross, net

    def _window_count(self, window: deque[int], width_ns: int) -> int:
        horizon = self._clock_ns - width_ns
        while window and window[0] <= horizon:
            window.popleft()
        return len(window)

    def _approve_new(self, order: Order) -> None:
        sign = 1 if order.side is Side.BUY else -1
        book = self._book(order.symbol)
        book.add_leaves(sign, order.quantity)
        # An approved order is working at once, so the next order's projections include it.
        self._open[order.client_order_id] = [order.symbol, sign, order.quantity]
        self._sent_last_second.append(self._clock_ns)
        self._sent_last_minute.append(self._clock_ns)
        self._counters["approved"] += 1
        price = order.limit_price if order.limit_price is not None else book.last_price
        self._last_order_qty = order.quantity
        self._last_order_notional = order.quantity * price
        self._last_collar_pct = abs(price - book.last_price) / book.last_price

    def _on_cancel(self, order: Order) -> Order | RiskReject:
        if order.client_order_id in self._open:
            self._counters["cancels_approved"] += 1
            return order
        self._counters["cancels_rejected"] += 1
        # The ":cancel" suffix keeps this reject's id apart from a reject of the order itself.
        return self._reject(order, [_R["UNKNOWN_ORDER"]], f"reject:{order.client_order_id}:cancel", count=False)

    def _reject(self, order: Order, reasons: list[str], reject_id: str, count: bool = True) -> RiskReject:
        counters = self._counters
        if count:
            counters["rejected"] += 1
        for reason in reasons:
            key = "rejected." + reason
            counters[key] = counters.get(key, 0) + 1
        return RiskReject(
            id=reject_id,
            ts_event=order.ts_event,
            ts_ingest=now_ns(),
            account=self._account,
            order=order,
            reasons=reasons,
            ts_tick_ingest=order.ts_tick_ingest,
        )

    # ----------------------------------------------------------------------- market and venue

    def on_trade(self, symbol: str, price: float, ts_event: int) -> None:
        """Record the last trade price of ``symbol`` (collar reference and mark).

        A trade older than the one already held is ignored: a late print must not move the
        reference backwards.
        """
        if price <= 0:
            return
        book = self._book(symbol)
        if ts_event >= book.last_trade_ts:
            book.last_price = price
            book.last_trade_ts = ts_event

    def on_execution_report(self, report: ExecutionReport) -> None:
        """Apply a venue report: fills move the position (once per ``fill_id``), and the order's
        leaves shrink or the order closes (filled, canceled, rejected, or nothing left)."""
        self._require_account(report.account, "execution report")
        book = self._book(report.symbol)
        sign = 1 if report.side is Side.BUY else -1
        if report.is_fill:
            if report.fill_id in self._seen_fill_ids:
                self._counters["fills_duplicate"] += 1
            else:
                self._seen_fill_ids.add(report.fill_id)
                book.position += sign * report.last_qty
                book.fill_price = report.last_price
                self._counters["fills_applied"] += 1
        working = self._open.get(report.client_order_id)
        if working is None:
            return  # not approved here (or already closed): nothing to track
        leaves = working[2]
        # Leaves only ever shrink; min() makes a replayed older report harmless.
        new_leaves = 0.0 if report.state.is_terminal else min(leaves, report.leaves_qty)
        closed = new_leaves <= 0.0
        book.reduce_leaves(working[1], leaves - new_leaves, closed)
        if closed:
            del self._open[report.client_order_id]
        else:
            working[2] = new_leaves

    # --------------------------------------------------------------------------------- breaker

    def on_pnl(self, snapshot: PnlSnapshot) -> list[ControlCommand]:
        """Feed account-level snapshots (``strategy == "*"``) to the loss breaker
        (``trading/risk_breaker.py``: daily loss from the trading day start, drawdown from peak, REDUCING
        then HALTED). On a state change return ``TRADING_STATE`` with name = the new state,
        detail = the ``BreakerTrip`` codes comma-joined, value = the first one's measure."""
        self._require_account(snapshot.account, "P&L snapshot")
        if snapshot.strategy != ACCOUNT_WIDE:
            return []
        change = self._breaker.observe(
            snapshot.ts_event, snapshot.equity, snapshot.peak_equity, self._limits, self._state
        )
        if change is None:
            return []
        new_state, causes = change
        self._state = new_state
        self._counters["breaker_trips"] += 1
        return [ControlCommand(
            id=f"risk:{self._account}:trading_state:{snapshot.ts_event}",
            ts_event=snapshot.ts_event,
            ts_ingest=now_ns(),
            target=self._account,
            kind=ControlKind.TRADING_STATE,
            name=new_state.value,
            value=causes[0][1],
            issued_by=ISSUER,
            detail=",".join(cause.value for cause, _ in causes),
        )]

    # --------------------------------------------------------------------------------- control

    def on_control(self, cmd: ControlCommand) -> list[ControlCommand]:
        """Apply a control command addressed to this account or ``global``.

        - KILL_SWITCH: value 1 on, 0 off; the global and the account switch are separate flags,
          and new orders are denied while either is on.
        - SET_LIMIT: ``with_limit(name, value)``; an unknown name or invalid value changes nothing
          and returns an ALERT naming the problem.
        - TRADING_STATE from an operator: name active|reducing|halted. ``active`` re-arms the
          breaker: drawdown is measured from the equity at the reset (the operator accepted the
          loss so far), the daily loss still from the day start, so a reset while today's loss is
          over the limit trips again on the next snapshot unless the limit is raised too.
          Commands issued by risk itself are ignored: in the split topology they come back on the
          control topic, and an echoed ``reducing`` must not undo a later ``halted``.
        Returns the records to emit (ALERTs for rejected commands), usually nothing.
        """
        if cmd.target not in (GLOBAL_TARGET, self._account):
            return []
        if cmd.kind is ControlKind.KILL_SWITCH:
            if cmd.value not in (0.0, 1.0):
                return [self._alert(cmd, "invalid_kill_switch", f"kill switch value must be 1 or 0, got {cmd.value}")]
            if cmd.target == GLOBAL_TARGET:
                self._kill_global = cmd.value == 1.0
            else:
                self._kill_account = cmd.value == 1.0
        elif cmd.kind is ControlKind.SET_LIMIT:
            try:
                self._limits = self._limits.with_limit(cmd.name, cmd.value)
            except ValueError as exc:
                return [self._alert(cmd, "invalid_set_limit", str(exc))]
        elif cmd.kind is ControlKind.RESUME:
            return self._resume(cmd)
        elif cmd.kind is ControlKind.TRADING_STATE and cmd.issued_by != ISSUER:
            try:
                new_state = TradingState(cmd.name)
            except ValueError:
                valid = ", ".join(state.value for state in TradingState)
                return [self._alert(cmd, "invalid_trading_state",
                                    f"unknown trading state {cmd.name!r}; valid states: {valid}")]
            self._state = new_state
            if new_state is TradingState.ACTIVE:
                self._breaker.rearm()
        return []

    def _resume(self, cmd: ControlCommand) -> list[ControlCommand]:
        """RESUME: back to ACTIVE with the breaker re-armed (as ``TRADING_STATE active``), unless
        the breaker would trip again on the very next snapshot: re-arming accepts the drawdown so
        far, but today's loss still counts from the day start, so while it is over
        ``daily_loss_limit`` the account stays as it is and an ALERT ``resume_refused`` says why.
        Done, it emits the state record ``TRADING_STATE active`` naming who resumed and why."""
        if self._state is TradingState.ACTIVE:
            return [self._alert(cmd, "resume_not_needed", "the account is already active")]
        daily_loss, limit = self._breaker.daily_loss, self._limits.daily_loss_limit
        if over_limit(daily_loss, limit):
            return [self._alert(cmd, "resume_refused",
                                f"the breaker would trip again at once: today's loss {daily_loss:,.2f} is over "
                                f"daily_loss_limit {limit:,.2f}; raise the limit first; the account stays "
                                f"{self._state.value}")]
        previous = self._state
        self._state = TradingState.ACTIVE
        self._breaker.rearm()
        why = cmd.detail or "no reason given"
        return [ControlCommand(
            id=f"risk:{self._account}:trading_state:resume:{cmd.id}", ts_event=cmd.ts_event, ts_ingest=now_ns(),
            target=self._account, kind=ControlKind.TRADING_STATE, name=TradingState.ACTIVE.value,
            issued_by=ISSUER, detail=f"resumed from {previous.value} by {cmd.issued_by}: {why}",
        )]

    def _alert(self, cmd: ControlCommand, name: str, detail: str) -> ControlCommand:
        return ControlCommand(
            id=f"risk:{self._account}:alert:{cmd.id}",
            ts_event=cmd.ts_event,
            ts_ingest=now_ns(),
            target=self._account,
            kind=ControlKind.ALERT,
            name=name,
            issued_by=ISSUER,
            detail=detail,
        )

    # ----------------------------------------------------------------------------- reporting

    def utilisation(self) -> dict[str, tuple[float, float]]:
        """``limit name -> (current value, limit)`` for the dashboard's Risk page.

        Per-order limits show the last approved order; position limits the largest symbol under
        the same worst-case projection the checks use; rates count approved orders in the window
        ending at the latest order time; daily loss is today's loss (0 when in profit).
        """
        limits = self._limits
        max_qty = max_notional = gross = net = 0.0
        for book in self._books.values():
            position = book.worst_case_position()
            value = position * book.mark
            max_qty = max(max_qty, abs(position))
            max_notional = max(max_notional, abs(value))
            gross += abs(value)
            net += value
        second_horizon = self._clock_ns - NANOS_PER_SECOND
        minute_horizon = self._clock_ns - NANOS_PER_MINUTE
        return {
            "max_order_qty": (self._last_order_qty, limits.max_order_qty),
            "max_order_notional": (self._last_order_notional, limits.max_order_notional),
            "price_collar_pct": (self._last_collar_pct, limits.price_collar_pct),
            "max_position_qty": (max_qty, limits.max_position_qty),
            "max_position_notional": (max_notional, limits.max_position_notional),
            "max_gross_notional": (gross, limits.max_gross_notional),
            "max_net_notional": (abs(net), limits.max_net_notional),
            "max_open_orders": (float(len(self._open)), float(limits.max_open_orders)),
            "max_orders_per_second": (float(sum(t > second_horizon for t in self._sent_last_second)),
                                      float(limits.max_orders_per_second)),
            "max_orders_per_minute": (float(sum(t > minute_horizon for t in self._sent_last_minute)),
                                      float(limits.max_orders_per_minute)),
            "daily_loss_limit": (max(0.0, self._breaker.daily_loss), limits.daily_loss_limit),
            "max_drawdown_pct": (max(0.0, self._breaker.drawdown_pct), limits.max_drawdown_pct),
        }

    def stats(self) -> dict[str, int]:
        """Counters: approved, rejected, ``rejected.<reason>`` per reason code (an order denied
        for three reasons counts once in ``rejected`` and once under each reason), cancels,
        fills applied and duplicate fills, breaker trips."""
        return dict(self._counters)

    # --------------------------------------------------------------------------------- helpers

    def _book(self, symbol: str) -> _SymbolBook:
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = _SymbolBook()
        return book

    def _require_account(self, account: str, what: str) -> None:
        # Keyed by account upstream, so a mismatch is a wiring bug: fail loudly, never guess.
        if account != self._account:
            raise ValueError(f"{what} for account {account!r} sent to risk of account {self._account!r}")
