"""Normalize: raw vendor ticks (``md.raw``) into Trades and Quotes; everything else into the dlq.

One in, one out: every RawTick yields exactly one record, an accepted Trade/Quote or a DeadLetter
with one reason code. Nothing is dropped, nothing raises (an unforeseen exception becomes reason
``internal_error``, which the tests assert never happens for any generated input).

Rule order (the first failing rule wins, so a tick carries a single reason):

 1. ``unknown_format``   no parser registered for ``payload_format`` (see ``PAYLOAD_PARSERS``)
 2. ``unknown_symbol``   a universe is configured and the symbol is not in it
 3. ``malformed``        payload misses fields, has wrong types, or an unknown ``type``
 4. ``bad_price``        price (quotes: bid or ask) not a positive finite number
 5. ``bad_size``         trade size not a positive finite number; quote sizes negative/NaN/inf
                         (zero quote sizes pass: some FX feeds send none)
 6. ``crossed_quote``    bid >= ask (crossed or locked)
 7. ``future_timestamp`` ts_event more than ``max_future_ns`` after the tick's ``ts_ingest``
 8. ``late``             ts_event < symbol watermark - ``lateness_ns``
 9. ``price_band``       trade price / quote mid moves more than ``price_band_pct`` percent from
                         the last good price of the symbol
10. ``duplicate_trade``  trade id already accepted for the symbol (bounded memory: the last
                         ``dedupe_window`` accepted ids per symbol, see :class:`RecentTradeIds`;
                         the window holds ``schemas.columns.trade_key`` of each id: an int for a numeric id)

Cheap, config-level rules run first; value checks before time checks so a garbage tick is named for
its garbage. The duplicate check is last because it also records the id (one set lookup per trade):
a replayed print almost always has its original price, so it passes the band and is named a
duplicate; a resent print old enough to be outside the band is also behind the watermark (``late``).

State changes only on acceptance: the watermark (max accepted ts_event, trades and quotes), the
reference price (last accepted trade price or quote mid; the first accepted price of a symbol sets
it, rejected prices never move it) and the trade-id memory. The band therefore cannot re-anchor on
its own if a symbol gaps by more than the band: that is deliberate (a human or a config change
should accept a gap that large).

Batches: :meth:`NormalizeState.on_raw_batch` applies the same rules to a whole ``RawTickBatch`` with
column operations (``market.normalize_columns``) and gives exactly what ``on_raw`` gives row by row.

Record ids (deterministic, so replays dedupe in ClickHouse):
 - Trade: ``{source}:{symbol}:t:{trade_id}`` (the venue id is unique per symbol at a source)
 - Quote: ``{source}:{symbol}:q:{seq}`` (quotes carry no venue id; ``RawTick.seq`` is the feed's
   position, stable across replays of the same feed)
 - DeadLetter: ``dlq:normalize:{raw.id}``
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from market.tick_parsers import (
    INF,
    PAYLOAD_PARSERS,
    MalformedPayload,
    ParsedQuote,
    ParsedTrade,
    read_event_ts,
)
from market.normalize_columns import normalize_raw_batch
from market.recent_ids import RecentTradeIds
from schemas.trusted import trusted_constructor
from schemas.base import NANOS_PER_SECOND
from schemas.columns import RawTickBatch, TickBatch, trade_key, trade_keys
from schemas.control import DeadLetter
from schemas.market import Quote, RawTick, Trade

__all__ = [
    "NormalizeConfig",
    "NormalizeState",
    "RecentTradeIds",
    "trade_key",
    "PAYLOAD_PARSERS",
    "REASON_CODES",
    "SOURCE_TOPIC",
    "STAGE",
]

SOURCE_TOPIC = "md.raw"
STAGE = "normalize"

REASON_UNKNOWN_FORMAT = "unknown_format"
REASON_UNKNOWN_SYMBOL = "unknown_symbol"
REASON_MALFORMED = "malformed"
REASON_BAD_PRICE = "bad_price"
REASON_BAD_SIZE = "bad_size"
REASON_CROSSED_QUOTE = "crossed_quote"
REASON_FUTURE_TIMESTAMP = "future_timestamp"
REASON_LATE = "late"
REASON_DUPLICATE_TRADE = "duplicate_trade"
REASON_PRICE_BAND = "price_band"
REASON_INTERNAL_ERROR = "internal_error"

REASON_CODES: tuple[str, ...] = (
    REASON_UNKNOWN_FORMAT,
    REASON_UNKNOWN_SYMBOL,
    REASON_MALFORMED,
    REASON_BAD_PRICE,
    REASON_BAD_SIZE,
    REASON_CROSSED_QUOTE,
    REASON_FUTURE_TIMESTAMP,
    REASON_LATE,
    REASON_DUPLICATE_TRADE,
    REASON_PRICE_BAND,
    REASON_INTERNAL_ERROR,
)

# Below any ns timestamp even after subtracting a lateness: a symbol's first tick is never late.
_NO_WATERMARK = -(1 << 62)

_new_trade = trusted_constructor(Trade)
_new_quote = trusted_constructor(Quote)
_new_dead_letter = trusted_constructor(DeadLetter)


class NormalizeConfig(BaseModel):
    """Normalize rules' knobs; frozen so a running flow's rules cannot drift."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    universe: frozenset[str] | None = Field(
        default=None, description="Symbols to accept; None accepts every symbol."
    )
    price_band_pct: float | None = Field(
        default=10.0, gt=0, description="Max move vs the last good price, in percent (10.0 = 10%); None disables."
    )
    max_future_ns: int = Field(default=5 * NANOS_PER_SECOND, ge=0)
    lateness_ns: int = Field(default=500_000_000, ge=0)
    dedupe_window: int = Field(
        default=10_000, ge=1, description="Trade ids remembered per symbol for duplicate detection."
    )


def raw_tick_text(raw: RawTick) -> str:
    """The raw tick as JSON text for a dead letter; never raises (the dlq must get *something*)."""
    try:
        return raw.to_json().decode()
    except Exception:  # noqa: BLE001 - e.g. a payload value pydantic cannot serialize
        pass
    try:
        return orjson.dumps(raw.payload, default=repr).decode()
    except Exception:  # noqa: BLE001 - e.g. ints beyond 64 bits; keep the text JSON all the same
        return orjson.dumps({"id": raw.id, "symbol": raw.symbol, "payload_repr": repr(raw.payload)}).decode()


class NormalizeState:
    """Per-symbol normalize state for any number of symbols; picklable for Bytewax recovery.

    Works both as one instance per symbol key and as one instance for all symbols: every piece of
    state is a dict keyed by symbol. Snapshot size is dominated by the trade-id window
    (``dedupe_window`` ids per symbol).
    """

    def __init__(self, config: NormalizeConfig | None = None):
        self.config = config or NormalizeConfig()
        self._watermark: dict[str, int] = {}
        self._reference_price: dict[str, float] = {}
        self._trade_ids: dict[str, RecentTradeIds] = {}
        self._accepted_trades = 0
        self._accepted_quotes = 0
        self._rejected: dict[str, int] = {}
        self._cache_config()

    def _cache_config(self) -> None:
        # Plain attributes: one attribute load per rule in the hot path instead of two.
        cfg = self.config
        self._universe = cfg.universe
        # A disabled band is an infinite one: the hot path keeps a single comparison.
        self._band = INF if cfg.price_band_pct is None else cfg.price_band_pct / 100.0
        self._max_future_ns = cfg.max_future_ns
        self._lateness_ns = cfg.lateness_ns

    def __getstate__(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "watermark": self._watermark,
            "reference_price": self._reference_price,
            "trade_ids": self._trade_ids,
            "accepted_trades": self._accepted_trades,
            "accepted_quotes": self._accepted_quotes,
            "rejected": self._rejected,
            "window_keys": 1,  # the trade-id windows hold trade_key(id), not the id text
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config = state["config"]
        self._watermark = state["watermark"]
        self._reference_price = state["reference_price"]
        self._trade_ids = state["trade_ids"]
        if "window_keys" not in state:  # a snapshot from before the windows held keys
            self._trade_ids = {symbol: RecentTradeIds(window._order.maxlen, trade_keys(list(window._order)))
                               for symbol, window in self._trade_ids.items()}
        self._accepted_trades = state["accepted_trades"]
        self._accepted_quotes = state["accepted_quotes"]
        self._rejected = state["rejected"]
        self._cache_config()

    # -- public API ---------------------------------------------------------------------------

    def on_raw(self, raw: RawTick) -> list[Trade | Quote | DeadLetter]:
        """Exactly one output per input: the accepted Trade/Quote or a DeadLetter.

        Rules 1-3 run here, the value and state rules in ``_on_trade`` / ``_on_quote``.
        """
        try:
            parser = PAYLOAD_PARSERS.get(raw.payload_format)
            if parser is None:
                known = ", ".join(sorted(PAYLOAD_PARSERS))
                return [self._reject(
                    raw, REASON_UNKNOWN_FORMAT,
                    f"payload_format={raw.payload_format!r} has no parser (known: {known})", None,
                )]
            universe = self._universe
            if universe is not None and raw.symbol not in universe:
                return [self._reject(
                    raw, REASON_UNKNOWN_SYMBOL, f"symbol={raw.symbol!r} is not in the configured universe",
                    read_event_ts(parser, raw.payload),
                )]
            try:
                tick = parser(raw.payload)
            except MalformedPayload as exc:
                return [self._reject(raw, REASON_MALFORMED, exc.detail, exc.ts)]
            if type(tick) is ParsedTrade:
                return [self._on_trade(raw, tick)]
            return [self._on_quote(raw, tick)]
        except Exception as exc:  # noqa: BLE001 - a record is never lost, even to a bug
            return [self._reject(raw, REASON_INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", None)]

    def on_raw_batch(self, batch: RawTickBatch) -> tuple[TickBatch, list[DeadLetter]]:
        """``on_raw`` for every row of ``batch.to_records()`` in order, with column operations.

        Returns the accepted rows as a TickBatch in input order (``ids=None``, ``watermark`` passed
        through, also when no row is accepted) and one DeadLetter per rejected row, in input order;
        records, dead letters and the state afterwards are exactly those of the per-tick path
        (``market.normalize_columns`` says how).
        """
        return normalize_raw_batch(self, batch)

    def watermark(self, symbol: str) -> int | None:
        """Max accepted ts_event (trades and quotes) of ``symbol``; None before its first tick."""
        return self._watermark.get(symbol)

    def stats(self) -> dict[str, Any]:
        """Counters for the progress line."""
        rejected = sum(self._rejected.values())
        accepted = self._accepted_trades + self._accepted_quotes
        return {
            "accepted": accepted,
            "trades": self._accepted_trades,
            "quotes": self._accepted_quotes,
            "rejected": rejected,
            "rejected_by_reason": dict(sorted(self._rejected.items())),
        }

    def _trade_window(self, symbol: str) -> RecentTradeIds:
        """The symbol's trade-id window, made empty on its first trade."""
        recent = self._trade_ids.get(symbol)
        if recent is None:
            recent = self._trade_ids[symbol] = RecentTradeIds(self.config.dedupe_window)
        return recent

    # -- rules --------------------------------------------------------------------------------

    # The accept path is inlined (no helper calls) because it runs once per tick; the rejection
    # helpers below only build messages. Defaults stand in for "no state yet": an absent watermark
    # is _NO_WATERMARK (nothing is late), an absent reference price is the tick's own price (no move).

    def _on_trade(self, raw: RawTick, tick: ParsedTrade) -> Trade | DeadLetter:
        ts, price, size, aggressor, trade_id = tick
        # `not 0 < x < inf` is also true for NaN: one comparison chain covers all three cases.
        if not 0.0 < price < INF:
            return self._reject(raw, REASON_BAD_PRICE, f"price={price!r} is not a positive finite number", ts)
        if not 0.0 < size < INF:
            return self._reject(raw, REASON_BAD_SIZE, f"size={size!r} is not a positive finite number", ts)
        symbol = raw.symbol
        ingest = raw.ts_ingest
        if ts - ingest > self._max_future_ns:
            return self._reject_future(raw, ts)
        watermark = self._watermark.get(symbol, _NO_WATERMARK)
        if ts < watermark - self._lateness_ns:
            return self._reject_late(raw, ts, watermark)
        reference = self._reference_price.get(symbol, price)
        if abs(price - reference) > self._band * reference:
            return self._reject_band(raw, "price", price, reference, ts)
        recent = self._trade_ids.get(symbol)
        if recent is None:
            recent = self._trade_ids[symbol] = RecentTradeIds(self.config.dedupe_window)
        # Last rule, because it records the id: only accepted trades enter the window.
        if not recent.add_if_new(trade_key(trade_id)):
            return self._reject(
                raw, REASON_DUPLICATE_TRADE, f"trade_id={trade_id!r} was already accepted for {symbol}", ts
            )

        if ts > watermark:
            self._watermark[symbol] = ts
        self._reference_price[symbol] = price
        self._accepted_trades += 1
        source = raw.source
        return _new_trade({
            "schema_version": 1,
            "id": f"{source}:{symbol}:t:{trade_id}",
            "ts_event": ts,
            "ts_ingest": ingest,
            "symbol": symbol,
            "price": price,
            "size": size,
            "aggressor": aggressor,
            "trade_id": trade_id,
            "source": source,
            "ts_tick_ingest": ingest,
        })

    def _on_quote(self, raw: RawTick, tick: ParsedQuote) -> Quote | DeadLetter:
        ts, bid, ask, bid_size, ask_size = tick
        if not 0.0 < bid < INF:
            return self._reject(raw, REASON_BAD_PRICE, f"bid={bid!r} is not a positive finite number", ts)
        if not 0.0 < ask < INF:
            return self._reject(raw, REASON_BAD_PRICE, f"ask={ask!r} is not a positive finite number", ts)
        if not 0.0 <= bid_size < INF:
            return self._reject(raw, REASON_BAD_SIZE, f"bid_size={bid_size!r} is not a non-negative finite number", ts)
        if not 0.0 <= ask_size < INF:
            return self._reject(raw, REASON_BAD_SIZE, f"ask_size={ask_size!r} is not a non-negative finite number", ts)
        if bid >= ask:
            state = "locked" if bid == ask else "crossed"
            return self._reject(raw, REASON_CROSSED_QUOTE, f"{state} quote: bid={bid!r} >= ask={ask!r}", ts)
        symbol = raw.symbol
        ingest = raw.ts_ingest
        if ts - ingest > self._max_future_ns:
            return self._reject_future(raw, ts)
        watermark = self._watermark.get(symbol, _NO_WATERMARK)
        if ts < watermark - self._lateness_ns:
            return self._reject_late(raw, ts, watermark)
        mid = (bid + ask) / 2.0
        reference = self._reference_price.get(symbol, mid)
        if abs(mid - reference) > self._band * reference:
            return self._reject_band(raw, "mid", mid, reference, ts)

        if ts > watermark:
            self._watermark[symbol] = ts
        self._reference_price[symbol] = mid
        self._accepted_quotes += 1
        source = raw.source
        return _new_quote({
            "schema_version": 1,
            "id": f"{source}:{symbol}:q:{raw.seq}",
            "ts_event": ts,
            "ts_ingest": ingest,
            "symbol": symbol,
            "bid_price": bid,
            "bid_size": bid_size,
            "ask_price": ask,
            "ask_size": ask_size,
            "source": source,
            "ts_tick_ingest": ingest,
        })

    # -- rejections ---------------------------------------------------------------------------

    def _reject_future(self, raw: RawTick, ts: int) -> DeadLetter:
        ingest = raw.ts_ingest
        return self._reject(
            raw, REASON_FUTURE_TIMESTAMP,
            f"ts={ts} is {(ts - ingest) / 1e9:.3f} s after ts_ingest={ingest} (max {self._max_future_ns / 1e9:g} s)",
            ts,
        )

    def _reject_late(self, raw: RawTick, ts: int, watermark: int) -> DeadLetter:
        return self._reject(
            raw, REASON_LATE,
            f"ts={ts} is {(watermark - ts) / 1e6:.3f} ms behind the {raw.symbol} watermark {watermark} "
            f"(lateness {self._lateness_ns / 1e6:g} ms)",
            ts,
        )

    def _reject_band(self, raw: RawTick, field: str, price: float, reference: float, ts: int) -> DeadLetter:
        return self._reject(
            raw, REASON_PRICE_BAND,
            f"{field}={price!r} moves {(price - reference) / reference:+.2%} from the last good price "
            f"{reference!r} (band ±{self._band:.2%})",
            ts,
        )

    def _reject(self, raw: RawTick, reason: str, detail: str, ts: int | None) -> DeadLetter:
        self._rejected[reason] = self._rejected.get(reason, 0) + 1
        return _new_dead_letter({
            "schema_version": 1,
            "id": f"dlq:{STAGE}:{raw.id}",
            "ts_event": raw.ts_event if ts is None else ts,
            "ts_ingest": raw.ts_ingest,
            "source_topic": SOURCE_TOPIC,
            "stage": STAGE,
            "reason": reason,
            "detail": detail,
            "symbol": raw.symbol,
            "payload": raw_tick_text(raw),
        })
