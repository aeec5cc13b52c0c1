"""The fake's websockets: market data (``/v2/iex``, ``/v2/sip``, ``/v1beta3/crypto/us``) and
trade updates (``/stream``), on one 127.0.0.1 port, in a thread running its own event loop.

Market data follows Alpaca's stream protocol: on connect ``[{"T":"success","msg":"connected"}]``;
``{"action":"auth","key","secret"}`` answers ``[{"T":"success","msg":"authenticated"}]`` or
``[{"T":"error","code":402,"msg":"auth failed"}]``; ``{"action":"subscribe","trades":[..],
"quotes":[..]}`` answers ``[{"T":"subscription",...}]``; data arrives as arrays of ``t``/``q``
messages. A client that sends ``Content-Type: application/msgpack`` (alpaca-py does) gets msgpack
binary frames with ``t`` as a msgpack timestamp, any other client JSON text with RFC 3339 strings.

Trade updates: ``{"action":"authenticate","data":{"key_id","secret_key"}}`` answers
``{"stream":"authorization","data":{"status":"authorized"|"unauthorized",...}}``; ``{"action":
"listen","data":{"streams":["trade_updates"]}}`` answers ``{"stream":"listening",...}``; events are
``{"stream":"trade_updates","data":{...}}``, sent as binary frames like the paper endpoint does.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import msgpack
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

MARKET_PATHS = ("/v2/iex", "/v2/sip", "/v1beta3/crypto/us")
STOCK_CHANNELS = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds", "corrections", "cancelErrors")
CRYPTO_CHANNELS = ("trades", "quotes", "orderbooks", "bars", "updatedBars", "dailyBars")


@dataclass(eq=False)
class MarketConnection:
    ws: ServerConnection
    path: str
    msgpack: bool
    authenticated: bool = False
    subscriptions: dict[str, set[str]] = field(default_factory=dict)
    silent: bool = False  # connected, answering nothing, sending nothing
    cured_by_resubscribe: bool = True

    def wants(self, channel: str, symbol: str) -> bool:
        subs = self.subscriptions.get(channel, set())
        return symbol in subs or "*" in subs


@dataclass(eq=False)
class UpdatesConnection:
    ws: ServerConnection
    authenticated: bool = False
    listening: bool = False


class FakeStreams:
    def __init__(self, key_id: str, secret: str, notify: Callable[[], None]):
        self._credentials = (key_id, secret)
        self._notify = notify
        self.market: list[MarketConnection] = []
        self.updates: list[UpdatesConnection] = []
        self.market_connects = 0
        self.subscribe_messages = 0
        self.updates_connects = 0
        self.loop = asyncio.new_event_loop()
        self._server = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-alpaca-ws", daemon=True)
        self.port = 0

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fake websocket server did not start within 10s")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._open())
        self._ready.set()
        self.loop.run_forever()

    async def _open(self) -> None:
        self._update_order = asyncio.Lock()  # FIFO: trade_updates go out in the order they happened
        self._server = await serve(self._handle, "127.0.0.1", 0, compression=None)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            for conn in [c.ws for c in self.market] + [c.ws for c in self.updates]:
                conn.transport.abort()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop (the only thread touching connections) and return its result."""
        async def run() -> Any:
            result = fn()
            return await result if asyncio.iscoroutine(result) else result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    # ------------------------------------------------------------------ connections

    async def _handle(self, ws: ServerConnection) -> None:
        path = ws.request.path
        try:
            if path in MARKET_PATHS:
                await self._serve_market(ws, path)
            elif path == "/stream":
                await self._serve_updates(ws)
            else:
                await ws.close(1008, f"no stream at {path}")
        except ConnectionClosed:
            pass
        finally:
            self.market = [c for c in self.market if c.ws is not ws]
            self.updates = [c for c in self.updates if c.ws is not ws]
            self._notify()

    async def _serve_market(self, ws: ServerConnection, path: str) -> None:
        packed = ws.request.headers.get("Content-Type", "") == "application/msgpack"
        conn = MarketConnection(ws, path, packed)
        self.market.append(conn)
        self.market_connects += 1
        await self._send_market(conn, [{"T": "success", "msg": "connected"}])
        self._notify()
        async for frame in ws:
            message = msgpack.unpackb(frame) if isinstance(frame, bytes) else json.loads(frame)
            action = message.get("action")
            if conn.silent and not (action == "subscribe" and conn.cured_by_resubscribe):
                continue
            if action == "auth":
                if (message.get("key"), message.get("secret")) != self._credentials:
                    await self._send_market(conn, [{"T": "error", "code": 402, "msg": "auth failed"}])
                    await ws.close()
                    return
                conn.authenticated = True
                await self._send_market(conn, [{"T": "success", "msg": "authenticated"}])
            elif not conn.authenticated:
                await self._send_market(conn, [{"T": "error", "code": 401, "msg": "not authenticated"}])
            elif action in ("subscribe", "unsubscribe"):
                if action == "subscribe":
                    self.subscribe_messages += 1
                    conn.silent = False
                channels = CRYPTO_CHANNELS if "crypto" in path else STOCK_CHANNELS
                for channel in channels:
                    symbols = set(message.get(channel) or ())
                    current = conn.subscriptions.setdefault(channel, set())
                    current |= symbols if action == "subscribe" else set()
                    current -= symbols if action == "unsubscribe" else set()
                ack: dict[str, Any] = {"T": "subscription"}
                ack.update({ch: sorted(conn.subscriptions.get(ch, ())) for ch in channels})
                await self._send_market(conn, [ack])
            else:
                await self._send_market(conn, [{"T": "error", "code": 400, "msg": "invalid syntax"}])
            self._notify()

    async def _send_market(self, conn: MarketConnection, messages: list[dict[str, Any]]) -> None:
        if conn.msgpack:
            await conn.ws.send(msgpack.packb(messages, datetime=False))
        else:
            await conn.ws.send(json.dumps([_json_ready(m) for m in messages]))

    async def _serve_updates(self, ws: ServerConnection) -> None:
        conn = UpdatesConnection(ws)
        self.updates.append(conn)
        self.updates_connects += 1
        self._notify()
        async for frame in ws:
            message = json.loads(frame)
            action = message.get("action")
            data = message.get("data") or {}
            if action == "authenticate":
                ok = (data.get("key_id"), data.get("secret_key")) == self._credentials
                conn.authenticated = ok
                status = "authorized" if ok else "unauthorized"
                await ws.send(json.dumps({"stream": "authorization", "data": {"status": status, "action": "authenticate"}}).encode())
                if not ok:
                    await ws.close()
                    return
            elif action == "listen" and conn.authenticated:
                conn.listening = "trade_updates" in (data.get("streams") or [])
                await ws.send(json.dumps({"stream": "listening", "data": {"streams": ["trade_updates"] if conn.listening else []}}).encode())
            self._notify()

    # ------------------------------------------------------------------ publishing (server loop)

    async def publish_market(self, channel: str, message: dict[str, Any]) -> int:
        """Send one data message to every healthy subscriber; returns how many got it."""
        sent = 0
        for conn in list(self.market):
            if conn.authenticated and not conn.silent and conn.wants(channel, message["S"]):
                try:
                    await self._send_market(conn, [message])
                    sent += 1
                except ConnectionClosed:
                    pass
        return sent

    async def publish_update(self, data: dict[str, Any]) -> int:
        frame = json.dumps({"stream": "trade_updates", "data": data}).encode()
        sent = 0
        async with self._update_order:
            for conn in list(self.updates):
                if conn.listening:
                    try:
                        await conn.ws.send(frame)
                        sent += 1
                    except ConnectionClosed:
                        pass
        return sent

    def drop_market(self) -> int:
        """Cut every market-data connection without a close handshake (a network drop)."""
        conns, self.market = list(self.market), []
        for conn in conns:
            conn.ws.transport.abort()
        return len(conns)

    def drop_updates(self) -> int:
        conns, self.updates = list(self.updates), []
        for conn in conns:
            conn.ws.transport.abort()
        return len(conns)

    def silence_market(self, cured_by_resubscribe: bool) -> int:
        for conn in self.market:
            conn.silent = True
            conn.cured_by_resubscribe = cured_by_resubscribe
        return len(self.market)


def _json_ready(message: dict[str, Any]) -> dict[str, Any]:
    out = dict(message)
    stamp = out.get("t")
    if isinstance(stamp, msgpack.Timestamp):
        out["t"] = timestamp_to_rfc3339(stamp)
    return out


def timestamp_to_rfc3339(stamp: msgpack.Timestamp) -> str:
    from datetime import datetime, timezone

    base = datetime.fromtimestamp(stamp.seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{stamp.nanoseconds:09d}Z"
