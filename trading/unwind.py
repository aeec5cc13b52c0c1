"""Stop and unwind: an operator's cancel-all and flatten of one account, in front of its order path.

- **CANCEL_ALL** (``name``: one strategy, or ``""`` for all): a cancel request for every working
  order in scope, through risk (a cancel of an open order always passes) to the venue. Each cancel
  comes back as an execution report: at once from the simulated venue, on its stream from Alpaca,
  in event time from the split topology's execution stage.
- **FLATTEN**: the same cancels, then a market order closing each position in scope, sliced to
  ``max_order_qty`` and ``max_order_notional``, checked by risk as REDUCING checks it
  (:meth:`trading.risk.RiskState.on_reducing_order`: it passes the kill switch and HALTED, it can
  never open or flip a position). The closing orders go out only once every cancel has been
  answered (canceled, or refused because the order filled or closed meanwhile): a working order
  that fills before its cancel lands changes the position the close must take back, so closing at
  once could overshoot. Flatten changes no trading state: with the kill switch off the strategy may
  open positions again at its next bar (``tapeflow control kill-switch on --flatten`` stops and
  unwinds).

Every order's ``ts_event`` is the owner's ``now``: the desk's processed event time (the split risk
stage: no earlier than its last promise to the execution stage). ``ts_tick_ingest`` is the
command's ``ts_ingest``, so tick-to-order latency reads command-to-order here.

Never twice: a command id is applied once (a redelivered command does nothing), and closing-order
ids derive from the command id (:func:`strategies.ids.unwind_order_id`), so a replay from a
snapshot taken before the command re-creates the very same orders (risk and the venues refuse a
known id), and a snapshot taken after it remembers the command and its pending closes. A second
flatten with a new id closes what the positions are then, not what they were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from schemas import ControlCommand, ControlKind, Order, OrderAction, OrderType, Side, TimeInForce, now_ns
from strategies.ids import unwind_order_id
from topics.catalog import table_name
from trading.order_path import Book, OrderPath
from trading.risk import GLOBAL_TARGET, ISSUER
from trading.risk_limits import RiskLimits

T_CONTROL = table_name("control")
UNWIND_KINDS = frozenset({ControlKind.CANCEL_ALL, ControlKind.FLATTEN})


@dataclass
class PendingFlatten:
    """A flatten whose cancels are not all answered yet; ``sending`` while they are being sent."""

    command: ControlCommand
    awaiting: set[str] = field(default_factory=set)
    sending: bool = True


class Unwinder:
    """Cancel-all and flatten of one account; plain attributes, picklable with its owner."""

    def __init__(self, account: str) -> None:
        self.account = account
        self.applied: set[str] = set()  # command ids already applied
        self.pending: list[PendingFlatten] = []
        self.counts = {"cancels_sent": 0, "closes_sent": 0, "repeated_commands": 0}

    def on_command(self, cmd: ControlCommand, now: int, orders: OrderPath, out: list, book: Book) -> None:
        """Apply CANCEL_ALL or FLATTEN addressed to this account or ``global`` (anything else is
        ignored); orders and their reports go to ``out`` through ``orders`` and ``book``."""
        if cmd.kind not in UNWIND_KINDS or cmd.target not in (GLOBAL_TARGET, self.account):
            return
        if cmd.id in self.applied:
            self.counts["repeated_commands"] += 1
            return
        self.applied.add(cmd.id)
        strategy = cmd.name or None
        working = sorted((o for o in orders.venue.open_orders() if strategy is None or o.strategy == strategy),
                         key=lambda o: o.client_order_id)
        pending = None
        if cmd.kind is ControlKind.FLATTEN:
            pending = PendingFlatten(cmd, {o.client_order_id for o in working})
            self.pending.append(pending)
        scope = f"strategy {strategy}" if strategy else "every strategy"
        out.append((T_CONTROL, self._alert(cmd, cmd.kind.value, f"{len(working)} working orders of {scope} to cancel"
                                           + ("; then every position closed" if pending else ""))))
        for working_order in working:
            self.counts["cancels_sent"] += 1
            if not orders.submit(self._cancel(working_order, cmd, now), out, book) and pending is not None:
                pending.awaiting.discard(working_order.client_order_id)  # risk knew it closed already
        if pending is not None:
            pending.sending = False
            self._close_ready(now, orders, out, book)

    def on_reports(self, reports, now: int, orders: OrderPath, out: list, book: Book) -> None:
        """Reports the owner booked: a pending flatten whose last cancel they answer closes now."""
        if not self.pending:
            return
        for report in reports:
            if report.state.is_terminal or report.reason.startswith("cancel_rejected"):
                for pending in self.pending:
                    pending.awaiting.discard(report.client_order_id)
        self._close_ready(now, orders, out, book)

    # ------------------------------------------------------------------ internals

    def _close_ready(self, now: int, orders: OrderPath, out: list, book: Book) -> None:
        ready = [p for p in self.pending if not p.sending and not p.awaiting]
        if not ready:
            return
        self.pending = [p for p in self.pending if p.sending or p.awaiting]
        for pending in ready:
            self._close(pending.command, now, orders, out, book)

    def _close(self, cmd: ControlCommand, now: int, orders: OrderPath, out: list, book: Book) -> None:
        ledger = orders.marked.ledger
        strategy = cmd.name or None
        positions = sorted((key, qty) for key, qty in ledger.positions().items()
                           if strategy is None or key[0] == strategy)
        sent = 0
        for (owner, symbol), qty in positions:
            side = Side.SELL if qty > 0 else Side.BUY
            for seq, size in enumerate(order_slices(abs(qty), orders.risk.limits, ledger.mark(symbol))):
                coid = unwind_order_id(owner, symbol, side, cmd.id, seq)
                close = Order(
                    id=coid, client_order_id=coid, ts_event=now, ts_ingest=now_ns(), account=self.account,
                    strategy=owner, symbol=symbol, side=side, order_type=OrderType.MARKET,
                    # Alpaca takes crypto as GTC/IOC only; equities close within the day.
                    time_in_force=TimeInForce.GTC if "/" in symbol else TimeInForce.DAY,
                    quantity=size, ts_tick_ingest=cmd.ts_ingest,
                )
                orders.submit(close, out, book, reducing=True)
                sent += 1
        self.counts["closes_sent"] += sent
        out.append((T_CONTROL, self._alert(cmd, "flatten_closing",
                                           f"{sent} closing orders for {len(positions)} positions")))

    def _cancel(self, working, cmd: ControlCommand, now: int) -> Order:
        coid = working.client_order_id
        is_limit = working.order_type is OrderType.LIMIT and working.limit_price is not None
        return Order(
            id=f"{coid}:cancel", client_order_id=coid, action=OrderAction.CANCEL, ts_event=now, ts_ingest=now_ns(),
            account=self.account, strategy=working.strategy, symbol=working.symbol, side=working.side,
            order_type=OrderType.LIMIT if is_limit else OrderType.MARKET, quantity=working.leaves_qty,
            limit_price=working.limit_price if is_limit else None, ts_tick_ingest=cmd.ts_ingest,
        )

    def _alert(self, cmd: ControlCommand, name: str, detail: str) -> ControlCommand:
        return ControlCommand(
            id=f"risk:{self.account}:{name}:{cmd.id}", ts_event=cmd.ts_event, ts_ingest=now_ns(), target=self.account,
            kind=ControlKind.ALERT, name=name, issued_by=ISSUER, detail=f"{detail} (by {cmd.issued_by})",
        )


def order_slices(quantity: float, limits: RiskLimits, mark: float | None) -> list[float]:
    """``quantity`` in orders each within ``max_order_qty`` and ``max_order_notional`` at ``mark``
    (whole units when a slice can hold one), summing to ``quantity`` exactly."""
    cap = limits.max_order_qty
    if mark:
        cap = min(cap, limits.max_order_notional / mark)
    if cap >= 1.0:
        cap = math.floor(cap)
    if quantity <= cap:
        return [quantity]
    full = int(quantity // cap)
    rest = quantity - full * cap
    return [float(cap)] * full + ([rest] if rest > 1e-9 else [])
