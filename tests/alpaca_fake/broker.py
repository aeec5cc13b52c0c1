"""The fake's account: orders, positions and the trade_updates events they cause.

Orders and events follow Alpaca's documented JSON (REST v2 ``Order``/``Position``, stream
``trade_updates``): numbers as strings, RFC 3339 timestamps, ``status`` values new / accepted /
partially_filled / filled / canceled / rejected. Nothing fills on its own: a test fills, rejects or
cancels an order through the control API, so every event a test sees is one it asked for.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable


def rfc3339_now() -> str:
    ns = time.time_ns()
    seconds, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def _num(value: float) -> str:
    return repr(float(value)).rstrip("0").rstrip(".") if value == value else "NaN"


class RestError(Exception):
    """An error answer: HTTP status and Alpaca's ``{"code", "message"}`` body."""

    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


@dataclass
class FakePosition:
    qty: float
    avg_entry_price: float


class FakeBroker:
    """Thread-safe account state; ``publish`` receives every trade_updates event it emits."""

    def __init__(self, publish: Callable[[dict], None]):
        self._publish = publish
        self._lock = threading.RLock()
        self.orders: dict[str, dict[str, Any]] = {}
        self._by_coid: dict[str, str] = {}
        self.positions: dict[str, FakePosition] = {}
        self.events: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ REST

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            coid = body.get("client_order_id") or str(uuid.uuid4())
            if coid in self._by_coid:
                raise RestError(422, 40010001, "client_order_id must be unique")
            for field in ("symbol", "side", "type", "time_in_force"):
                if not body.get(field):
                    raise RestError(422, 40010001, f"{field} is required")
            qty = float(body.get("qty") or 0)
            if qty <= 0:
                raise RestError(422, 40010001, "qty must be > 0")
            if qty != int(qty) and "/" not in body["symbol"]:
                if body["type"] not in ("market", "limit") or body["time_in_force"] != "day":
                    raise RestError(422, 40010001, "fractional orders must be market or limit DAY orders")
            if body["type"] == "limit" and body.get("limit_price") is None:
                raise RestError(422, 40010001, "limit_price is required for limit orders")
            order = self._new_order(coid, body, qty)
            self.orders[order["id"]] = order
            self._by_coid[coid] = order["id"]
            response = dict(order)
            order["status"] = "new"
            self._emit("new", order)
            return response

    def _new_order(self, coid: str, body: dict[str, Any], qty: float) -> dict[str, Any]:
        now = rfc3339_now()
        crypto = "/" in body["symbol"]
        return {
            "id": str(uuid.uuid4()), "client_order_id": coid, "created_at": now, "updated_at": now,
            "submitted_at": now, "filled_at": None, "expired_at": None, "canceled_at": None,
            "failed_at": None, "replaced_at": None, "replaced_by": None, "replaces": None,
            "asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, body["symbol"])), "symbol": body["symbol"],
            "asset_class": "crypto" if crypto else "us_equity", "notional": None, "qty": _num(qty),
            "filled_qty": "0", "filled_avg_price": None, "order_class": "", "order_type": body["type"],
            "type": body["type"], "side": body["side"], "time_in_force": body["time_in_force"],
            "limit_price": None if body.get("limit_price") is None else _num(float(body["limit_price"])),
            "stop_price": None, "status": "accepted", "extended_hours": bool(body.get("extended_hours")),
            "legs": None, "trail_percent": None, "trail_price": None, "hwm": None,
            "position_intent": "buy_to_open" if body["side"] == "buy" else "sell_to_close",
        }

    def by_client_id(self, coid: str) -> dict[str, Any]:
        with self._lock:
            order_id = self._by_coid.get(coid)
            if order_id is None:
                raise RestError(404, 40410000, "order not found")
            return dict(self.orders[order_id])

    def by_id(self, order_id: str) -> dict[str, Any]:
        with self._lock:
            if order_id not in self.orders:
                raise RestError(404, 40410000, "order not found")
            return dict(self.orders[order_id])

    def list_orders(self, status: str = "open") -> list[dict[str, Any]]:
        with self._lock:
            orders = [dict(o) for o in self.orders.values()]
        if status == "open":
            orders = [o for o in orders if o["status"] in ("new", "accepted", "partially_filled", "pending_new")]
        elif status == "closed":
            orders = [o for o in orders if o["status"] in ("filled", "canceled", "rejected", "expired")]
        return orders

    def cancel(self, order_id: str) -> None:
        with self._lock:
            order = self.orders.get(order_id)
            if order is None:
                raise RestError(404, 40410000, "order not found")
            if order["status"] in ("filled", "canceled", "rejected"):
                raise RestError(422, 42210000, f"order is already in \"{order['status']}\" state")
            order["status"] = "canceled"
            order["canceled_at"] = order["updated_at"] = rfc3339_now()
            self._emit("canceled", order)

    def position_list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._position_json(symbol, pos) for symbol, pos in sorted(self.positions.items()) if pos.qty]

    def account(self) -> dict[str, Any]:
        return {
            "id": "00000000-0000-4000-8000-000000000000", "account_number": "PA0FAKE", "status": "ACTIVE",
            "currency": "USD", "cash": "100000", "buying_power": "200000", "equity": "100000",
            "portfolio_value": "100000", "pattern_day_trader": False, "trading_blocked": False,
            "transfers_blocked": False, "account_blocked": False, "created_at": rfc3339_now(),
            "shorting_enabled": True, "multiplier": "2", "crypto_status": "ACTIVE",
        }

    # ------------------------------------------------------------------ control (tests)

    def fill(self, coid: str, qty: float, price: float) -> dict[str, Any]:
        """Execute ``qty`` of the order at ``price``: a partial_fill or fill event."""
        with self._lock:
            order = self.orders[self._by_coid[coid]]
            if order["status"] in ("filled", "canceled", "rejected"):
                raise ValueError(f"order {coid} is {order['status']}; it cannot fill")
            total, done = float(order["qty"]), float(order["filled_qty"])
            if qty <= 0 or done + qty > total + 1e-9:
                raise ValueError(f"fill of {qty} exceeds the {total - done} left on {coid}")
            avg = float(order["filled_avg_price"] or 0.0)
            cum = done + qty
            order["filled_avg_price"] = _num((avg * done + price * qty) / cum)
            order["filled_qty"] = _num(cum)
            full = abs(cum - total) <= 1e-9
            order["status"] = "filled" if full else "partially_filled"
            order["updated_at"] = now = rfc3339_now()
            if full:
                order["filled_at"] = now
            signed = qty if order["side"] == "buy" else -qty
            position = self.positions.setdefault(order["symbol"], FakePosition(0.0, 0.0))
            if position.qty == 0 or (position.qty > 0) == (signed > 0):
                position.avg_entry_price = (position.avg_entry_price * abs(position.qty) + price * qty) / (abs(position.qty) + qty)
            position.qty += signed
            return self._emit(
                "fill" if full else "partial_fill", order, execution_id=str(uuid.uuid4()),
                price=_num(price), qty=_num(qty), position_qty=_num(position.qty),
            )

    def reject(self, coid: str, reason: str = "insufficient buying power") -> dict[str, Any]:
        with self._lock:
            order = self.orders[self._by_coid[coid]]
            order["status"] = "rejected"
            order["failed_at"] = order["updated_at"] = rfc3339_now()
            return self._emit("rejected", order, reason=reason)

    def add_open_order(self, coid: str, symbol: str, side: str, qty: float, limit_price: float | None = None) -> dict:
        """An order placed outside this test's client (another session, the web UI)."""
        body = {"symbol": symbol, "side": side, "qty": qty, "client_order_id": coid,
                "type": "limit" if limit_price else "market", "time_in_force": "gtc" if limit_price else "day",
                "limit_price": limit_price}
        with self._lock:
            order = self._new_order(coid, body, qty)
            order["status"] = "new"
            self.orders[order["id"]] = order
            self._by_coid[coid] = order["id"]
            return dict(order)

    def set_position(self, symbol: str, qty: float, avg_entry_price: float) -> None:
        with self._lock:
            self.positions[symbol] = FakePosition(qty, avg_entry_price)

    def vanish_order(self, coid: str, status: str = "canceled") -> dict[str, Any]:
        """The order leaves Alpaca's open orders without a trade_updates event (canceled from the
        web UI or expired while nothing listened): drift only a reconciliation can see."""
        with self._lock:
            order = self.orders[self._by_coid[coid]]
            order["status"] = status
            order["canceled_at" if status == "canceled" else "expired_at"] = order["updated_at"] = rfc3339_now()
            return dict(order)

    # ------------------------------------------------------------------ internals

    def _emit(self, event: str, order: dict[str, Any], **fields: Any) -> dict[str, Any]:
        data = {"event": event, "timestamp": order["updated_at"], "order": dict(order), **fields}
        self.events.append(data)
        self._publish(data)
        return data

    @staticmethod
    def _position_json(symbol: str, pos: FakePosition) -> dict[str, Any]:
        value = pos.qty * pos.avg_entry_price
        return {
            "asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, symbol)), "symbol": symbol, "exchange": "NASDAQ",
            "asset_class": "crypto" if "/" in symbol else "us_equity", "avg_entry_price": _num(pos.avg_entry_price),
            "qty": _num(pos.qty), "qty_available": _num(pos.qty), "side": "long" if pos.qty > 0 else "short",
            "market_value": _num(value), "cost_basis": _num(value), "unrealized_pl": "0", "unrealized_plpc": "0",
            "unrealized_intraday_pl": "0", "unrealized_intraday_plpc": "0",
            "current_price": _num(pos.avg_entry_price), "lastday_price": _num(pos.avg_entry_price),
            "change_today": "0",
        }
