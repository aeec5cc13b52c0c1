"""Market-data records: the raw vendor tick, normalized trades and quotes, bars, feature vectors."""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import Field, PositiveFloat, model_validator

from schemas.base import Record


class Aggressor(str, Enum):
    """Which side crossed the spread on a trade print."""

    BUY = "buy"
    SELL = "sell"
    UNKNOWN = "unknown"


class RawTick(Record):
    """A tick as the feed received it, before any validation.

    ``payload`` is the vendor's message as a dict; ``payload_format`` names the parser normalize
    uses for it (``tapeflow.v1`` for the synthetic and replay feeds, ``alpaca.v2`` for Alpaca).
    ``ts_event`` is the feed's best reading of the event time (normalize re-reads it from the
    payload); ``seq`` is the position in the feed, used to resume a replay.
    """

    source: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    payload_format: str = "tapeflow.v1"
    payload: dict[str, Any]
    seq: int = Field(ge=0)


class Trade(Record):
    symbol: str = Field(min_length=1)
    price: PositiveFloat
    size: PositiveFloat
    aggressor: Aggressor = Aggressor.UNKNOWN
    trade_id: str = Field(min_length=1, description="The venue's trade id.")
    source: str = Field(min_length=1)
    ts_tick_ingest: int = Field(ge=0)


class Quote(Record):
    symbol: str = Field(min_length=1)
    bid_price: PositiveFloat
    bid_size: float = Field(ge=0)
    ask_price: PositiveFloat
    ask_size: float = Field(ge=0)
    source: str = Field(min_length=1)
    ts_tick_ingest: int = Field(ge=0)

    @model_validator(mode="after")
    def _not_crossed(self) -> "Quote":
        if self.bid_price >= self.ask_price:
            raise ValueError(f"crossed or locked quote: bid {self.bid_price} >= ask {self.ask_price}")
        return self

    @property
    def mid(self) -> float:
        return (self.bid_price + self.ask_price) / 2.0


BarInterval = Literal["1s", "1m"]

INTERVAL_NANOS: dict[str, int] = {"1s": 1_000_000_000, "1m": 60_000_000_000}


class Bar(Record):
    """OHLCV over ``[bar_start, bar_end)`` in event time; ``ts_event`` equals ``bar_end``.

    Bars built from ticks carry every field. A bar replayed from a file carries what the file has:
    ``volume``, ``vwap``, ``trade_count`` and the aggressor volumes are None where the file has no
    such column (FX bars often have no volume), never a made-up value."""

    symbol: str = Field(min_length=1)
    interval: BarInterval
    bar_start: int = Field(ge=0)
    bar_end: int = Field(ge=0)
    open: PositiveFloat
    high: PositiveFloat
    low: PositiveFloat
    close: PositiveFloat
    volume: float | None = Field(ge=0)
    vwap: PositiveFloat | None
    trade_count: int | None = Field(ge=1)
    buy_volume: float | None = Field(ge=0)
    sell_volume: float | None = Field(ge=0)
    ts_tick_ingest: int = Field(ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> "Bar":
        if not (self.low <= min(self.open, self.close) and max(self.open, self.close) <= self.high):
            raise ValueError(f"inconsistent OHLC: o={self.open} h={self.high} l={self.low} c={self.close}")
        if self.bar_end <= self.bar_start:
            raise ValueError("bar_end must be after bar_start")
        return self


class FeatureVector(Record):
    """One vector per symbol per closed bar; ``values`` keys follow the feature set's column order."""

    symbol: str = Field(min_length=1)
    interval: BarInterval
    feature_set: str = Field(min_length=1, description="Feature-set version, e.g. 'v1'.")
    bar_end: int = Field(ge=0)
    close: PositiveFloat
    values: dict[str, float]
    ts_tick_ingest: int = Field(ge=0)
