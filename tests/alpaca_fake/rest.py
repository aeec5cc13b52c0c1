"""The fake's REST v2 trading API on 127.0.0.1 (stdlib ``http.server``, one thread per request).

Routes (Alpaca's paths, as alpaca-py's ``TradingClient`` calls them): ``POST /v2/orders``,
``GET /v2/orders?status=open|closed|all``, ``GET /v2/orders:by_client_order_id?client_order_id=``,
``GET|DELETE /v2/orders/{id}``, ``GET /v2/positions``, ``GET /v2/account``, ``GET /v2/clock``.
Requests need the ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY`` headers (401 otherwise).

Faults, armed by the control API: the next N requests answer a given status (429, 500, 503, ...),
and an accepted order's answer can be held past the client's timeout (the order exists, the client
never hears so).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from tests.alpaca_fake.broker import FakeBroker, RestError, rfc3339_now


@dataclass
class RestFaults:
    """Misbehaviour armed by tests; consumed by the requests it applies to."""

    fail_statuses: list[int] = field(default_factory=list)
    fail_paths: str = ""  # only requests whose path starts with this fail ("" = any)
    stall_orders: list[float] = field(default_factory=list)  # seconds to hold the next order answers
    lock: threading.Lock = field(default_factory=threading.Lock)
    released: threading.Event = field(default_factory=threading.Event)

    def take_failure(self, path: str) -> int | None:
        with self.lock:
            if self.fail_statuses and path.startswith(self.fail_paths):
                return self.fail_statuses.pop(0)
        return None

    def take_stall(self) -> float:
        with self.lock:
            return self.stall_orders.pop(0) if self.stall_orders else 0.0


_ERROR_CODES = {429: 42910000, 500: 50010000, 502: 50210000, 503: 50310000, 504: 50410000}


class FakeRestServer:
    def __init__(self, broker: FakeBroker, key_id: str, secret: str, notify: Callable[[], None]):
        self.broker = broker
        self._notify = notify
        self.faults = RestFaults()
        self.requests: list[tuple[str, str]] = []  # (method, path) in arrival order
        self._credentials = (key_id, secret)
        self._log_lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="fake-alpaca-rest", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.faults.released.set()  # wake any stalled answer
        self._httpd.shutdown()
        self._httpd.server_close()

    def count(self, method: str, path: str) -> int:
        with self._log_lock:
            return sum(1 for m, p in self.requests if m == method and p == path)

    # ------------------------------------------------------------------ routing

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        broker = self.broker
        if method == "POST" and path == "/v2/orders":
            order = broker.submit(body or {})
            stall = self.faults.take_stall()
            if stall:
                # The order is placed; the answer arrives after the client gave up (or never).
                self.faults.released.wait(stall)
            return 200, order
        if method == "GET" and path == "/v2/orders":
            return 200, broker.list_orders(query.get("status", ["open"])[0])
        if method == "GET" and path == "/v2/orders:by_client_order_id":
            return 200, broker.by_client_id(query.get("client_order_id", [""])[0])
        if path.startswith("/v2/orders/"):
            order_id = path.rsplit("/", 1)[1]
            if method == "GET":
                return 200, broker.by_id(order_id)
            if method == "DELETE":
                broker.cancel(order_id)
                return 204, None
        if method == "GET" and path == "/v2/positions":
            return 200, broker.position_list()
        if method == "GET" and path == "/v2/account":
            return 200, broker.account()
        if method == "GET" and path == "/v2/clock":
            now = rfc3339_now()
            return 200, {"timestamp": now, "is_open": True, "next_open": now, "next_close": now}
        raise RestError(404, 40410000, f"no route for {method} {path}")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass  # the default writes every request to stderr

            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                with server._log_lock:
                    server.requests.append((method, parts.path))
                server._notify()
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    if (self.headers.get("APCA-API-KEY-ID"), self.headers.get("APCA-API-SECRET-KEY")) != server._credentials:
                        raise RestError(401, 40110000, "request is not authorized")
                    failure = server.faults.take_failure(parts.path)
                    if failure is not None:
                        message = "too many requests" if failure == 429 else "internal server error"
                        raise RestError(failure, _ERROR_CODES.get(failure, failure * 100000), message)
                    status, payload = server.route(method, parts.path, parse_qs(parts.query), json.loads(raw) if raw else None)
                except RestError as exc:
                    status, payload = exc.status, exc.body()
                self._answer(status, payload)
                server._notify()

            def _answer(self, status: int, payload: Any) -> None:
                data = b"" if payload is None else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left: exactly the case being simulated

            def do_GET(self) -> None:  # noqa: N802 - stdlib naming
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

            def do_DELETE(self) -> None:  # noqa: N802
                self._serve("DELETE")

        return Handler

