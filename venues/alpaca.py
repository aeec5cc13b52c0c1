"""Alpaca (paper by default) behind the simulated venue's contract.

``AlpacaVenue(settings, paper=True)`` submits approved orders through alpaca-py's
``TradingClient`` and turns the account's ``trade_updates`` stream into ``ExecutionReport``\\s:

- :meth:`on_order` submits (or cancels) and returns what is known at once: ``accepted`` (the order
  is at Alpaca), ``rejected`` (refused here or by Alpaca, with a reason), or ``new`` with reason
  ``submit_unconfirmed:...`` when Alpaca could not be asked whether the order exists (the stream
  or :meth:`catch_up` settles it later). Cancels return ``[]``: Alpaca cancels asynchronously and
  the ``canceled`` report arrives through :meth:`reports`.
- Fills, cancels and rejections after acceptance arrive asynchronously: :meth:`drain_reports`
  (non-blocking, for a polling source) or :meth:`reports` (blocking iterator). Reports of an order
  whose submit call is still in flight are held back and released after its ``accepted``, so a
  consumer never sees a fill before the acceptance.
- ``on_trade`` / ``on_quote`` / ``on_time`` return ``[]`` (the market, not the tape, fills a real
  venue) and ``open_orders()`` lists working orders like ``SimVenue.open_orders()``.

Never a second order. tapeflow's ``client_order_id`` is deterministic and Alpaca refuses a reused
one. On a timeout, a reset connection or a 5xx the order may or may not exist, so the venue looks
it up by ``client_order_id`` (``GET /v2/orders:by_client_order_id``) *before* any retry: found ->
accepted; 404 -> not placed, retried with backoff; lookup itself failing -> ``submit_unconfirmed``
(never a blind resend). 429 means "not placed": back off and resend. alpaca-py's own retry (on
429/504, sleeping 3 s) is switched off so this policy is the only one, and every request goes
through a client-side token bucket (``requests_per_minute``, Alpaca's limit is 200).

Order rules enforced before anything is sent (reasons as in ``venues.sim``): equities may be
fractional only as DAY market/limit orders and a fractional sell may not exceed the long position
(``fractional_requires_day``, ``fractional_short_not_allowed``); crypto (``BTC/USD``) takes GTC/IOC
only and is never shorted. Live trading needs ``paper=False`` AND ``live=True``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Iterable, Iterator

import requests

from schemas import ExecutionReport, Order, OrderAction, OrderState, OrderType, Side, TimeInForce, now_ns
from config.alpaca_settings import AlpacaSettings, require_keys
from venues.alpaca_updates import STATUS_STATES, TrackedOrder, TradeUpdatesStream, _ts, apply_update, strategy_from_client_order_id
from venues.order_book import OpenOrder
from venues.rate_limit import Backoff, TokenBucket
from venues.reconcile import ReconcileReport, reconcile
from venues.reconcile_loop import BookedView

log = logging.getLogger(__name__)

QTY_DECIMALS = 9  # Alpaca accepts quantities to 1e-9


class LiveTradingNotEnabled(RuntimeError):
    """paper=False without live=True: refusing to trade real money by accident."""


class _TimeoutSession(requests.Session):
    """alpaca-py sends requests without a timeout; a hung request must end so it can be resolved."""

    def __init__(self, timeout_s: float):
        super().__init__()
        self.timeout_s = timeout_s

    def request(self, method, url, **kwargs):  # type: ignore[override]
        kwargs.setdefault("timeout", self.timeout_s)
        return super().request(method, url, **kwargs)


class _Unresolved(Exception):
    pass


class DetachedAlpacaVenue:
    """What a snapshot holds in place of an :class:`AlpacaVenue`: any use is an error that says why."""

    def __init__(self, account: str, paper: bool):
        self.account = account
        self.paper = paper

    def __reduce__(self):
        return (DetachedAlpacaVenue, (self.account, self.paper))

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise RuntimeError(f"the Alpaca venue of account {self.__dict__.get('account')!r} is not restored from a recovery "
                           "snapshot: Alpaca holds the orders; start a new run, which reconciles with it")


class AlpacaVenue:
    def __init__(self, settings: AlpacaSettings | None = None, paper: bool = True, *, live: bool = False,
                 account: str = "paper", venue: str = "alpaca", max_attempts: int = 5,
                 retry_initial_s: float = 0.25, retry_max_s: float = 8.0, client: Any = None,
                 sleep: Callable[[float], None] = time.sleep):
        if not paper and not live:
            raise LiveTradingNotEnabled(
                "AlpacaVenue(paper=False) trades real money; pass live=True as well if that is intended")
        self.settings = require_keys(settings)
        self.paper = paper
        self.account = account
        self.venue = venue
        self.max_attempts = max_attempts
        self._retry = (retry_initial_s, retry_max_s)
        self._sleep = sleep
        self._client = client or self._make_client()
        self._bucket = TokenBucket(self.settings.requests_per_minute)
        self._lock = threading.RLock()
        self._orders: dict[str, TrackedOrder] = {}
        self._by_alpaca_id: dict[str, str] = {}
        self._positions: dict[str, float] = {}  # Alpaca's, for the order rules
        self.booked = BookedView()  # the desk's, for reconciliation (venues/reconcile_loop.py)
        self._reports: queue.Queue[ExecutionReport] = queue.Queue()
        self._stop = threading.Event()
        self._updates = TradeUpdatesStream(self.settings, paper, self._on_update, self._on_listening,
                                           backoff=Backoff(retry_initial_s, retry_max_s))
        self._stats = {"submits": 0, "accepted": 0, "rejected_here": 0, "rejected_by_venue": 0, "unconfirmed": 0,
                       "rate_limited": 0, "ambiguous": 0, "found_after_ambiguous": 0, "lookups": 0,
                       "cancels": 0, "events": 0, "duplicate_events": 0, "unknown_order_events": 0, "fills": 0}

    def __reduce__(self):
        # Bytewax snapshots the desk (which holds its venue) every epoch, recovery or not. The live
        # orders are Alpaca's, not the snapshot's: a run at Alpaca never resumes from one (it is
        # refused and reconciles at start instead), so what is pickled is a stand-in that says so.
        return (DetachedAlpacaVenue, (self.account, self.paper))

    def __repr__(self) -> str:
        return f"AlpacaVenue(paper={self.paper}, account={self.account!r}, url={self.settings.rest_url(self.paper)!r})"

    def _make_client(self):
        from alpaca.trading.client import TradingClient

        key, secret = self.settings.key_pair()
        client = TradingClient(key, secret, paper=self.paper, raw_data=True, url_override=self.settings.rest_url(self.paper))
        client._retry = 0  # alpaca-py would resend on 429/504 after 3 s; this venue decides instead
        client._session = _TimeoutSession(self.settings.request_timeout_s)
        return client

    # ------------------------------------------------------------------ life cycle

    def start(self, wait_s: float = 10.0) -> "AlpacaVenue":
        """Load positions, open the trade_updates stream and wait (bounded) until it listens."""
        self.refresh_positions()
        self._updates.start()
        if not self._updates.listening.wait(wait_s):
            raise TimeoutError(
                f"Alpaca trade_updates at {self._updates.url} not listening after {wait_s}s"
                + (f": {self._updates.error}" if self._updates.error else "; check the network and the keys"))
        return self

    def stop(self) -> None:
        self._stop.set()
        self._updates.stop()

    def __enter__(self) -> "AlpacaVenue":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ the SimVenue contract

    def on_order(self, order: Order) -> list[ExecutionReport]:
        if order.action is OrderAction.CANCEL:
            return self._cancel(order)
        return self._new(order)

    def on_trade(self, trade: object) -> list[ExecutionReport]:
        return []

    def on_quote(self, quote: object) -> list[ExecutionReport]:
        return []

    def on_ticks(self, run: object, on_reports: object) -> None:
        """The tape as columns: orders fill at Alpaca, not against it."""

    def on_time(self, ts_event: int, ts_tick_ingest: int | None = None) -> list[ExecutionReport]:
        return []

    def open_orders(self) -> list[OpenOrder]:
        with self._lock:
            return [
                OpenOrder(
                    client_order_id=t.client_order_id, account=t.account, strategy=t.strategy, symbol=t.symbol,
                    side=t.side, order_type=OrderType(t.order_type), time_in_force=TimeInForce(t.time_in_force),
                    state=t.state, order_qty=t.order_qty, cum_qty=t.cum_qty,
                    leaves_qty=max(0.0, t.order_qty - t.cum_qty), limit_price=t.limit_price,
                    live_at=t.ts_event, expire_at=None,
                )
                for t in self._orders.values() if t.is_open
            ]

    def stats(self) -> dict[str, float]:
        with self._lock:
            open_count = sum(1 for t in self._orders.values() if t.is_open)
        return {**self._stats, **{f"stream_{k}": v for k, v in self._updates.counts.items()},
                "open_orders": open_count, "rate_limit_wait_s": round(self._bucket.waited_s, 3)}

    def position(self, symbol: str) -> float:
        with self._lock:
            return self._positions.get(symbol, 0.0)

    # ------------------------------------------------------------------ asynchronous reports

    def drain_reports(self, max_items: int | None = None) -> list[ExecutionReport]:
        """Reports that arrived since the last call, oldest first; never blocks."""
        out: list[ExecutionReport] = []
        while max_items is None or len(out) < max_items:
            try:
                out.append(self._reports.get_nowait())
            except queue.Empty:
                break
        return out

    def wait_reports(self, n: int, timeout: float) -> list[ExecutionReport]:
        """Exactly the next ``n`` reports, waiting at most ``timeout`` seconds in all (TimeoutError
        naming how many came)."""
        deadline = time.monotonic() + timeout
        out: list[ExecutionReport] = []
        while len(out) < n:
            try:
                out.append(self._reports.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise TimeoutError(f"{len(out)} of {n} execution reports from Alpaca within {timeout}s: "
                                   f"{[(r.client_order_id, r.state.value) for r in out]}") from None
        return out

    def reports(self, poll_s: float = 0.1) -> Iterator[ExecutionReport]:
        """Reports as they arrive, until :meth:`stop`."""
        while not (self._stop.is_set() and self._reports.empty()):
            try:
                yield self._reports.get(timeout=poll_s)
            except queue.Empty:
                continue

    # ------------------------------------------------------------------ new orders

    def _new(self, order: Order) -> list[ExecutionReport]:
        coid = order.client_order_id
        with self._lock:
            known = self._orders.get(coid)
            if known is not None:
                return [known.report(known.state, order.ts_event, f"dup:{order.id}:{now_ns()}",
                                     "new_rejected:duplicate_client_order_id")]
            tracked = TrackedOrder(
                client_order_id=coid, account=order.account, strategy=order.strategy, symbol=order.symbol,
                side=order.side, order_qty=round(order.quantity, QTY_DECIMALS), venue=self.venue,
                ts_tick_ingest=order.ts_tick_ingest, order_type=order.order_type.value,
                time_in_force=order.time_in_force.value, limit_price=order.limit_price, ts_event=order.ts_event,
                in_flight=True,
            )
            self._orders[coid] = tracked
            reason = self._refusal(order)
        if reason:
            with self._lock:
                self._stats["rejected_here"] += 1
                tracked.in_flight = False
                return [tracked.report(OrderState.REJECTED, order.ts_event, "rejected", reason)]

        self._stats["submits"] += 1
        outcome, detail = self._submit(order)
        with self._lock:
            tracked.in_flight = False
            # Stream events that raced the answer (Alpaca sends "new" at once) come first, in order.
            reports: list[ExecutionReport] = list(tracked.held)
            tracked.held.clear()
            if outcome == "accepted":
                self._stats["accepted"] += 1
                self._adopt_snapshot(tracked, detail)
                for report in apply_update(tracked, {"event": "accepted", "order": detail}):
                    self._count_fill(report)
                    reports.append(report)
            elif outcome == "rejected":
                self._stats["rejected_by_venue"] += 1
                reports.append(tracked.report(OrderState.REJECTED, order.ts_event, "rejected", detail))
            elif tracked.state is OrderState.NEW:  # unless the stream already told us it exists
                self._stats["unconfirmed"] += 1
                reports.append(tracked.report(OrderState.NEW, order.ts_event, "unconfirmed", f"submit_unconfirmed:{detail}"))
        return reports

    def _refusal(self, order: Order) -> str:
        qty = order.quantity
        held = self._positions.get(order.symbol, 0.0)
        if "/" in order.symbol:  # crypto: no shorting, GTC/IOC only
            if order.time_in_force not in (TimeInForce.GTC, TimeInForce.IOC):
                return "crypto_requires_gtc_or_ioc"
            if order.side is Side.SELL and qty > held + 1e-9:
                return "crypto_short_not_allowed"
            return ""
        fractional = abs(qty - round(qty)) > 1e-9
        if fractional and order.time_in_force is not TimeInForce.DAY:
            return "fractional_requires_day"
        if fractional and order.side is Side.SELL and qty > held + 1e-9:
            return "fractional_short_not_allowed"
        return ""

    def _request(self, order: Order):
        from alpaca.trading.enums import OrderSide
        from alpaca.trading.enums import TimeInForce as AlpacaTif
        from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

        fields = dict(symbol=order.symbol, qty=round(order.quantity, QTY_DECIMALS),
                      side=OrderSide.BUY if order.side is Side.BUY else OrderSide.SELL,
                      time_in_force=AlpacaTif(order.time_in_force.value), client_order_id=order.client_order_id)
        if order.order_type is OrderType.LIMIT:
            return LimitOrderRequest(limit_price=order.limit_price, **fields)
        return MarketOrderRequest(**fields)

    def _submit(self, order: Order) -> tuple[str, Any]:
        """("accepted", order json) | ("rejected", reason) | ("unconfirmed", detail)."""
        from alpaca.common.exceptions import APIError

        request = self._request(order)
        coid = order.client_order_id
        backoff = Backoff(*self._retry)
        for attempt in range(1, self.max_attempts + 1):
            self._bucket.acquire()
            try:
                return "accepted", self._client.submit_order(request)
            except APIError as exc:
                status = exc.status_code
                if status == 429:
                    self._stats["rate_limited"] += 1
                    log.warning("alpaca: 429 on submit of %s (attempt %d); backing off", coid, attempt)
                    self._sleep(backoff.next_delay())
                    continue
                if status == 422 and "client_order_id must be unique" in str(exc):
                    why = "duplicate client_order_id at Alpaca"  # an earlier attempt got through
                elif status is None or status >= 500:
                    why = f"HTTP {status}"
                else:
                    return "rejected", f"venue_rejected:{status}:{_message(exc)}"
            except (requests.Timeout, requests.ConnectionError) as exc:
                why = type(exc).__name__
            # Ambiguous: the order may exist. Ask before anything else is sent.
            self._stats["ambiguous"] += 1
            log.warning("alpaca: submit of %s ended ambiguously (%s); looking it up", coid, why)
            try:
                found = self._lookup(coid)
            except _Unresolved as exc:
                return "unconfirmed", f"{why}; lookup failed: {exc}"
            if found is not None:
                self._stats["found_after_ambiguous"] += 1
                return "accepted", found
            self._sleep(backoff.next_delay())
        return "rejected", f"submit_failed:no answer after {self.max_attempts} attempts"

    def _lookup(self, coid: str) -> dict[str, Any] | None:
        """The order by client_order_id, None if Alpaca has none; _Unresolved if it cannot tell."""
        from alpaca.common.exceptions import APIError

        backoff = Backoff(*self._retry)
        last = ""
        for _ in range(self.max_attempts):
            self._bucket.acquire()
            self._stats["lookups"] += 1
            try:
                return self._client.get_order_by_client_id(coid)
            except APIError as exc:
                if exc.status_code == 404:
                    return None
                last = f"HTTP {exc.status_code}"
            except (requests.Timeout, requests.ConnectionError) as exc:
                last = type(exc).__name__
            self._sleep(backoff.next_delay())
        raise _Unresolved(last)

    # ------------------------------------------------------------------ cancels

    def _cancel(self, request: Order) -> list[ExecutionReport]:
        from alpaca.common.exceptions import APIError

        self._stats["cancels"] += 1
        with self._lock:
            tracked = self._orders.get(request.client_order_id)
            if tracked is None or not tracked.alpaca_id:
                why = "unknown_order" if tracked is None else "not_yet_acknowledged"
                ghost = tracked or TrackedOrder(
                    request.client_order_id, request.account, request.strategy, request.symbol, request.side,
                    request.quantity, self.venue, request.ts_tick_ingest, state=OrderState.REJECTED)
                return [ghost.report(ghost.state, request.ts_event, f"cancel:{request.id}:{now_ns()}", f"cancel_rejected:{why}")]
            if tracked.state.is_terminal:
                return [tracked.report(tracked.state, request.ts_event, f"cancel:{request.id}:{now_ns()}",
                                       f"cancel_rejected:already_{tracked.state.value}")]
            alpaca_id = tracked.alpaca_id
        self._bucket.acquire()
        try:
            self._client.cancel_order_by_id(alpaca_id)
        except APIError as exc:
            with self._lock:
                return [tracked.report(tracked.state, request.ts_event, f"cancel:{request.id}:{now_ns()}",
                                       f"cancel_rejected:venue:{exc.status_code}:{_message(exc)}")]
        return []  # the canceled report comes from trade_updates

    # ------------------------------------------------------------------ stream events

    def _on_update(self, data: dict[str, Any]) -> None:
        order = data.get("order") or {}
        coid = str(order.get("client_order_id") or "")
        with self._lock:
            self._stats["events"] += 1
            tracked = self._orders.get(coid) or self._orders.get(self._by_alpaca_id.get(str(order.get("id")), ""))
            if tracked is None:
                tracked = self._track_foreign(order)
                if tracked is None:
                    return
            reports = apply_update(tracked, data)
            if not reports:
                self._stats["duplicate_events"] += 1
            for report in reports:
                self._count_fill(report)
                if tracked.in_flight:
                    tracked.held.append(report)
                else:
                    self._publish(report)

    def _on_listening(self, reconnected: bool) -> None:
        if reconnected:
            self.catch_up()

    def catch_up(self) -> int:
        """Ask Alpaca for every open tracked order and book what the stream may have missed
        (after a reconnect). Returns the number of reports it produced."""
        from alpaca.common.exceptions import APIError

        with self._lock:
            pending = [(t.alpaca_id, t.client_order_id) for t in self._orders.values() if t.is_open and not t.in_flight]
        produced = 0
        for alpaca_id, coid in pending:
            self._bucket.acquire()
            try:
                snapshot = self._client.get_order_by_id(alpaca_id) if alpaca_id else self._client.get_order_by_client_id(coid)
            except (APIError, requests.RequestException) as exc:
                log.warning("alpaca: catch-up lookup of %s failed: %s", coid, type(exc).__name__)
                continue
            with self._lock:
                tracked = self._orders.get(str(snapshot.get("client_order_id")))
                if tracked is None:
                    continue
                for report in apply_update(tracked, {"event": snapshot.get("status"), "order": snapshot}):
                    self._count_fill(report)
                    self._publish(report)
                    produced += 1
        return produced

    def _track_foreign(self, order: dict[str, Any]) -> TrackedOrder | None:
        """An order tapeflow did not send in this process (another session, the web UI): tracked so
        its fills reach the ledger under the strategy its id names (else ``external``)."""
        coid = str(order.get("client_order_id") or "")
        if not coid or order.get("side") not in ("buy", "sell"):
            self._stats["unknown_order_events"] += 1
            return None
        tracked = self._tracked_from_snapshot(order)
        self._orders[coid] = tracked
        self._stats["unknown_order_events"] += 1
        return tracked

    def _tracked_from_snapshot(self, order: dict[str, Any], strategy: str | None = None) -> TrackedOrder:
        coid = str(order["client_order_id"])
        tracked = TrackedOrder(
            client_order_id=coid, account=self.account, strategy=strategy or strategy_from_client_order_id(coid),
            symbol=str(order["symbol"]), side=Side(order["side"]), order_qty=float(order.get("qty") or 0.0) or 1e-9,
            venue=self.venue, ts_tick_ingest=now_ns(), order_type=order.get("type") or "market",
            time_in_force=order.get("time_in_force") if order.get("time_in_force") in ("day", "gtc", "ioc") else "day",
            limit_price=float(order["limit_price"]) if order.get("limit_price") else None,
            ts_event=_ts(order.get("submitted_at")) or now_ns(),
        )
        self._adopt_snapshot(tracked, order)
        return tracked

    def _adopt_snapshot(self, tracked: TrackedOrder, order: dict[str, Any]) -> None:
        if order.get("id"):
            tracked.alpaca_id = str(order["id"])
            self._by_alpaca_id[tracked.alpaca_id] = tracked.client_order_id

    def _publish(self, report: ExecutionReport) -> None:
        self._reports.put(report)

    def _count_fill(self, report: ExecutionReport) -> None:
        if report.is_fill:
            with self._lock:
                self._stats["fills"] += 1
                self._positions[report.symbol] = self._positions.get(report.symbol, 0.0) + report.side.sign * report.last_qty

    # ------------------------------------------------------------------ positions and reconciliation

    def refresh_positions(self) -> dict[str, float]:
        self._bucket.acquire()
        rows = self._client.get_all_positions()
        with self._lock:
            self._positions = {str(r["symbol"]): float(r["qty"]) for r in rows}
            return dict(self._positions)

    def reconcile(self, ledger_positions: dict, open_orders: Iterable[Any], *, adopt: bool = False,
                  adopted_strategy: str = "adopted") -> ReconcileReport:
        """Compare Alpaca's open orders and positions with the ledger's (see ``venues.reconcile``).
        With ``adopt=True`` the venue also starts tracking Alpaca's open orders unknown here, so
        their fills flow through :meth:`reports`."""
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest

        self._bucket.acquire()
        venue_orders = self._client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500))
        self._bucket.acquire()
        venue_positions = self._client.get_all_positions()
        report = reconcile(ledger_positions, open_orders, venue_positions, venue_orders, adopt=adopt,
                           account=self.account, venue=self.venue, adopted_strategy=adopted_strategy)
        if adopt:
            with self._lock:
                for order in venue_orders:
                    coid = str(order.get("client_order_id") or "")
                    if coid and coid not in self._orders:
                        tracked = self._tracked_from_snapshot(order, strategy_from_client_order_id(coid, adopted_strategy))
                        tracked.cum_qty = float(order.get("filled_qty") or 0.0)
                        tracked.avg_price = float(order.get("filled_avg_price") or 0.0)
                        tracked.state = STATUS_STATES.get(str(order.get("status")), OrderState.ACCEPTED)
                        tracked.seen.add("accepted")
                        self._orders[coid] = tracked
                self._positions = {str(r["symbol"]): float(r["qty"]) for r in venue_positions}
        return report

    def on_booked(self, report: ExecutionReport) -> None:
        """The desk booked ``report`` (it calls this for each): the view reconciliation compares."""
        self.booked.on_report(report)

    def hand_over(self, items: Iterable[Any]) -> None:
        """Records for the desk made outside the stream (adoption records at start, a reconciliation
        halt command), queued with the stream's reports (:meth:`drain_reports`), in order."""
        for item in items:
            self._reports.put(item)


def _message(exc: Exception) -> str:
    try:
        return str(exc.message)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - the body was not Alpaca's JSON
        return str(exc)[:200]
