"""Vendor payload parsers for normalize: one per ``RawTick.payload_format``.

A parser turns a vendor payload dict into a :class:`ParsedTrade` or :class:`ParsedQuote`, or raises
:class:`MalformedPayload`. Parsers check *shape* only: fields present, of the right type, enums
known. Value checks (positive finite prices, crossed quotes, bands, time) are format-independent
and live in :class:`market.normalize.NormalizeState`, so a new feed gets them for free.

Registered: ``tapeflow.v1`` (synthetic and replay feeds) and ``alpaca.v2`` (Alpaca's market-data
stream, ``feeds.alpaca``). To add a feed, write ``parse_<format>(payload) -> ParsedTrade |
ParsedQuote`` that converts the vendor's field names, timestamps (to int ns UTC) and trade ids (to
str), and register it in :data:`PAYLOAD_PARSERS`.

Parsers must return floats (not ints) for prices and sizes: records are built without pydantic
coercion in the hot path, and an int would serialize as ``100`` instead of ``100.0``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from schemas.market import Aggressor
from schemas.timestamps import rfc3339_to_ns

INF = float("inf")
# Event times are int64 ns downstream (orjson, ClickHouse DateTime64(9)); larger ints are malformed.
MAX_TS_NS = (1 << 63) - 1


class ParsedTrade(NamedTuple):
    ts: int
    price: float
    size: float
    aggressor: Aggressor
    trade_id: str


class ParsedQuote(NamedTuple):
    ts: int
    bid: float
    ask: float
    bid_size: float
    ask_size: float


class MalformedPayload(ValueError):
    """The payload does not have the shape its format promises.

    ``ts`` is the event time if it could be read before the failure, so the dead letter can carry it.
    """

    def __init__(self, detail: str, ts: int | None = None):
        super().__init__(detail)
        self.detail = detail
        self.ts = ts


PayloadParser = Callable[[Any], "ParsedTrade | ParsedQuote"]

_SIDES = {"buy": Aggressor.BUY, "sell": Aggressor.SELL, "unknown": Aggressor.UNKNOWN}
_MISSING = object()


def _number(payload: dict, key: str, ts: int) -> float:
    """An int or float field as float; bools, strings and None are malformed.

    Strings like ``"101.5"`` are refused rather than coerced: a feed that sends numbers as text is
    broken, and coercing would hide it. NaN/inf pass here and are caught by the value rules.
    """
    value = payload.get(key, _MISSING)
    kind = type(value)
    if kind is float:
        return value
    if kind is int:
        try:
            return float(value)
        except OverflowError:  # an int beyond float range: let the value rules reject it as inf
            return INF if value > 0 else -INF
    if value is _MISSING:
        raise MalformedPayload(f"missing field {key!r}", ts)
    raise MalformedPayload(f"field {key!r}={value!r} is {kind.__name__}, expected a number", ts)


def _event_ts(payload: dict) -> int:
    value = payload.get("ts", _MISSING)
    if type(value) is int and 0 <= value <= MAX_TS_NS:
        return value
    if value is _MISSING:
        raise MalformedPayload("missing field 'ts'")
    raise MalformedPayload(f"field 'ts'={value!r} is not an int of ns since the epoch in [0, 2**63)")


def parse_tapeflow_v1(payload: Any) -> ParsedTrade | ParsedQuote:
    """Parse the synthetic/replay feed's payload (see the module docstring of ``market.normalize``).

    ``side`` may be absent or None (many venues do not report the aggressor): it becomes UNKNOWN.
    Any other value outside buy/sell/unknown is malformed.
    """
    if not isinstance(payload, dict):
        raise MalformedPayload(f"payload is {type(payload).__name__}, expected an object")
    kind = payload.get("type")
    if kind == "trade":
        ts = payload.get("ts")
        if type(ts) is not int or not 0 <= ts <= MAX_TS_NS:
            ts = _event_ts(payload)
        # Fast path for the common case (JSON floats); _number handles ints and explains failures.
        price = payload.get("price")
        if type(price) is not float:
            price = _number(payload, "price", ts)
        size = payload.get("size")
        if type(size) is not float:
            size = _number(payload, "size", ts)
        side = payload.get("side")
        if side is None:
            aggressor = Aggressor.UNKNOWN
        else:
            aggressor = _SIDES.get(side) if type(side) is str else None
            if aggressor is None:
                raise MalformedPayload(f"field 'side'={side!r} is not one of buy/sell/unknown", ts)
        trade_id = payload.get("trade_id", _MISSING)
        if type(trade_id) is not str or not trade_id:
            if trade_id is _MISSING:
                raise MalformedPayload("missing field 'trade_id'", ts)
            raise MalformedPayload(f"field 'trade_id'={trade_id!r} is not a non-empty str", ts)
        return ParsedTrade(ts, price, size, aggressor, trade_id)
    if kind == "quote":
        ts = payload.get("ts")
        if type(ts) is not int or not 0 <= ts <= MAX_TS_NS:
            ts = _event_ts(payload)
        bid = payload.get("bid")
        if type(bid) is not float:
            bid = _number(payload, "bid", ts)
        ask = payload.get("ask")
        if type(ask) is not float:
            ask = _number(payload, "ask", ts)
        bid_size = payload.get("bid_size")
        if type(bid_size) is not float:
            bid_size = _number(payload, "bid_size", ts)
        ask_size = payload.get("ask_size")
        if type(ask_size) is not float:
            ask_size = _number(payload, "ask_size", ts)
        return ParsedQuote(ts, bid, ask, bid_size, ask_size)
    if "type" not in payload:
        raise MalformedPayload("missing field 'type'")
    raise MalformedPayload(f"field 'type'={kind!r} is not 'trade' or 'quote'")


def read_event_ts(parser: PayloadParser, payload: Any) -> int | None:
    """The payload's event time if the parser can read it; for dead letters of rules that run before parsing."""
    try:
        return parser(payload).ts
    except MalformedPayload as exc:
        return exc.ts
    except Exception:  # noqa: BLE001 - best effort only; the dead letter falls back to raw.ts_event
        return None


# ---------------------------------------------------------------------------- alpaca.v2

_TAKER_SIDES = {"B": Aggressor.BUY, "S": Aggressor.SELL}


def _alpaca_ts(payload: dict) -> int:
    value = payload.get("t", _MISSING)
    if type(value) is str:
        try:
            ts = rfc3339_to_ns(value)
        except ValueError as exc:
            raise MalformedPayload(f"field 't': {exc}") from None
        if 0 <= ts <= MAX_TS_NS:
            return ts
    if value is _MISSING:
        raise MalformedPayload("missing field 't'")
    raise MalformedPayload(f"field 't'={value!r} is not an RFC 3339 timestamp string at/after 1970")


def parse_alpaca_v2(payload: Any) -> ParsedTrade | ParsedQuote:
    """Parse an Alpaca market-data stream message (stocks ``/v2/{iex,sip}``, crypto ``/v1beta3``).

    Trades ``{"T": "t", "S", "i", "x", "p", "s", "c": [...], "t", "z"}`` (crypto: ``"tks": "B"|"S"``,
    the taker side, which is the aggressor); quotes ``{"T": "q", "S", "bx", "bp", "bs", "ax", "ap",
    "as", "c", "t", "z"}``. ``t`` is RFC 3339 with up to nanoseconds (the feed writes msgpack
    timestamps in that form). Stock trades carry no aggressor: UNKNOWN. Conditions ``c``, when
    present, must be a list of strings; they stay in ``md.raw`` and are not interpreted here.
    """
    if not isinstance(payload, dict):
        raise MalformedPayload(f"payload is {type(payload).__name__}, expected an object")
    kind = payload.get("T")
    if kind == "t":
        ts = _alpaca_ts(payload)
        price = payload.get("p")
        if type(price) is not float:
            price = _number(payload, "p", ts)
        size = payload.get("s")
        if type(size) is not float:
            size = _number(payload, "s", ts)
        trade_id = payload.get("i", _MISSING)
        if type(trade_id) is int and not isinstance(trade_id, bool):
            trade_id = str(trade_id)
        elif type(trade_id) is not str or not trade_id:
            if trade_id is _MISSING:
                raise MalformedPayload("missing field 'i' (trade id)", ts)
            raise MalformedPayload(f"field 'i'={trade_id!r} is not an int or non-empty str", ts)
        taker = payload.get("tks")
        if taker is None:
            aggressor = Aggressor.UNKNOWN
        else:
            aggressor = _TAKER_SIDES.get(taker) if type(taker) is str else None
            if aggressor is None:
                raise MalformedPayload(f"field 'tks'={taker!r} is not 'B' or 'S'", ts)
        conditions = payload.get("c")
        if conditions is not None and (type(conditions) is not list or not all(type(c) is str for c in conditions)):
            raise MalformedPayload(f"field 'c'={conditions!r} is not a list of strings", ts)
        return ParsedTrade(ts, price, size, aggressor, trade_id)
    if kind == "q":
        ts = _alpaca_ts(payload)
        return ParsedQuote(
            ts, _number(payload, "bp", ts), _number(payload, "ap", ts),
            _number(payload, "bs", ts), _number(payload, "as", ts),
        )
    if "T" not in payload:
        raise MalformedPayload("missing field 'T'")
    raise MalformedPayload(f"field 'T'={kind!r} is not 't' (trade) or 'q' (quote)")


PAYLOAD_PARSERS: dict[str, PayloadParser] = {
    "tapeflow.v1": parse_tapeflow_v1,
    "alpaca.v2": parse_alpaca_v2,
}
