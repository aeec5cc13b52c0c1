"""The ``alpaca.v2`` payload parser and its path through normalize."""

from __future__ import annotations

import pytest

from market.normalize import NormalizeState
from market.tick_parsers import PAYLOAD_PARSERS, MalformedPayload, ParsedQuote, ParsedTrade, parse_alpaca_v2, rfc3339_to_ns
from schemas import Aggressor, DeadLetter, Quote, RawTick, Trade

T0 = "2024-01-02T14:30:00.123456789Z"
T0_NS = 1_704_205_800_123_456_789


def stock_trade(**changes) -> dict:
    payload = {"T": "t", "S": "AAPL", "i": 52983525029461, "x": "V", "p": 187.5, "s": 100, "c": ["@"], "t": T0, "z": "C"}
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


def test_rfc3339_with_nanoseconds_when_parsed_then_exact_int_ns():
    assert rfc3339_to_ns(T0) == T0_NS
    assert rfc3339_to_ns("2024-01-02T14:30:00Z") == T0_NS - 123_456_789
    assert rfc3339_to_ns("2024-01-02T14:30:00.5Z") == T0_NS - 123_456_789 + 500_000_000
    assert rfc3339_to_ns("2024-01-02T09:30:00.123456789-05:00") == T0_NS


def test_stock_trade_when_parsed_then_unknown_aggressor_and_trade_id_as_str():
    parsed = parse_alpaca_v2(stock_trade())
    assert parsed == ParsedTrade(T0_NS, 187.5, 100.0, Aggressor.UNKNOWN, "52983525029461")
    assert type(parsed.size) is float


@pytest.mark.parametrize(("taker", "aggressor"), [("B", Aggressor.BUY), ("S", Aggressor.SELL)])
def test_crypto_trade_when_taker_side_given_then_it_is_the_aggressor(taker, aggressor):
    payload = {"T": "t", "S": "BTC/USD", "p": 42000.5, "s": 0.0125, "t": T0, "i": 7, "tks": taker}
    assert parse_alpaca_v2(payload).aggressor is aggressor


def test_quote_when_parsed_then_bid_ask_and_sizes_as_floats():
    payload = {"T": "q", "S": "AAPL", "bx": "V", "bp": 187.49, "bs": 2, "ax": "V", "ap": 187.51, "as": 3, "c": ["R"], "t": T0, "z": "C"}
    assert parse_alpaca_v2(payload) == ParsedQuote(T0_NS, 187.49, 187.51, 2.0, 3.0)


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (stock_trade(t=None), "missing field 't'"),
        (stock_trade(t="yesterday"), "not an RFC 3339 timestamp"),
        (stock_trade(t=1704205800), "is not an RFC 3339 timestamp string"),
        (stock_trade(tks="X"), "'tks'='X' is not 'B' or 'S'"),
        (stock_trade(c="@"), "'c'='@' is not a list of strings"),
        (stock_trade(i=None), "missing field 'i'"),
        (stock_trade(p="187.5"), "field 'p'='187.5' is str"),
        ({"T": "b", "S": "AAPL", "t": T0}, "'T'='b' is not 't' (trade) or 'q' (quote)"),
        ({"S": "AAPL"}, "missing field 'T'"),
    ],
)
def test_malformed_payload_when_parsed_then_refused_with_the_field_named(payload, detail):
    with pytest.raises(MalformedPayload, match=None) as info:
        parse_alpaca_v2(payload)
    assert detail in info.value.detail


def test_alpaca_v2_when_looked_up_then_registered_for_normalize():
    assert PAYLOAD_PARSERS["alpaca.v2"] is parse_alpaca_v2


def _raw(payload: dict, seq: int = 0) -> RawTick:
    return RawTick(id=f"alpaca:iex:{seq}", ts_event=T0_NS, ts_ingest=T0_NS + 1_000_000, source="alpaca:iex",
                   symbol=payload.get("S", "AAPL"), payload_format="alpaca.v2", payload=payload, seq=seq)


def test_alpaca_ticks_when_normalized_then_trades_and_quotes_with_vendor_ids():
    state = NormalizeState()
    quote = {"T": "q", "S": "AAPL", "bp": 187.49, "bs": 2, "ap": 187.51, "as": 3, "t": T0}
    out = state.on_raw(_raw(quote, 0)) + state.on_raw(_raw(stock_trade(t="2024-01-02T14:30:00.2Z"), 1))
    assert [type(r) for r in out] == [Quote, Trade]
    trade = out[1]
    assert (trade.price, trade.size, trade.trade_id, trade.aggressor) == (187.5, 100.0, "52983525029461", Aggressor.UNKNOWN)
    assert trade.ts_event == rfc3339_to_ns("2024-01-02T14:30:00.2Z")


def test_malformed_alpaca_tick_when_normalized_then_dead_lettered():
    out = NormalizeState().on_raw(_raw(stock_trade(tks="?"), 0))
    assert len(out) == 1 and type(out[0]) is DeadLetter


@pytest.mark.parametrize("text", ["2024-02-31T14:30:00Z", "2023-02-29T00:00:00Z", "2024-04-31T09:30:00.5-04:00",
                                  "2024-00-10T00:00:00Z", "2024-01-00T00:00:00Z", "2024-01-02T14:30:00+24:00"])
def test_rfc3339_when_the_date_cannot_exist_then_refused(text):
    with pytest.raises(ValueError, match="not a date|out of range"):
        rfc3339_to_ns(text)


def test_rfc3339_when_leap_day_of_a_leap_year_then_parsed():
    assert rfc3339_to_ns("2024-02-29T00:00:00Z") == rfc3339_to_ns("2024-02-28T00:00:00Z") + 86_400 * 10**9


def test_alpaca_tick_when_its_date_cannot_exist_then_dead_lettered_with_the_reason():
    out = NormalizeState().on_raw(_raw(stock_trade(t="2024-02-31T14:30:00Z"), 0))
    assert len(out) == 1 and type(out[0]) is DeadLetter
    assert "2024-02 has 29 days" in out[0].detail and out[0].payload
