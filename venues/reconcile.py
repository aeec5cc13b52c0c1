"""Reconciliation: Alpaca's open orders and positions against tapeflow's ledger (at start and periodically).

:func:`reconcile` is pure (dicts in, a report out); ``AlpacaVenue.reconcile`` fetches Alpaca's side
(``GET /v2/orders?status=open``, ``GET /v2/positions``) and calls it. The report lists

- ``orders_missing_here``: open at Alpaca, unknown to tapeflow (placed by another session or by hand);
- ``orders_missing_there``: open in tapeflow, not open at Alpaca (filled, canceled or expired while
  tapeflow was down);
- ``position_diffs``: symbols whose net quantity differs (Alpaca nets per symbol, the ledger keeps
  (strategy, symbol) books: they are summed per symbol before comparing).

With ``adopt=True`` it also returns ``adjustments``, ExecutionReports that make tapeflow agree
with Alpaca when booked in order:

- per position difference, one **adoption record** of the difference (:func:`adoption_record`: an
  ExecutionReport with reason ``reconcile:adopt_position`` and no ``fill_id``, so it is not a fill
  and no fill-based figure counts it; ``strategy = adopted_strategy``, price = Alpaca's
  ``avg_entry_price``). The ledger books it with ``Ledger.on_adoption``; the account position then
  equals Alpaca's, its average cost equals Alpaca's only if the ledger was flat. Its id names the
  account, symbol and Alpaca's quantity and price, so adopting the same broker state again (a
  replay, a restart under the same run id) lands the same record and books nothing twice;
- per order missing here, an ``accepted`` report (or ``partially_filled`` without a fill: its
  fills are already in the position) so the order is tracked;
- per order missing there, a ``canceled`` report with reason ``reconcile:not_open_at_venue``
  (whatever it filled is in the position difference, so nothing is booked twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from schemas import ExecutionReport, OrderState, Side, now_ns

QTY_TOLERANCE = 1e-9
ADOPT_POSITION = "reconcile:adopt_position"


@dataclass(frozen=True)
class PositionDiff:
    symbol: str
    ledger_qty: float
    venue_qty: float
    venue_avg_price: float

    @property
    def difference(self) -> float:
        return self.venue_qty - self.ledger_qty


@dataclass(frozen=True)
class ReconcileReport:
    orders_missing_here: list[dict[str, Any]] = field(default_factory=list)
    orders_missing_there: list[str] = field(default_factory=list)
    position_diffs: list[PositionDiff] = field(default_factory=list)
    adjustments: list[ExecutionReport] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.orders_missing_here or self.orders_missing_there or self.position_diffs)

    def summary(self) -> str:
        if self.clean:
            return "reconciled: tapeflow and Alpaca agree on open orders and positions"
        lines = ["reconciliation found differences:"]
        lines += [f"  open at Alpaca only: {o.get('client_order_id')} {o.get('side')} {o.get('qty')} {o.get('symbol')}"
                  for o in self.orders_missing_here]
        lines += [f"  open in tapeflow only: {coid}" for coid in self.orders_missing_there]
        lines += [f"  position {d.symbol}: ledger {d.ledger_qty:g}, Alpaca {d.venue_qty:g} (diff {d.difference:+g})"
                  for d in self.position_diffs]
        if self.adjustments:
            lines.append(f"  {len(self.adjustments)} adjustment(s) to adopt Alpaca's state")
        return "\n".join(lines)


def net_by_symbol(ledger_positions: Mapping[Any, float]) -> dict[str, float]:
    """``{symbol: qty}`` or ``Ledger.positions()`` (``{(strategy, symbol): qty}``) netted per symbol."""
    net: dict[str, float] = {}
    for key, qty in ledger_positions.items():
        symbol = key[1] if isinstance(key, tuple) else key
        net[symbol] = net.get(symbol, 0.0) + float(qty)
    return net


def reconcile(ledger_positions: Mapping[Any, float], open_orders: Iterable[Any],
              venue_positions: Iterable[Mapping[str, Any]], venue_orders: Iterable[Mapping[str, Any]], *,
              adopt: bool = False, account: str = "paper", venue: str = "alpaca",
              adopted_strategy: str = "adopted", ts_event: int | None = None) -> ReconcileReport:
    """Compare; ``open_orders`` are tapeflow's working orders (anything with ``client_order_id``,
    e.g. ``OpenOrder`` or the latest ``ExecutionReport`` per order); the venue sides are Alpaca's
    JSON (``GET /v2/positions`` rows, ``GET /v2/orders?status=open`` rows)."""
    ts = now_ns() if ts_event is None else ts_event
    ours = {o.client_order_id: o for o in open_orders}
    theirs = {str(o["client_order_id"]): dict(o) for o in venue_orders}
    missing_here = [theirs[c] for c in sorted(theirs) if c not in ours]
    missing_there = sorted(c for c in ours if c not in theirs)

    ledger = net_by_symbol(ledger_positions)
    venue_qty = {str(p["symbol"]): float(p["qty"]) for p in venue_positions}
    venue_avg = {str(p["symbol"]): float(p.get("avg_entry_price") or 0.0) for p in venue_positions}
    diffs = [
        PositionDiff(symbol, ledger.get(symbol, 0.0), venue_qty.get(symbol, 0.0), venue_avg.get(symbol, 0.0))
        for symbol in sorted(set(ledger) | set(venue_qty))
        if abs(ledger.get(symbol, 0.0) - venue_qty.get(symbol, 0.0)) > QTY_TOLERANCE
    ]
    adjustments = _adjustments(diffs, missing_here, [ours[c] for c in missing_there], account, venue,
                               adopted_strategy, ts) if adopt else []
    return ReconcileReport(missing_here, missing_there, diffs, adjustments)


def _adjustments(diffs: list[PositionDiff], missing_here: list[dict[str, Any]], missing_there: list[Any],
                 account: str, venue: str, strategy: str, ts: int) -> list[ExecutionReport]:
    from venues.alpaca_updates import strategy_from_client_order_id

    out: list[ExecutionReport] = []
    for d in diffs:
        if d.venue_avg_price <= 0:
            continue  # Alpaca flat and the ledger not: nothing to price the close at; the report shows it
        out.append(adoption_record(account, venue, strategy, d.symbol, d.difference, d.venue_qty, d.venue_avg_price, ts))
    for o in missing_here:
        qty = float(o.get("qty") or 0.0)
        if qty <= 0:
            continue
        filled = float(o.get("filled_qty") or 0.0)
        coid = str(o["client_order_id"])
        out.append(ExecutionReport(
            id=f"exec:{coid}:adopted", ts_event=ts, ts_ingest=now_ns(), account=account, venue=venue,
            client_order_id=coid, venue_order_id=str(o.get("id") or ""),
            strategy=strategy_from_client_order_id(coid, strategy), symbol=str(o["symbol"]), side=Side(o["side"]),
            state=OrderState.PARTIALLY_FILLED if filled > 0 else OrderState.ACCEPTED, order_qty=qty, cum_qty=filled,
            leaves_qty=max(0.0, qty - filled), avg_price=float(o.get("filled_avg_price") or 0.0),
            reason="reconcile:adopt_order", ts_tick_ingest=ts,
        ))
    for o in missing_there:
        coid = o.client_order_id
        order_qty = float(getattr(o, "order_qty", 0.0) or getattr(o, "quantity", 0.0) or 1e-9)
        out.append(ExecutionReport(
            id=f"exec:{coid}:reconciled", ts_event=ts, ts_ingest=now_ns(), account=getattr(o, "account", account),
            venue=venue, client_order_id=coid, strategy=getattr(o, "strategy", strategy), symbol=o.symbol,
            side=o.side, state=OrderState.CANCELED, order_qty=order_qty, cum_qty=float(getattr(o, "cum_qty", 0.0)),
            leaves_qty=0.0, avg_price=float(getattr(o, "avg_price", 0.0) or 0.0),
            reason="reconcile:not_open_at_venue", ts_tick_ingest=ts,
        ))
    return out


def adoption_record(account: str, venue: str, strategy: str, symbol: str, qty: float, venue_qty: float,
                    price: float, ts: int) -> ExecutionReport:
    """A position taken over from the broker: ``qty`` (signed) of ``symbol`` at ``price`` (Alpaca's
    average entry). Not a fill (no ``fill_id``); the desk books it with ``Ledger.on_adoption``."""
    size = abs(qty)
    coid = f"adopt-{symbol}-{venue_qty:g}"
    return ExecutionReport(
        id=f"adopt:{account}:{symbol}:{venue_qty:.9g}@{price:.9g}", ts_event=ts, ts_ingest=now_ns(), account=account,
        venue=venue, client_order_id=coid, strategy=strategy, symbol=symbol, side=Side.BUY if qty > 0 else Side.SELL,
        state=OrderState.FILLED, order_qty=size, cum_qty=size, leaves_qty=0.0, avg_price=price, last_qty=size,
        last_price=price, reason=ADOPT_POSITION, ts_tick_ingest=ts,
    )


def is_adoption(report: ExecutionReport) -> bool:
    """An adoption record (:func:`adoption_record`), which moves a position without being a fill."""
    return report.reason == ADOPT_POSITION and not report.fill_id and report.last_qty > 0


def difference_keys(report: ReconcileReport) -> set[tuple[str, str]]:
    """What each difference is about: ``("here"|"there", client_order_id)`` or ``("position", symbol)``."""
    return ({("here", str(o.get("client_order_id"))) for o in report.orders_missing_here}
            | {("there", coid) for coid in report.orders_missing_there}
            | {("position", d.symbol) for d in report.position_diffs})


def confirmed(first: ReconcileReport, second: ReconcileReport) -> ReconcileReport:
    """The differences of ``second`` that ``first`` saw too. Alpaca's REST state runs ahead of its
    trade_updates stream (and the desk books a report a moment after the venue sends it), so a
    difference seen once may be an event in flight; one that two looks apart both see is real."""
    seen = difference_keys(first)
    return ReconcileReport(
        [o for o in second.orders_missing_here if ("here", str(o.get("client_order_id"))) in seen],
        [c for c in second.orders_missing_there if ("there", c) in seen],
        [d for d in second.position_diffs if ("position", d.symbol) in seen],
    )
