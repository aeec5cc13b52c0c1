"""Alpaca's ``trade_updates`` stream: the connection (:class:`TradeUpdatesStream`) and the
translation of its events into tapeflow order state (:class:`TrackedOrder`, :func:`apply_update`).

Events (``data`` of ``{"stream": "trade_updates", "data": {...}}``): ``event`` (new, fill,
partial_fill, canceled, expired, rejected, done_for_day, replaced, pending_*, ...), ``order`` (the
REST order after the event: ``filled_qty``, ``filled_avg_price``, ``status``, ...), ``timestamp``
and, on fills, ``execution_id``, ``price`` and ``qty`` (strings).

Fills are booked by **cumulative quantity**, not by event: a fill event is applied only when the
order's ``filled_qty`` advances past what was already booked, and it books exactly that advance.
So a replayed event (a reconnect, at-least-once delivery) books nothing, and a fill missed while
disconnected is caught up by the next event or REST snapshot of the order: its quantity is the
advance and its price the one implied by the change of ``filled_avg_price``. In the normal case the
advance equals the event's ``qty`` and the report carries the event's ``price`` and
``execution_id`` (``fill_id``). Alpaca reports no per-fill fee for equities: ``fee`` is 0.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import websockets

from schemas.timestamps import rfc3339_to_ns
from schemas import ExecutionReport, OrderState, Side, now_ns
from config.alpaca_settings import AlpacaSettings
from venues.rate_limit import Backoff

log = logging.getLogger(__name__)

QTY_EPSILON = 1e-9

# Events that move an order to a tapeflow state; the others (pending_new, pending_cancel, replaced,
# calculated, ...) change nothing tapeflow tracks.
EVENT_STATES = {
    "new": OrderState.ACCEPTED,
    "accepted": OrderState.ACCEPTED,
    "partial_fill": OrderState.PARTIALLY_FILLED,
    "fill": OrderState.FILLED,
    "canceled": OrderState.CANCELED,
    "expired": OrderState.CANCELED,
    "done_for_day": OrderState.CANCELED,
    "rejected": OrderState.REJECTED,
}
# REST order ``status`` values, for snapshots (submit answers, lookups, reconciliation).
STATUS_STATES = {
    "new": OrderState.ACCEPTED, "accepted": OrderState.ACCEPTED, "pending_new": OrderState.NEW,
    "accepted_for_bidding": OrderState.ACCEPTED, "partially_filled": OrderState.PARTIALLY_FILLED,
    "filled": OrderState.FILLED, "canceled": OrderState.CANCELED, "expired": OrderState.CANCELED,
    "done_for_day": OrderState.CANCELED, "rejected": OrderState.REJECTED,
}


def strategy_from_client_order_id(coid: str, default: str = "external") -> str:
    """The strategy of a tapeflow id (``{strategy}-{symbol}-{side}-{bar_end}-{seq}``), else ``default``."""
    parts = coid.split("-")
    if len(parts) >= 5 and parts[2] in ("buy", "sell") and parts[0]:
        return parts[0].replace("%2D", "-").replace("%25", "%")
    return default


def _float(value: Any, default: float = 0.0) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _ts(text: Any) -> int | None:
    """An update's stamp, or None (the caller falls back to the next stamp, then the clock): an
    unreadable or impossible one (``2024-02-31``) is logged, never used."""
    try:
        return rfc3339_to_ns(text) if isinstance(text, str) else None
    except ValueError as exc:
        log.warning("trade update with an unusable timestamp, falling back: %s", exc)
        return None


@dataclass
class TrackedOrder:
    """What tapeflow knows of one Alpaca order; all mutation happens under the venue's lock."""

    client_order_id: str
    account: str
    strategy: str
    symbol: str
    side: Side
    order_qty: float
    venue: str
    ts_tick_ingest: int
    order_type: str = "market"
    time_in_force: str = "day"
    limit_price: float | None = None
    ts_event: int = 0
    alpaca_id: str = ""
    state: OrderState = OrderState.NEW
    cum_qty: float = 0.0
    avg_price: float = 0.0
    in_flight: bool = False  # the submit call has not returned: its reports wait in ``held``
    held: list[ExecutionReport] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    @property
    def is_open(self) -> bool:
        return not self.state.is_terminal

    def report(self, state: OrderState, ts_event: int, id_suffix: str, reason: str = "", **fill: Any) -> ExecutionReport:
        self.state = state
        return ExecutionReport(
            id=f"exec:{self.client_order_id}:{id_suffix}", ts_event=ts_event, ts_ingest=now_ns(),
            account=self.account, venue=self.venue, client_order_id=self.client_order_id,
            venue_order_id=self.alpaca_id, strategy=self.strategy, symbol=self.symbol, side=self.side,
            state=state, order_qty=self.order_qty, cum_qty=self.cum_qty,
            leaves_qty=0.0 if state.is_terminal else max(0.0, self.order_qty - self.cum_qty),
            avg_price=round(self.avg_price, 9), reason=reason, ts_tick_ingest=self.ts_tick_ingest, **fill,
        )


def apply_update(tracked: TrackedOrder, data: dict[str, Any]) -> list[ExecutionReport]:
    """The reports one event (or REST snapshot as ``{"event": <status>, "order": ...}``) causes.

    Idempotent: applying the same event twice yields nothing the second time.
    """
    order = data.get("order") or {}
    event = str(data.get("event") or order.get("status") or "")
    if order.get("id"):
        tracked.alpaca_id = str(order["id"])
    ts_event = _ts(data.get("timestamp")) or _ts(order.get("updated_at")) or now_ns()
    reports: list[ExecutionReport] = []

    cum = _float(order.get("filled_qty"), tracked.cum_qty)
    advance = cum - tracked.cum_qty
    if advance > QTY_EPSILON:
        new_avg = _float(order.get("filled_avg_price"), tracked.avg_price)
        event_qty = _float(data.get("qty"))
        execution_id = data.get("execution_id")
        if execution_id and abs(event_qty - advance) <= QTY_EPSILON:
            price, fill_id = _float(data.get("price"), new_avg), str(execution_id)
        else:
            # Fills were missed (or this is a snapshot): book the advance at the implied price.
            price = (new_avg * cum - tracked.avg_price * tracked.cum_qty) / advance
            fill_id = f"{tracked.alpaca_id or tracked.client_order_id}:cum:{cum:.9f}"
        tracked.cum_qty, tracked.avg_price = cum, new_avg
        done = cum >= tracked.order_qty - QTY_EPSILON or event == "fill" or order.get("status") == "filled"
        state = OrderState.FILLED if done else OrderState.PARTIALLY_FILLED
        tracked.seen.add(state.value)
        reports.append(tracked.report(state, ts_event, f"fill:{fill_id}", fill_id=fill_id,
                                      last_qty=round(advance, 9), last_price=round(price, 9)))

    target = EVENT_STATES.get(event) or STATUS_STATES.get(event)
    if target is None or target in (OrderState.PARTIALLY_FILLED, OrderState.FILLED) or tracked.state.is_terminal:
        return reports
    if target is OrderState.ACCEPTED:
        if tracked.state is OrderState.NEW and "accepted" not in tracked.seen:
            tracked.seen.add("accepted")
            reports.append(tracked.report(OrderState.ACCEPTED, ts_event, "accepted"))
        return reports
    # canceled / rejected: terminal, once
    if target.value not in tracked.seen:
        tracked.seen.add(target.value)
        reason = str(data.get("reason") or event)
        reports.append(tracked.report(target, ts_event, target.value, reason=f"venue:{reason}"))
    return reports


class TradeUpdatesStream:
    """One ``trade_updates`` connection per account, in a daemon thread with its own event loop.

    alpaca-py's ``TradingStream`` does the protocol (``authenticate``, ``listen``); tapeflow drives
    its coroutines and reads the socket, so reconnects back off with jitter on its terms (a 429 on
    connect, a reset, a close) and ``on_listening(reconnected)`` lets the venue catch up on orders
    whose events may have been missed while disconnected. A refused authentication ends the
    stream (``error`` says why); retrying it would only earn 429s.
    """

    def __init__(self, settings: AlpacaSettings, paper: bool, on_update: Callable[[dict[str, Any]], None],
                 on_listening: Callable[[bool], None] | None = None, *, backoff: Backoff | None = None,
                 recv_poll_s: float = 0.25):
        self.settings = settings
        self.paper = paper
        self.url = settings.updates_url(paper)
        self._on_update = on_update
        self._on_listening = on_listening or (lambda reconnected: None)
        self._backoff = backoff or Backoff(0.5, 30.0)
        self._recv_poll_s = recv_poll_s
        self._stop = threading.Event()
        self.listening = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self.error: str | None = None
        self.counts = {"connects": 0, "reconnects": 0, "errors": 0, "events": 0}

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="alpaca-trade-updates", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._loop is not None and self._wake is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # the loop closed in between: the thread is ending anyway
                pass
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._sessions())
        except Exception:  # noqa: BLE001 - logged; the venue sees ``error`` and stats
            log.exception("trade_updates: the stream thread failed")
            self.error = "the stream thread failed (see the log)"
        finally:
            loop.close()

    async def _sessions(self) -> None:
        from alpaca.trading.stream import TradingStream

        self._wake = asyncio.Event()
        had_session = False
        while not self._stop.is_set():
            key, secret = self.settings.key_pair()
            stream = TradingStream(key, secret, paper=self.paper, raw_data=True, url_override=self.url,
                                   websocket_params={"ping_interval": 10, "ping_timeout": 30, "close_timeout": 1})
            stream.subscribe_trade_updates(_ignore)  # makes _start_ws send "listen"
            try:
                await stream._start_ws()
                self.counts["connects"] += 1
                await self._consume(stream, had_session)
                had_session = True
            except ValueError as exc:  # alpaca-py: "failed to authenticate"
                self.counts["errors"] += 1
                self.error = (f"trade_updates at {self.url} refused: {exc}. Check APCA_API_KEY_ID/"
                              "APCA_API_SECRET_KEY and that paper keys go with paper=True.")
                log.error("%s", self.error)
                return
            except (websockets.WebSocketException, OSError, asyncio.TimeoutError) as exc:
                self.counts["errors"] += 1
                had_session = had_session or self.listening.is_set()
                log.warning("trade_updates: connection lost (%s); reconnecting", type(exc).__name__)
            finally:
                self.listening.clear()
                try:
                    await stream.close()
                except Exception:  # noqa: BLE001 - already gone
                    pass
            if not self._stop.is_set():
                try:
                    await asyncio.wait_for(self._wake.wait(), self._backoff.next_delay())
                except asyncio.TimeoutError:
                    pass

    async def _consume(self, stream, had_session: bool) -> None:
        ws = stream._ws
        while not self._stop.is_set():
            try:
                frame = await asyncio.wait_for(ws.recv(), self._recv_poll_s)
            except asyncio.TimeoutError:
                continue
            message = json.loads(frame)
            kind = message.get("stream")
            if kind == "trade_updates":
                self.counts["events"] += 1
                self._on_update(message.get("data") or {})
            elif kind == "listening":
                if had_session:
                    self.counts["reconnects"] += 1
                    log.warning("trade_updates: reconnected (reconnect #%d)", self.counts["reconnects"])
                self._backoff.reset()
                self.listening.set()
                # Catch-up does REST calls: off the loop, so pings keep being answered meanwhile.
                await asyncio.get_running_loop().run_in_executor(None, self._on_listening, had_session)


async def _ignore(_message: Any) -> None:
    return None
