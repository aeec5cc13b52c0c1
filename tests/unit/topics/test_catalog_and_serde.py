"""Topic catalog and Kafka serde."""

import pytest

from schemas import ControlCommand, ControlKind, Trade
from tests.unit.schemas.test_records import every_record
from topics.catalog import TOPICS, spec, table_name
from topics.serde import HEADER_TS_INGEST, HEADER_VERSION, DecodeError, decode, encode

TOPIC_OF = {
    "RawTick": "md.raw", "Trade": "md.trades", "Quote": "md.quotes", "Bar": "md.bars", "FeatureVector": "features",
    "Signal": "signals", "Order": "orders.intent", "RiskReject": "orders.rejected", "ExecutionReport": "exec.reports",
    "PositionSnapshot": "positions", "PnlSnapshot": "pnl", "ControlCommand": "control", "DeadLetter": "dlq",
}


def test_catalog_when_listed_then_holds_every_topic_of_the_design():
    names = {t.name for t in TOPICS}
    assert names == {"md.raw", "md.trades", "md.quotes", "md.bars", "features", "signals", "orders.intent",
                     "orders.approved", "orders.rejected", "exec.reports", "positions", "pnl", "control", "dlq"}


def test_catalog_when_control_then_compacted_and_market_data_keyed_by_symbol():
    assert spec("control").configs()["cleanup.policy"] == "compact"
    assert spec("md.trades").key == "symbol" and spec("md.trades").configs()["cleanup.policy"] == "delete"
    assert spec("exec.reports").key == "account"


def test_table_name_when_topic_has_dots_then_underscores():
    assert table_name("orders.intent") == "orders_intent"
    assert spec("md.bars").table == "md_bars"


def test_spec_when_unknown_topic_then_error_lists_the_catalog():
    with pytest.raises(KeyError, match="md.trades"):
        spec("md.nope")


@pytest.mark.parametrize("record", every_record(), ids=lambda r: type(r).__name__)
def test_encode_decode_when_record_then_round_trips_with_key_and_headers(record):
    topic = TOPIC_OF[type(record).__name__]
    message = encode(topic, record)
    assert decode(topic, message.value) == record
    headers = dict(message.headers)
    assert headers[HEADER_VERSION] == b"1"
    assert int(headers[HEADER_TS_INGEST]) == record.ts_ingest
    assert message.key == spec(topic).message_key(record)
    assert message.key.startswith(str(getattr(record, spec(topic).key)).encode())


def test_encode_when_control_then_keyed_by_target_kind_and_name_so_compaction_keeps_each_state():
    command = next(r for r in every_record() if isinstance(r, ControlCommand))
    kill = command.model_copy(update={"target": "acct-1", "kind": ControlKind.KILL_SWITCH, "name": ""})
    alert = command.model_copy(update={"target": "acct-1", "kind": ControlKind.ALERT, "name": "drawdown"})
    limit = command.model_copy(update={"target": "global", "kind": ControlKind.SET_LIMIT, "name": "max_order_notional"})
    assert encode("control", kill).key == b"acct-1:kill_switch:"
    assert encode("control", alert).key == b"acct-1:alert:drawdown"
    assert encode("control", limit).key == b"global:set_limit:max_order_notional"


def test_encode_when_record_type_does_not_match_topic_then_type_error():
    trade = next(r for r in every_record() if isinstance(r, Trade))
    with pytest.raises(TypeError, match="md.quotes carries Quote"):
        encode("md.quotes", trade)


@pytest.mark.parametrize(
    "value, reason",
    [
        (b"not json at all", "not_json"),
        (b"[1, 2]", "wrong_schema"),
        (b'{"id": "x"}', "wrong_schema"),
        (b'{"schema_version": 99, "id": "x"}', "unsupported_schema_version"),
        (b"x" * 2_000_000, "oversized"),
        (None, "empty"),
    ],
)
def test_decode_when_malformed_then_decode_error_with_reason(value, reason):
    with pytest.raises(DecodeError) as err:
        decode("md.trades", value)
    assert err.value.reason == reason


def test_watermark_when_on_an_account_topic_then_round_trips_by_its_schema_header():
    from schemas import StageWatermark
    from topics.serde import schema_header

    mark = StageWatermark(id="wm:execution:paper:5", ts_event=5, ts_ingest=6, stage="execution", account="paper")
    message = encode("exec.reports", mark)
    assert message.key == b"paper"  # the partition of the reports it vouches for
    assert decode("exec.reports", message.value, schema_header(message.headers)) == mark
    with pytest.raises(DecodeError) as err:  # without the header it is not a report
        decode("exec.reports", message.value)
    assert err.value.reason == "wrong_schema"
    with pytest.raises(TypeError, match="carries Trade"):  # market topics are keyed by symbol: no watermarks
        encode("md.trades", mark)
