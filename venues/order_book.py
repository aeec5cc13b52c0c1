"""The simulated venue's working orders, indexed so a market event touches only what can trade.

Per symbol, an order waits in a *pending* heap until its live time (``ts_event + latency``), then
moves to one of four sorted lists:

- market buys / market sells, in time priority ``(live_at, client_order_id)``;
- limit buys (highest price first) / limit sells (lowest price first), in price-time priority.

A print or quote can only reach the limit orders at the head of their list, so matching scans the
crossing prefix and stops at the first limit that does not cross: thousands of resting limits away
from the market cost nothing per tick. Orders leave the lists the moment they become terminal
(bisect on their unique key), so the lists never hold dead entries.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from dataclasses import dataclass

from schemas.trading import Order, OrderState, OrderType, Side, TimeInForce
from venues.order_state import OrderStateMachine


class SimOrder(OrderStateMachine):
    """One order at the venue: the request, its grid-rounded terms, and what has filled so far."""

    __slots__ = (
        "order", "qty_units", "order_qty", "limit_price", "limit_ticks", "live_at", "expire_at",
        "cum_units", "notional", "fees", "fill_count", "report_count", "book_key",
    )

    def __init__(
        self,
        order: Order,
        qty_units: int,
        order_qty: float,
        limit_ticks: int | None,
        limit_price: float | None,
        live_at: int,
        expire_at: int | None,
        report_count: int = 0,
    ) -> None:
        super().__init__(order.client_order_id)
        self.order = order
        self.qty_units = qty_units
        self.order_qty = order_qty
        self.limit_ticks = limit_ticks
        self.limit_price = limit_price
        self.live_at = live_at
        self.expire_at = expire_at
        self.cum_units = 0
        self.notional = 0.0
        self.fees = 0.0
        self.fill_count = 0
        # Reports already written for this client_order_id; the next report id is exec:<coid>:<n+1>.
        self.report_count = report_count
        # The sort key in its symbol's live list; None while pending (or once out of the book).
        self.book_key: tuple | None = None

    @property
    def priority(self) -> tuple[int, str]:
        return (self.live_at, self.client_order_id)

    @property
    def leaves_units(self) -> int:
        return self.qty_units - self.cum_units

    @property
    def is_market(self) -> bool:
        return self.order.order_type is OrderType.MARKET

    @property
    def is_ioc(self) -> bool:
        return self.order.time_in_force is TimeInForce.IOC


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """A read-only view of a working order, for ``SimVenue.open_orders()``."""

    client_order_id: str
    account: str
    strategy: str
    symbol: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    state: OrderState
    order_qty: float
    cum_qty: float
    leaves_qty: float
    limit_price: float | None
    live_at: int
    expire_at: int | None


class SymbolBook:
    """One symbol's working orders: pending heap plus four priority-sorted live lists.

    List entries are ``key + (order,)``; keys end in the unique client order id, so tuple comparison
    never reaches the order object and an entry is found again by bisecting on its key.
    """

    __slots__ = ("pending", "market_buys", "market_sells", "limit_buys", "limit_sells")

    def __init__(self) -> None:
        self.pending: list[tuple[int, str]] = []
        self.market_buys: list[tuple] = []
        self.market_sells: list[tuple] = []
        self.limit_buys: list[tuple] = []
        self.limit_sells: list[tuple] = []

    def list_for(self, order: SimOrder) -> list[tuple]:
        buy = order.order.side is Side.BUY
        if order.is_market:
            return self.market_buys if buy else self.market_sells
        return self.limit_buys if buy else self.limit_sells

    def add_live(self, order: SimOrder) -> None:
        if order.is_market:
            key: tuple = (order.live_at, order.client_order_id)
        else:
            # Best price first: negate buy ticks so ascending order puts the highest bid first.
            ticks = -order.limit_ticks if order.order.side is Side.BUY else order.limit_ticks
            key = (ticks, order.live_at, order.client_order_id)
        order.book_key = key
        entries = self.list_for(order)
        entry = key + (order,)
        if not entries or entries[-1] < entry:
            entries.append(entry)  # the usual case: orders go live in time order
        else:
            insort(entries, entry)

    def remove_live(self, order: SimOrder) -> None:
        key = order.book_key
        if key is None:
            return
        entries = self.list_for(order)
        index = bisect_left(entries, key)
        if index < len(entries) and entries[index][-1] is order:
            del entries[index]
        order.book_key = None


class SimOrderBook:
    """Every order the venue has seen, and the working ones indexed by symbol, side and price."""

    __slots__ = ("_orders", "_working", "_symbols", "_expiries")

    def __init__(self) -> None:
        # All orders ever seen, terminal ones included: duplicates and late cancels are answered
        # from here. (Unbounded: a long-lived venue would need a retention horizon.)
        self._orders: dict[str, SimOrder] = {}
        self._working: dict[str, SimOrder] = {}
        self._symbols: dict[str, SymbolBook] = {}
        self._expiries: list[tuple[int, int, str]] = []

    def __contains__(self, client_order_id: str) -> bool:
        return client_order_id in self._orders

    def __len__(self) -> int:
        return len(self._working)

    def get(self, client_order_id: str) -> SimOrder | None:
        return self._orders.get(client_order_id)

    def register(self, order: SimOrder) -> None:
        """Remember an order; if it is working, queue it until its live time."""
        self._orders[order.client_order_id] = order
        if order.is_terminal:
            return
        self._working[order.client_order_id] = order
        book = self._symbols.get(order.order.symbol)
        if book is None:
            book = self._symbols[order.order.symbol] = SymbolBook()
        heapq.heappush(book.pending, order.priority)
        if order.expire_at is not None:
            heapq.heappush(self._expiries, (order.expire_at, order.live_at, order.client_order_id))

    def release(self, order: SimOrder) -> None:
        """Take a terminal order out of the book (pending and expiry heap entries lapse lazily)."""
        self._working.pop(order.client_order_id, None)
        self._symbols[order.order.symbol].remove_live(order)

    def activate(self, symbol: str, ts_event: int) -> list[SimOrder]:
        """Move the symbol's orders whose live time has come into the live lists; return them.

        The event that activates an order is its first matching opportunity, which is what IOC
        handling needs to know.
        """
        book = self._symbols.get(symbol)
        if book is None or not book.pending or book.pending[0][0] > ts_event:
            return []
        activated: list[SimOrder] = []
        pending = book.pending
        while pending and pending[0][0] <= ts_event:
            order = self._working.get(heapq.heappop(pending)[1])
            if order is None:  # canceled or expired before going live
                continue
            book.add_live(order)
            activated.append(order)
        return activated

    def crossing(self, symbol: str, side: Side, touch: float) -> list[SimOrder]:
        """Live orders on ``side`` that can trade at ``touch``, in the order they are served.

        Market orders first (they are aggressive, in time priority), then limit orders that the
        touch crosses (a buy when ``touch <= limit``, a sell when ``touch >= limit``) in price-time
        priority. A copy, so filling (which removes orders) cannot disturb the iteration.
        """
        book = self._symbols.get(symbol)
        if book is None:
            return []
        if side is Side.BUY:
            out = [entry[-1] for entry in book.market_buys]
            for entry in book.limit_buys:
                if touch > entry[-1].limit_price:
                    break
                out.append(entry[-1])
        else:
            out = [entry[-1] for entry in book.market_sells]
            for entry in book.limit_sells:
                if touch < entry[-1].limit_price:
                    break
                out.append(entry[-1])
        return out

    def has_live(self, symbol: str) -> bool:
        book = self._symbols.get(symbol)
        return book is not None and bool(book.market_buys or book.market_sells or book.limit_buys or book.limit_sells)

    def symbols_with_orders(self) -> set[str]:
        """Symbols with a working order (pending or live)."""
        return {order.order.symbol for order in self._working.values()}

    def reach(self, symbol: str) -> tuple[int | None, bool, float | None, float | None] | None:
        """What a market event of ``symbol`` could do to its working orders: the earliest pending
        live time (an event at/after it activates), whether a live market order works (any event
        may fill it), the best live buy and sell limits (a print or the opposite touch at/through
        one fills it). None: no working order, the event can change nothing."""
        book = self._symbols.get(symbol)
        if book is None:
            return None
        pending = book.pending[0][0] if book.pending else None
        market = bool(book.market_buys or book.market_sells)
        buy = book.limit_buys[0][-1].limit_price if book.limit_buys else None
        sell = book.limit_sells[0][-1].limit_price if book.limit_sells else None
        if pending is None and not market and buy is None and sell is None:
            return None
        return pending, market, buy, sell

    def next_expiry(self) -> int | None:
        """The earliest session close of a DAY order (perhaps one no longer working: conservative)."""
        return self._expiries[0][0] if self._expiries else None

    def due_for_expiry(self, ts_event: int) -> list[SimOrder]:
        """Working DAY orders whose session close is at/before ``ts_event``, oldest first."""
        due: list[SimOrder] = []
        expiries = self._expiries
        while expiries and expiries[0][0] <= ts_event:
            order = self._working.get(heapq.heappop(expiries)[2])
            if order is not None:
                due.append(order)
        return due

    def open_orders(self) -> list[SimOrder]:
        return sorted(self._working.values(), key=lambda o: o.priority)
