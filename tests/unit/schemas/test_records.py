"""Record contracts: JSON round trips, frozen models, explicit validation errors."""

import math

import orjson
import pytest
from pydantic import ValidationError

from schemas import (
    Bar,
    ControlCommand,
    ControlKind,
    DeadLetter,
    ExecutionReport,
    FeatureVector,
    Order,
    OrderState,
    OrderType,
    PnlSnapshot,
    PositionSnapshot,
    Quote,
    RawTick,
    RiskReject,
    Side,
    Signal,
    Trade,
    content_hash,
)

T0 = 1_704_205_800_000_000_000


def _order(**overrides) -> Order:
    fields = dict(id="s-AAPL-buy-1-0", client_order_id="s-AAPL-buy-1-0", ts_event=T0, ts_ingest=T0 + 5,
                  account="paper", strategy="baseline", symbol="AAPL", side=Side.BUY, quantity=10.0, ts_tick_ingest=T0)
    fields.update(overrides)
    return Order(**fields)


def every_record():
    order = _order()
    return [
        RawTick(id="synthetic:0", ts_event=T0, ts_ingest=T0 + 1, source="synthetic", symbol="AAPL",
                payload={"type": "trade", "ts": T0, "price": 190.1, "size": 5.0, "side": "buy", "trade_id": "1"}, seq=0),
        Trade(id="t1", ts_event=T0, ts_ingest=T0 + 1, symbol="AAPL", price=190.1, size=5.0, aggressor="buy",
              trade_id="1", source="synthetic", ts_tick_ingest=T0 + 1),
        Quote(id="q1", ts_event=T0, ts_ingest=T0 + 1, symbol="AAPL", bid_price=190.0, bid_size=100.0, ask_price=190.02,
              ask_size=200.0, source="synthetic", ts_tick_ingest=T0 + 1),
        Bar(id="AAPL:1s:0", ts_event=T0 + 10**9, ts_ingest=T0, symbol="AAPL", interval="1s", bar_start=T0, bar_end=T0 + 10**9,
            open=1.0, high=2.0, low=0.5, close=1.5, volume=10.0, vwap=1.2, trade_count=3, buy_volume=6.0, sell_volume=4.0,
            ts_tick_ingest=T0),
        FeatureVector(id="f1", ts_event=T0, ts_ingest=T0, symbol="AAPL", interval="1s", feature_set="v1", bar_end=T0,
                      close=1.5, values={"ret_1": 0.01, "rsi_14": 55.0}, ts_tick_ingest=T0),
        Signal(id="sig1", ts_event=T0, ts_ingest=T0, account="paper", strategy="baseline", strategy_version="1",
               symbol="AAPL", bar_end=T0, score=0.4, target_weight=0.25, ts_tick_ingest=T0),
        order,
        RiskReject(id="reject:1", ts_event=T0, ts_ingest=T0, account="paper", order=order,
                   reasons=["max_order_qty", "price_collar"], ts_tick_ingest=T0),
        ExecutionReport(id="exec:1:2", ts_event=T0, ts_ingest=T0, account="paper", venue="sim", client_order_id="c1",
                        strategy="baseline", symbol="AAPL", side=Side.BUY, state=OrderState.PARTIALLY_FILLED,
                        order_qty=10.0, cum_qty=4.0, leaves_qty=6.0, avg_price=190.05, fill_id="c1:1", last_qty=4.0,
                        last_price=190.05, fee=0.04, ts_tick_ingest=T0),
        PositionSnapshot(id="pos1", ts_event=T0, ts_ingest=T0, account="paper", strategy="baseline", symbol="AAPL",
                         quantity=-4.0, avg_cost=190.0, mark_price=191.0, market_value=-764.0, realized_pnl=1.0,
                         unrealized_pnl=-4.0, fees=0.1, ts_tick_ingest=T0),
        PnlSnapshot(id="pnl1", ts_event=T0, ts_ingest=T0, account="paper", strategy="*", realized_pnl=1.0,
                    unrealized_pnl=-4.0, fees=0.1, equity=999_996.9, peak_equity=1_000_000.0, drawdown=3.1e-6,
                    gross_exposure=764.0, net_exposure=-764.0, ts_tick_ingest=T0),
        ControlCommand(id="ctl1", ts_event=T0, ts_ingest=T0, target="global", kind=ControlKind.KILL_SWITCH, value=1.0,
                       issued_by="alice"),
        DeadLetter(id="dlq1", ts_event=T0, ts_ingest=T0, source_topic="md.raw", stage="normalize", reason="bad_price",
                   detail="price -1", symbol="AAPL", payload='{"price": -1}'),
    ]


@pytest.mark.parametrize("record", every_record(), ids=lambda r: type(r).__name__)
def test_every_record_when_serialized_to_json_then_round_trips_equal(record):
    assert type(record).from_json(record.to_json()) == record
    assert record.schema_version == 1


@pytest.mark.parametrize("record", every_record(), ids=lambda r: type(r).__name__)
def test_every_record_when_serialized_then_the_same_bytes_as_pydantic_json_mode(record):
    # to_json skips pydantic's dump for speed; what it writes must not change
    assert record.to_json() == orjson.dumps(record.model_dump(mode="json"))


@pytest.mark.parametrize("record", every_record(), ids=lambda r: type(r).__name__)
def test_every_record_when_mutated_then_refused_because_frozen(record):
    with pytest.raises(ValidationError):
        record.id = "other"


def test_trade_when_price_negative_then_validation_error_names_the_field():
    with pytest.raises(ValidationError) as err:
        Trade(id="t", ts_event=1, ts_ingest=1, symbol="X", price=-1.0, size=1.0, trade_id="1", source="s", ts_tick_ingest=1)
    assert "price" in str(err.value)


def test_trade_when_price_nan_then_refused():
    with pytest.raises(ValidationError):
        Trade(id="t", ts_event=1, ts_ingest=1, symbol="X", price=math.nan, size=1.0, trade_id="1", source="s", ts_tick_ingest=1)


def test_quote_when_crossed_then_refused_with_reason():
    with pytest.raises(ValidationError, match="crossed or locked"):
        Quote(id="q", ts_event=1, ts_ingest=1, symbol="X", bid_price=10.0, bid_size=1, ask_price=10.0, ask_size=1,
              source="s", ts_tick_ingest=1)


def test_bar_when_high_below_close_then_refused():
    with pytest.raises(ValidationError, match="inconsistent OHLC"):
        Bar(id="b", ts_event=2, ts_ingest=1, symbol="X", interval="1s", bar_start=1, bar_end=2, open=1.0, high=1.0,
            low=1.0, close=2.0, volume=1.0, vwap=1.0, trade_count=1, buy_volume=0, sell_volume=0, ts_tick_ingest=1)


def test_order_when_limit_without_price_then_refused():
    with pytest.raises(ValidationError, match="limit_price"):
        _order(order_type=OrderType.LIMIT)


def test_record_when_unknown_field_then_refused():
    with pytest.raises(ValidationError, match="extra"):
        _order(colour="red")


def test_content_hash_when_only_wall_clock_fields_differ_then_equal():
    a = _order(ts_ingest=1, ts_tick_ingest=2)
    b = _order(ts_ingest=99, ts_tick_ingest=98)
    assert content_hash([a]) == content_hash([b])
    assert content_hash([a]) != content_hash([_order(quantity=11.0)])
