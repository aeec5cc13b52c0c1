"""``FakeAlpaca``: REST + websockets on 127.0.0.1 and the Python control API tests drive it with.

    with FakeAlpaca() as fake:
        settings = fake.settings(request_timeout_s=0.3)
        fake.publish_trade("AAPL", 101.5, 100)
        fake.fail_next(2, status=429)
        fake.stall_next_order(1.0)            # accept the order, answer after the client's timeout
        fake.fill("coid", qty=3, price=100.0)  # partial_fill / fill events on trade_updates
        fake.wait_for(lambda: fake.rest.count("POST", "/v2/orders") == 1, "one order POST")
        fake.drift_position("TSLA", 5, 250.0)  # drift: state changes no stream event announces
        fake.drift_open_order("manual-1", "NVDA", "buy", 3); fake.drift_order_gone("coid")

Every state change notifies one condition, so :meth:`FakeAlpaca.wait_for` waits on events, not on
sleeps, and fails with a message naming what did not happen.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import msgpack

from config.alpaca_settings import AlpacaSettings
from tests.alpaca_fake.broker import FakeBroker
from tests.alpaca_fake.rest import FakeRestServer
from tests.alpaca_fake.streams import FakeStreams

FAKE_KEY_ID = "PKFAKE0000000000TEST"
FAKE_SECRET = "fake-secret-d0-not-log-me-7f3a9c"


class FakeAlpaca:
    def __init__(self, key_id: str = FAKE_KEY_ID, secret: str = FAKE_SECRET):
        self.key_id, self.secret = key_id, secret
        self._changed = threading.Condition()
        self.streams = FakeStreams(key_id, secret, self._notify)
        self.broker = FakeBroker(self._publish_update)
        self.rest = FakeRestServer(self.broker, key_id, secret, self._notify)
        self._trade_ids = iter(range(1, 1 << 62))

    # ------------------------------------------------------------------ life cycle

    def start(self) -> "FakeAlpaca":
        self.streams.start()
        self.rest.start()
        return self

    def stop(self) -> None:
        self.rest.stop()
        self.streams.stop()

    def __enter__(self) -> "FakeAlpaca":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def trading_url(self) -> str:
        return self.rest.url

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.streams.port}"

    def settings(self, **overrides: Any) -> AlpacaSettings:
        """Settings pointing alpaca-py at this fake, with its keys."""
        values: dict[str, Any] = dict(
            api_key_id=self.key_id, api_secret_key=self.secret, trading_url=self.trading_url,
            trading_stream_url=f"{self.ws_url}/stream", data_stream_url=self.ws_url,
            request_timeout_s=2.0,
        )
        values.update(overrides)
        return AlpacaSettings(_env_file=None, **values)

    # ------------------------------------------------------------------ waiting

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
        """Wake on every change of the fake, and every 20 ms for state outside it (a client's counters)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"fake Alpaca: timed out after {timeout}s waiting for {what}")
                self._changed.wait(min(left, 0.02))

    def wait_subscribed(self, symbol: str, channel: str = "trades", connections: int = 1, timeout: float = 5.0) -> None:
        self.wait_for(
            lambda: sum(1 for c in self.streams.market if c.authenticated and not c.silent and c.wants(channel, symbol)) >= connections,
            f"{connections} healthy market-data connection(s) subscribed to {channel} of {symbol}", timeout,
        )

    def wait_listening(self, timeout: float = 5.0) -> None:
        self.wait_for(lambda: any(c.listening for c in self.streams.updates), "a trade_updates listener", timeout)

    # ------------------------------------------------------------------ market data

    def publish_trade(self, symbol: str, price: float, size: float, *, ts_ns: int | None = None,
                      taker: str | None = None, trade_id: int | None = None, conditions: list[str] | None = None) -> int:
        """A ``t`` message to every healthy subscriber; returns the number of connections sent to."""
        message: dict[str, Any] = {"T": "t", "S": symbol, "i": trade_id if trade_id is not None else next(self._trade_ids),
                                   "x": "V", "p": float(price), "s": size, "t": _stamp(ts_ns), "c": conditions or ["@"], "z": "C"}
        if taker is not None:  # crypto trades carry the taker side and no exchange/tape
            message.update(tks=taker)
            del message["x"], message["z"], message["c"]
        return self.streams.call(lambda: self.streams.publish_market("trades", message))

    def publish_quote(self, symbol: str, bid: float, ask: float, bid_size: float = 1, ask_size: float = 1,
                      *, ts_ns: int | None = None) -> int:
        message = {"T": "q", "S": symbol, "bx": "V", "bp": float(bid), "bs": bid_size, "ax": "V", "ap": float(ask),
                   "as": ask_size, "c": ["R"], "t": _stamp(ts_ns), "z": "C"}
        return self.streams.call(lambda: self.streams.publish_market("quotes", message))

    def drop_market_connections(self) -> int:
        return self.streams.call(self.streams.drop_market)

    def go_silent(self, cured_by_resubscribe: bool = True) -> int:
        """Current market connections stay open but send nothing; a new subscribe message cures
        them unless ``cured_by_resubscribe`` is False (then only a new connection does)."""
        return self.streams.call(lambda: self.streams.silence_market(cured_by_resubscribe))

    # ------------------------------------------------------------------ trading

    def fail_next(self, n: int, status: int = 429, path_prefix: str = "") -> None:
        with self.rest.faults.lock:
            self.rest.faults.fail_statuses.extend([status] * n)
            self.rest.faults.fail_paths = path_prefix

    def stall_next_order(self, seconds: float) -> None:
        """Accept the next order but answer only after ``seconds`` (set it past the client timeout)."""
        with self.rest.faults.lock:
            self.rest.faults.stall_orders.append(seconds)

    def fill(self, coid: str, qty: float, price: float) -> dict[str, Any]:
        return self.broker.fill(coid, qty, price)

    def reject(self, coid: str, reason: str = "insufficient buying power") -> dict[str, Any]:
        return self.broker.reject(coid, reason)

    def replay_updates(self, n: int) -> int:
        """Send the last ``n`` trade_updates events again (what a server may do after a reconnect)."""
        events = self.broker.events[-n:]
        return sum(self.streams.call(lambda e=e: self.streams.publish_update(e)) for e in events)

    def drop_updates_connections(self) -> int:
        return self.streams.call(self.streams.drop_updates)

    # ------------------------------------------------------------------ drift (no event on the stream)

    def drift_position(self, symbol: str, qty: float, avg_entry_price: float = 100.0) -> None:
        """Alpaca's position in ``symbol`` becomes ``qty`` (0: it disappears) with nothing streamed,
        as if traded or closed by another session."""
        self.broker.set_position(symbol, qty, avg_entry_price)
        self._notify()

    def drift_open_order(self, coid: str, symbol: str, side: str, qty: float, limit_price: float | None = None) -> dict:
        """An open order appears at Alpaca that tapeflow never sent (and no event tells it)."""
        order = self.broker.add_open_order(coid, symbol, side, qty, limit_price)
        self._notify()
        return order

    def drift_order_gone(self, coid: str, status: str = "canceled") -> dict:
        """An open order disappears from Alpaca's open orders with no event on the stream."""
        order = self.broker.vanish_order(coid, status)
        self._notify()
        return order

    def orders_for(self, coid: str) -> list[dict[str, Any]]:
        return [o for o in self.broker.orders.values() if o["client_order_id"] == coid]

    def _publish_update(self, data: dict[str, Any]) -> None:
        # Called under the broker's lock from a REST thread or a test: hand the send to the loop
        # without waiting, so a slow socket never blocks the account.
        if self.streams.loop.is_running():
            self.streams.loop.call_soon_threadsafe(lambda: self.streams.loop.create_task(self.streams.publish_update(data)))
        self._notify()


def _stamp(ts_ns: int | None) -> msgpack.Timestamp:
    ns = time.time_ns() if ts_ns is None else ts_ns
    return msgpack.Timestamp(ns // 1_000_000_000, ns % 1_000_000_000)
