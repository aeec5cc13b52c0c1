"""A deterministic simulated exchange driven by the market tape in event time.

``SimVenue`` is the execution stage's functional core (DESIGN §2): approved orders go in through
:meth:`SimVenue.on_order`, the tape through :meth:`on_trade` / :meth:`on_quote`, and every order
state change comes out as an ``ExecutionReport``. Nothing reads the wall clock except the
``ts_ingest`` stamp, so a replay yields the same reports (ids, fills, prices, fees) byte for byte.

The fill model, precisely:

- **Latency.** An accepted order is *live* from ``order.ts_event + latency_ns``; only market events
  with ``ts_event >= live_at`` can fill it. The ``accepted`` report is written at once, stamped
  with the order's own ``ts_event``.
- **Priority.** On each event, each side's crossing orders are served from that side's budget:
  market orders first (aggressive, in time priority ``(live_at, client_order_id)``), then limit
  orders in price-time priority (best limit first). The order is total, so two runs hand out
  liquidity identically.
- **Trades.** Per side, the budget is ``participation * trade.size`` (rounded down to the lot): a
  print had a buyer and a seller, our buys may stand in for the one and our sells for the other. A
  market order takes ``min(leaves, budget)`` at ``trade.price + side * (half_spread + impact)``, the
  half spread coming from the symbol's last quote (0 before any quote) and the impact from
  :class:`~venues.fill_model.FillModel` (computed on that fill's quantity). A limit buy takes it when
  ``trade.price <= limit`` (a sell when ``>=``), at its limit price: resting orders are passive, so
  no spread and no impact, and a marketable limit gets no price improvement (conservative;
  strategies wanting immediacy send market orders).
- **Quotes.** A quote updates the half spread, then lets live orders trade against the displayed
  side: a market buy takes the ask (a sell the bid) plus impact, a limit buy fills at its limit when
  ``ask <= limit`` (a sell when ``bid >= limit``). The budget is ``participation * displayed size``
  per side; a displayed size of 0 means "size unknown" and does not bound the fill.
- **IOC.** An IOC order's one matching opportunity is the first trade or quote of its symbol at/after
  its live time; whatever is left after it is canceled (reason ``ioc_remainder``), reported after
  that event's fills.
- **DAY.** A DAY order expires at the first session close of the venue's calendar
  (``SimVenueConfig.calendar``, ``market/calendar.py``: the real close, early closes included) strictly after
  its live time; it is canceled (reason ``day_expired``) by the first trade, quote or
  :meth:`on_time` call at/after that instant, for any symbol, before that event matches anything.
- **GTC** orders stay until filled or canceled.
- **Bars** (a bar replay: no trades or quotes, :meth:`SimVenue.on_bar_open`). A bar ``[start,
  end)`` is one matching opportunity at ``start + latency_ns`` (its open stands for the first price an
  order working at the bar's start can reach): an order live by then trades against the bar's open. A
  market order fills at ``open * (1 +/- bar_slippage_bps / 1e4)`` (against it, on the price grid; no
  spread or impact model, the bar has neither quotes nor prints); a limit buy fills at its limit when
  ``open <= limit`` (a sell when ``>=``), passive as with ticks. Per side the orders take at most
  ``participation * volume`` of the bar together (the rest stays working for the next bar's open);
  a bar without volume (a file that has none) does not bound the fill. An order sent on a bar's
  close (a cross-section at its end) therefore fills at the *next* bar's open.
- **Fees.** ``fee = qty * price * fee_bps / 1e4 + qty * fee_per_share``, rounded to ``fee_increment``.

Ticks as columns: :meth:`SimVenue.on_ticks` takes a run of trades and quotes as a
:class:`schemas.columns.TickBatch` and gives exactly the reports row-by-row calls would, at their
rows; only the rows that can reach a working order go through the matching one by one.

Ids: ``venue_order_id = "<venue>:<coid>"``, fill ``fill_id = "<coid>:<n>"`` (n-th fill of the
order) and report ``id = "exec:<coid>:<n>"`` (n-th report about that client order id).

Requests the venue refuses without changing an order's state get a report whose ``state`` is the
order's *current* state and whose ``reason`` says what was refused, so a consumer that tracks
orders by their latest report is never misled:

- a cancel of a filled/canceled/rejected order: ``cancel_rejected:already_<state>``;
- a cancel from another account: ``cancel_rejected:account_mismatch``;
- a new order reusing a known client order id: ``new_rejected:duplicate_client_order_id``.

A cancel for an id the venue never saw gets state ``rejected`` with ``cancel_rejected:unknown_order``:
there is no order whose state it could misreport. Cancels take effect immediately at the cancel's
``ts_event`` (no latency), so the canceled report comes straight out of :meth:`on_order`.
"""

from __future__ import annotations

import heapq
from typing import Callable

import numpy as np

from market.calendar import calendar_by_name
from schemas.base import now_ns
from schemas.columns import TRADE, TickBatch, rows_by_code
from schemas.trusted import trusted_builder
from schemas.market import Bar, Quote, Trade
from schemas.trading import ExecutionReport, Order, OrderAction, OrderState, OrderType, Side, TimeInForce
from venues.fill_model import FillModel, RecentVolume
from venues.order_book import OpenOrder, SimOrder, SimOrderBook
from venues.sim_config import SimVenueConfig

NANOS_PER_DAY = 86_400 * 1_000_000_000
ROW_BY_ROW_BELOW = 24  # a run of ticks this short goes row by row: columns' fixed cost is the larger

_STAT_KEYS = (
    "orders_received", "cancels_received", "accepted", "rejected", "duplicates_rejected",
    "canceled_by_client", "cancels_rejected", "ioc_canceled", "day_expired",
    "fills", "filled", "trades_seen", "quotes_seen", "bars_seen",
)


# Reports are built from the venue's own state, already consistent: no validation on this path.
_build_report = trusted_builder(ExecutionReport)


class SimVenue:
    """The simulated exchange. Plain picklable state, so Bytewax recovery can snapshot it."""

    def __init__(self, config: SimVenueConfig | None = None) -> None:
        self.config = config or SimVenueConfig()
        self._fills = FillModel(self.config)
        self._calendar = calendar_by_name(self.config.calendar)  # pickles by name
        self._book = SimOrderBook()
        self._volume = RecentVolume(self.config.impact_window_ns)
        self._half_spread: dict[str, float] = {}
        # Report counters for client order ids the venue has no order for (unknown cancels), so
        # an order that arrives after its own cancel still gets fresh report ids.
        self._orphan_reports: dict[str, int] = {}
        self._stats: dict[str, float] = {key: 0 for key in _STAT_KEYS}
        self._stats.update(fill_qty=0.0, fill_notional=0.0, fees=0.0)

    # ------------------------------------------------------------------ orders

    def on_order(self, order: Order) -> list[ExecutionReport]:
        if order.action is OrderAction.CANCEL:
            return [self._cancel(order)]
        return [self._new(order)]

    def _new(self, order: Order) -> ExecutionReport:
        self._stats["orders_received"] += 1
        coid = order.client_order_id
        known = self._book.get(coid)
        if known is not None:
            # Refusing must not disturb the order already holding this id.
            self._stats["duplicates_rejected"] += 1
            return self._report(known, order.ts_event, order.ts_tick_ingest, "new_rejected:duplicate_client_order_id")

        config = self.config
        grid = self._fills
        qty_units = grid.qty_grid.nearest(order.quantity)
        reason = ""
        limit_ticks: int | None = None
        limit_price: float | None = None
        if qty_units <= 0:
            reason = "invalid_quantity:below_increment"
        elif order.order_type is OrderType.LIMIT:
            # Round a limit towards passive (buys down, sells up): rounding must never make an
            # order willing to pay more than its strategy asked.
            price_grid = grid.price_grid
            assert order.limit_price is not None  # guaranteed by Order's validator
            buy = order.side is Side.BUY
            limit_ticks = price_grid.floor(order.limit_price) if buy else price_grid.ceil(order.limit_price)
            if limit_ticks <= 0:
                reason = "invalid_price:below_tick"
            limit_price = price_grid.to_float(limit_ticks)

        live_at = order.ts_event + config.latency_ns
        expire_at = self._session_close_after(live_at) if order.time_in_force is TimeInForce.DAY else None
        order_qty = grid.qty_grid.to_float(qty_units) if qty_units > 0 else order.quantity
        sim_order = SimOrder(
            order, qty_units, order_qty, limit_ticks, limit_price, live_at, expire_at,
            report_count=self._orphan_reports.pop(coid, 0),
        )
        if reason:
            self._stats["rejected"] += 1
            report = self._transition(sim_order, OrderState.REJECTED, order.ts_event, order.ts_tick_ingest, reason)
        else:
            self._stats["accepted"] += 1
            report = self._transition(sim_order, OrderState.ACCEPTED, order.ts_event, order.ts_tick_ingest)
        self._book.register(sim_order)
        return report

    def _cancel(self, request: Order) -> ExecutionReport:
        self._stats["cancels_received"] += 1
        target = self._book.get(request.client_order_id)
        if target is None:
            self._stats["cancels_rejected"] += 1
            return self._orphan_report(request, "cancel_rejected:unknown_order")
        if target.order.account != request.account:
            self._stats["cancels_rejected"] += 1
            return self._report(target, request.ts_event, request.ts_tick_ingest, "cancel_rejected:account_mismatch")
        if target.is_terminal:
            self._stats["cancels_rejected"] += 1
            why = f"cancel_rejected:already_{target.state.value}"
            return self._report(target, request.ts_event, request.ts_tick_ingest, why)
        self._stats["canceled_by_client"] += 1
        return self._close(target, request.ts_event, request.ts_tick_ingest, "canceled_by_client")

    # ------------------------------------------------------------------ market data

    def on_trade(self, trade: Trade) -> list[ExecutionReport]:
        return self._on_trade_at(trade.symbol, trade.ts_event, trade.price, trade.size, trade.ts_tick_ingest)

    def on_quote(self, quote: Quote) -> list[ExecutionReport]:
        return self._on_quote_at(quote.symbol, quote.ts_event, quote.bid_price, quote.ask_price,
                                 quote.bid_size, quote.ask_size, quote.ts_tick_ingest)

    def on_ticks(self, run: TickBatch, on_reports: Callable[[int, list[ExecutionReport]], None]) -> None:
        """A run of ticks in event order (rows of a :class:`schemas.columns.TickBatch`): the same
        reports, in the same order, as :meth:`on_trade` / :meth:`on_quote` row by row, each handed to
        ``on_reports(row, reports)`` as it happens. A row that cannot reach a working order (none
        of its symbol, none it activates or crosses, no session close) only adds to the symbol's
        recent volume or sets its half spread, so such rows are taken as columns; only the others
        go through the matching one by one (all of them in a run too short for columns to pay)."""
        ts = run.ts_event
        start, n = 0, len(run)
        if n < ROW_BY_ROW_BELOW:
            self._one_by_one(run, on_reports)
            return
        while start < n:
            # A DAY order expires at the first event of any symbol at/after its close: that row
            # goes one by one, and nothing before it can expire anything.
            close = self._book.next_expiry()
            stop = n if close is None else max(start, int(np.searchsorted(ts, close, "left")))
            if stop > start:
                self._on_rows(run, start, stop, on_reports)
            if stop == n:
                return
            self._on_row(run, stop, on_reports)
            start = stop + 1

    def _on_rows(self, run: TickBatch, start: int, stop: int, on_reports) -> None:
        """Rows [start, stop) with no session close among them."""
        codes = run.symbol[start:stop]
        working = self._book.symbols_with_orders()
        reaching: list[list] = []  # [next row that may reach an order, code, rows, first not taken, reach, candidates]
        quiet = np.ones(stop - start, dtype=bool)
        for code, symbol in enumerate(run.symbols):
            if symbol not in working:
                continue
            rows = np.flatnonzero(codes == code)
            if len(rows) == 0:
                continue
            quiet[rows] = False
            entry = [0, code, rows + start, 0, None, None]
            if self._next_reaching(run, entry):
                heapq.heappush(reaching, entry)
            else:
                quiet[rows] = True
        while reaching:
            entry = heapq.heappop(reaching)
            row, code, rows, taken = entry[0], entry[1], entry[2], entry[3]
            position = int(np.searchsorted(rows, row))
            self._take_quietly(run, rows[taken:position])
            self._on_row(run, row, on_reports)
            entry[3] = position + 1
            if self._next_reaching(run, entry):
                heapq.heappush(reaching, entry)
            else:
                self._take_quietly(run, rows[position + 1:])
        self._take_quietly(run, np.flatnonzero(quiet) + start)

    def _next_reaching(self, run: TickBatch, entry: list) -> bool:
        """Set ``entry[0]`` to the symbol's next row (from ``entry[3]`` on) that may reach one of its
        working orders; False if none does. Conservative: a row found may still change nothing."""
        _, code, rows, taken, reach_then, candidates = entry
        reach = self._book.reach(run.symbols[code])
        if reach is None or taken >= len(rows):
            return False
        if reach != reach_then:  # the orders changed: which rows can reach them
            pending, market, buy, sell = reach
            if market:
                candidates = np.arange(len(rows))
            else:
                trade = run.kind[rows] == TRADE
                hits = np.zeros(len(rows), dtype=bool)
                if pending is not None:
                    hits |= run.ts_event[rows] >= pending
                if buy is not None:
                    hits |= np.where(trade, run.price[rows] <= buy, run.ask[rows] <= buy)
                if sell is not None:
                    hits |= np.where(trade, run.price[rows] >= sell, run.bid[rows] >= sell)
                candidates = np.flatnonzero(hits)
            entry[4], entry[5] = reach, candidates
        index = int(np.searchsorted(candidates, taken))
        if index == len(candidates):
            return False
        entry[0] = int(rows[candidates[index]])
        return True

    def _one_by_one(self, run: TickBatch, on_reports) -> None:
        """A short run row by row; with no session close in it, a row of a symbol with no working
        order only adds its print to the recent volume or sets the half spread."""
        names = run.symbols
        close = self._book.next_expiry()
        working = self._book.symbols_with_orders() if close is None or close > run.ts_event[-1] else None
        stats, volume, half_spread = self._stats, self._volume, self._half_spread
        rows = zip(run.kind.tolist(), run.symbol.tolist(), run.ts_event.tolist(), run.price.tolist(), run.size.tolist(),
                   run.bid.tolist(), run.ask.tolist(), run.bid_size.tolist(), run.ask_size.tolist(),
                   run.ts_tick_ingest.tolist())
        for row, (kind, code, ts, price, size, bid, ask, bid_size, ask_size, tick) in enumerate(rows):
            if working is not None and names[code] not in working:
                if kind == TRADE:
                    stats["trades_seen"] += 1
                    volume.record(names[code], ts, size)
                else:
                    stats["quotes_seen"] += 1
                    half_spread[names[code]] = (ask - bid) / 2.0
                continue
            if kind == TRADE:
                reports = self._on_trade_at(names[code], ts, price, size, tick)
            else:
                reports = self._on_quote_at(names[code], ts, bid, ask, bid_size, ask_size, tick)
            if reports:
                on_reports(row, reports)

    def _on_row(self, run: TickBatch, row: int, on_reports) -> None:
        symbol, ts, tick = run.symbols[run.symbol[row]], int(run.ts_event[row]), int(run.ts_tick_ingest[row])
        if run.kind[row] == TRADE:
            reports = self._on_trade_at(symbol, ts, float(run.price[row]), float(run.size[row]), tick)
        else:
            reports = self._on_quote_at(symbol, ts, float(run.bid[row]), float(run.ask[row]),
                                        float(run.bid_size[row]), float(run.ask_size[row]), tick)
        if reports:
            on_reports(row, reports)

    def _take_quietly(self, run: TickBatch, rows: np.ndarray) -> None:
        """Rows that reach no order: prints into the recent volume, the last quote's half spread."""
        if len(rows) == 0:
            return
        trade = run.kind[rows] == TRADE
        trades, quotes = rows[trade], rows[~trade]
        self._stats["trades_seen"] += len(trades)
        self._stats["quotes_seen"] += len(quotes)
        names = run.symbols
        for code, group in rows_by_code(run.symbol[trades]):
            prints = trades[group]
            self._volume.record_many(names[code], run.ts_event[prints], run.size[prints])
        if len(quotes):
            reversed_quotes = quotes[::-1]
            _, last = np.unique(run.symbol[reversed_quotes], return_index=True)
            for row in reversed_quotes[last].tolist():
                self._half_spread[names[run.symbol[row]]] = (float(run.ask[row]) - float(run.bid[row])) / 2.0

    def _on_trade_at(self, symbol: str, ts: int, price: float, size: float, tick: int) -> list[ExecutionReport]:
        self._stats["trades_seen"] += 1
        self._volume.record(symbol, ts, size)  # before matching: impact sees this print too
        reports = self._expire(ts, tick)
        activated = self._book.activate(symbol, ts)
        if self._book.has_live(symbol):
            # The print had a buyer and a seller: our buys may stand in for the one, our sells for
            # the other, each side up to participation x size.
            budget = self._fills.available_units(size)
            half_spread = self._half_spread.get(symbol, 0.0)
            recent = self._volume.volume(symbol, ts)
            for side in (Side.BUY, Side.SELL):
                self._match(symbol, side, price, half_spread, budget, recent, ts, tick, reports)
        self._cancel_ioc_remainders(activated, ts, tick, reports)
        return reports

    def _on_quote_at(self, symbol: str, ts: int, bid: float, ask: float, bid_size: float, ask_size: float,
                     tick: int) -> list[ExecutionReport]:
        self._stats["quotes_seen"] += 1
        self._half_spread[symbol] = (ask - bid) / 2.0
        reports = self._expire(ts, tick)
        activated = self._book.activate(symbol, ts)
        if self._book.has_live(symbol):
            fills = self._fills
            recent = self._volume.volume(symbol, ts)
            # The touch already contains the half spread, so none is added. A displayed size of 0
            # means "unknown" (None), which bounds nothing.
            ask_budget = fills.available_units(ask_size) if ask_size > 0 else None
            bid_budget = fills.available_units(bid_size) if bid_size > 0 else None
            self._match(symbol, Side.BUY, ask, 0.0, ask_budget, recent, ts, tick, reports)
            self._match(symbol, Side.SELL, bid, 0.0, bid_budget, recent, ts, tick, reports)
        self._cancel_ioc_remainders(activated, ts, tick, reports)
        return reports

    def on_bar_open(self, bar: Bar) -> list[ExecutionReport]:
        """A replayed bar's matching opportunity at its open (the bar fill model above)."""
        self._stats["bars_seen"] += 1
        symbol, tick = bar.symbol, bar.ts_tick_ingest
        ts = bar.bar_start + self.config.latency_ns
        reports = self._expire(ts, tick)
        activated = self._book.activate(symbol, ts)
        if self._book.has_live(symbol):
            fills = self._fills
            for side in (Side.BUY, Side.SELL):
                budget = None if bar.volume is None else fills.available_units(bar.volume)
                for order in self._book.crossing(symbol, side, bar.open):
                    if budget is not None and budget <= 0:
                        break
                    take = order.leaves_units if budget is None else min(order.leaves_units, budget)
                    price = fills.bar_price(side.sign, bar.open) if order.is_market else order.limit_price
                    if budget is not None:
                        budget -= take
                    reports.append(self._fill(order, take, price, ts, tick))
        self._cancel_ioc_remainders(activated, ts, tick, reports)
        return reports

    def _match(self, symbol: str, side: Side, touch: float, half_spread: float, budget: int | None,
               recent_volume: float, ts_event: int, ts_tick_ingest: int, reports: list[ExecutionReport]) -> None:
        """Hand one side's liquidity at ``touch`` to the crossing orders, in their priority order.

        ``touch`` is the price the side trades against (the print, or the ask for buys / the bid
        for sells); ``budget`` is in qty units, None for unbounded.
        """
        fills = self._fills
        sign = side.sign
        for order in self._book.crossing(symbol, side, touch):
            if budget is not None and budget <= 0:
                break
            take = order.leaves_units if budget is None else min(order.leaves_units, budget)
            if order.is_market:
                price = fills.market_price(sign, touch, half_spread, fills.qty_grid.to_float(take), recent_volume)
            else:
                price = order.limit_price
            if budget is not None:
                budget -= take
            reports.append(self._fill(order, take, price, ts_event, ts_tick_ingest))

    def _cancel_ioc_remainders(self, activated: list[SimOrder], ts_event: int, ts_tick_ingest: int,
                               reports: list[ExecutionReport]) -> None:
        # The event that activated an order was its first (and for IOC, only) matching opportunity.
        for order in activated:
            if order.is_ioc and not order.is_terminal:
                self._stats["ioc_canceled"] += 1
                reports.append(self._close(order, ts_event, ts_tick_ingest, "ioc_remainder"))

    def on_time(self, ts_event: int, ts_tick_ingest: int | None = None) -> list[ExecutionReport]:
        """Advance event time without a market event: expires DAY orders past their session close.

        ``ts_tick_ingest`` defaults to each expiring order's own, as no tick caused the expiry.
        """
        return self._expire(ts_event, ts_tick_ingest)

    # ------------------------------------------------------------------ queries

    def open_orders(self) -> list[OpenOrder]:
        """Working (accepted or partially filled) orders, in time priority."""
        qty = self._fills.qty_grid.to_float
        return [
            OpenOrder(
                client_order_id=o.client_order_id, account=o.order.account, strategy=o.order.strategy,
                symbol=o.order.symbol, side=o.order.side, order_type=o.order.order_type,
                time_in_force=o.order.time_in_force, state=o.state, order_qty=o.order_qty,
                cum_qty=qty(o.cum_units), leaves_qty=qty(o.leaves_units), limit_price=o.limit_price,
                live_at=o.live_at, expire_at=o.expire_at,
            )
            for o in self._book.open_orders()
        ]

    def stats(self) -> dict[str, float]:
        """Counters since start (or since the snapshot this venue was restored from)."""
        return {**self._stats, "open_orders": len(self._book)}

    # ------------------------------------------------------------------ internals

    def _session_close_after(self, live_at: int) -> int:
        return self._calendar.session_close_after(live_at)

    def _expire(self, ts_event: int, ts_tick_ingest: int | None) -> list[ExecutionReport]:
        reports: list[ExecutionReport] = []
        for order in self._book.due_for_expiry(ts_event):
            self._stats["day_expired"] += 1
            tick = order.order.ts_tick_ingest if ts_tick_ingest is None else ts_tick_ingest
            reports.append(self._close(order, ts_event, tick, "day_expired"))
        return reports

    def _fill(self, order: SimOrder, units: int, price: float, ts_event: int, ts_tick_ingest: int) -> ExecutionReport:
        qty = self._fills.qty_grid.to_float(units)
        fee = self._fills.fee(qty, price)
        order.cum_units += units
        order.notional += qty * price
        order.fees += fee
        order.fill_count += 1
        stats = self._stats
        stats["fills"] += 1
        stats["fill_qty"] += qty
        stats["fill_notional"] += qty * price
        stats["fees"] += fee
        done = order.cum_units >= order.qty_units
        if done:
            stats["filled"] += 1
        state = OrderState.FILLED if done else OrderState.PARTIALLY_FILLED
        report = self._transition(
            order, state, ts_event, ts_tick_ingest,
            fill_id=f"{order.client_order_id}:{order.fill_count}", last_qty=qty, last_price=price, fee=fee,
        )
        if done:
            self._book.release(order)
        return report

    def _close(self, order: SimOrder, ts_event: int, ts_tick_ingest: int, reason: str) -> ExecutionReport:
        report = self._transition(order, OrderState.CANCELED, ts_event, ts_tick_ingest, reason)
        self._book.release(order)
        return report

    def _transition(self, order: SimOrder, state: OrderState, ts_event: int, ts_tick_ingest: int,
                    reason: str = "", **fill: object) -> ExecutionReport:
        # The one place an order changes state, and it always yields the report for it.
        order.transition_to(state)
        return self._report(order, ts_event, ts_tick_ingest, reason, **fill)

    def _report(self, order: SimOrder, ts_event: int, ts_tick_ingest: int, reason: str = "",
                **fill: object) -> ExecutionReport:
        order.report_count += 1
        to_float = self._fills.qty_grid.to_float
        cum_qty = to_float(order.cum_units)
        request = order.order
        return _build_report(
            id=f"exec:{order.client_order_id}:{order.report_count}",
            ts_event=ts_event,
            ts_ingest=now_ns(),
            account=request.account,
            venue=self.config.venue,
            client_order_id=order.client_order_id,
            venue_order_id=f"{self.config.venue}:{order.client_order_id}",
            strategy=request.strategy,
            symbol=request.symbol,
            side=request.side,
            state=order.state,
            order_qty=order.order_qty,
            cum_qty=cum_qty,
            # A terminal order has nothing left working, even if it was canceled before filling.
            leaves_qty=0.0 if order.is_terminal else to_float(order.leaves_units),
            avg_price=round(order.notional / cum_qty, 9) if order.cum_units else 0.0,
            reason=reason,
            ts_tick_ingest=ts_tick_ingest,
            **fill,
        )

    def _orphan_report(self, request: Order, reason: str) -> ExecutionReport:
        coid = request.client_order_id
        n = self._orphan_reports[coid] = self._orphan_reports.get(coid, 0) + 1
        return ExecutionReport(
            id=f"exec:{coid}:{n}", ts_event=request.ts_event, ts_ingest=now_ns(),
            account=request.account, venue=self.config.venue, client_order_id=coid,
            strategy=request.strategy, symbol=request.symbol, side=request.side,
            state=OrderState.REJECTED, order_qty=request.quantity, cum_qty=0.0, leaves_qty=0.0,
            avg_price=0.0, reason=reason, ts_tick_ingest=request.ts_tick_ingest,
        )
