"""Decoding a Kafka poll of ticks into columns, and encoding column batches into Kafka messages:
messages per second of CPU time (process_time, best of 3) on one core, per path.

    python benchmarks/column_codec.py [--ticks 200000] [--poll 5000]

The messages are the synthetic tape's (``SyntheticFeed``) as ``topics.serde.encode`` writes them:
``md.raw`` RawTicks, and the Trades and Quotes that ``NormalizeState`` makes of them. Decode paths:

- per message: ``topics.serde.decode`` on each value (today's path, records), and the same plus
  ``from_records`` (what a stage that wants a batch would pay);
- orjson into columns: ``orjson.loads`` per message, then per-column type checks;
- Arrow: ``pyarrow.json.read_json`` over the values joined by newlines with an explicit schema,
  then the byte-for-byte check by re-encoding the columns (Arrow reads ``100`` into a float column,
  and cannot see key order or duplicate keys, so nothing less is exact);
- msgspec: ``topics.column_codec.decode_ticks`` (typed Structs; md.raw checked against msgspec's
  own encoding).

The orjson and Arrow candidates are the happy path only (every message valid): what they cost
when nothing is wrong, the case that matters for throughput.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from operator import itemgetter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import polars as pl  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.json as pj  # noqa: E402

from feeds.synthetic import SyntheticConfig, SyntheticFeed  # noqa: E402
from market.normalize import NormalizeState  # noqa: E402
from schemas import Quote, Trade  # noqa: E402
from schemas.columns import AGGRESSOR_CODE, QUOTE, RAW_SIDE_CODE, TRADE, RawTickBatch, TickBatch, dictionary_codes  # noqa: E402
from schemas.market import Aggressor  # noqa: E402
from topics.column_codec import decode_ticks  # noqa: E402
from topics.column_encode import encode_batch, raw_values_series, tick_values_series  # noqa: E402
from topics.serde import decode, encode  # noqa: E402

TOPIC_OF = {Trade: "md.trades", Quote: "md.quotes"}
_AGGRESSOR = {a.value: AGGRESSOR_CODE[a] for a in Aggressor}


def tape(n: int) -> dict[str, list[bytes]]:
    ticks = list(SyntheticFeed(SyntheticConfig(max_ticks=n)).ticks())
    normalize = NormalizeState()
    out: dict[str, list[bytes]] = {"md.raw": [encode("md.raw", t).value for t in ticks], "md.trades": [], "md.quotes": []}
    for tick in ticks:
        for record in normalize.on_raw(tick):
            if type(record) in TOPIC_OF:
                out[TOPIC_OF[type(record)]].append(encode(TOPIC_OF[type(record)], record).value)
    return out


def columns_of(rows: list[dict], names: tuple[str, ...], kinds: tuple[type, ...]) -> list[list]:
    """Each named column as a list, checked to hold exactly its type (a JSON 100 is an int, not a float)."""
    out = []
    for name, kind in zip(names, kinds):
        column = list(map(itemgetter(name), rows))
        if column and set(map(type, column)) != {kind}:
            raise ValueError(f"{name}: not all {kind.__name__}")
        out.append(column)
    return out


RAW_KEYS = {"schema_version", "id", "ts_event", "ts_ingest", "source", "symbol", "payload_format", "payload", "seq"}
TRADE_PAYLOAD = ["type", "ts", "price", "size", "side", "trade_id"]
QUOTE_PAYLOAD = ["type", "ts", "bid", "ask", "bid_size", "ask_size"]


def orjson_raw(values: list[bytes]) -> RawTickBatch:
    rows = list(map(orjson.loads, values))
    if not all(type(r) is dict and r.keys() == RAW_KEYS for r in rows):
        raise ValueError("not a RawTick")
    payloads = list(map(itemgetter("payload"), rows))
    trade = np.array([p["type"] == "trade" for p in payloads])
    if not all(list(p) == (TRADE_PAYLOAD if t else QUOTE_PAYLOAD) for p, t in zip(payloads, trade.tolist())):
        raise ValueError("payload keys")
    ids, sources, symbols, seq, ts, ingest = columns_of(rows, ("id", "source", "symbol", "seq", "ts_event", "ts_ingest"),
                                                        (str, str, str, int, int, int))
    trades = [p for p, t in zip(payloads, trade.tolist()) if t]
    quotes = [p for p, t in zip(payloads, trade.tolist()) if not t]
    price, size, trade_id = columns_of(trades, ("price", "size", "trade_id"), (float, float, str))
    n = len(rows)
    cols = {name: np.full(n, np.nan) for name in ("price", "size", "bid", "ask", "bid_size", "ask_size")}
    cols["price"][trade], cols["size"][trade] = price, size
    for name, column in zip(("bid", "ask", "bid_size", "ask_size"), columns_of(quotes, ("bid", "ask", "bid_size", "ask_size"),
                                                                                  (float,) * 4)):
        cols[name][~trade] = column
    side = np.zeros(n, np.int8)
    side[trade] = [RAW_SIDE_CODE[p["side"]] for p in trades]
    tid = np.full(n, None, dtype=object)
    tid[trade] = trade_id
    names, codes = dictionary_codes(symbols)
    seq = np.array(seq, np.int64)
    if not (np.array(ids, dtype=object) == np.array(sources, dtype=object) + ":" + seq.astype(str).astype(object)).all():
        raise ValueError("ids")
    return RawTickBatch(source=sources[0], symbols=names, symbol=codes, kind=np.where(trade, TRADE, QUOTE).astype(np.int8),
                        seq=seq, ts_event=np.array(ts, np.int64), ts_ingest=np.array(ingest, np.int64), side=side,
                        trade_id=tid, **cols)


TRADE_FIELDS = ("id", "ts_event", "ts_ingest", "symbol", "price", "size", "aggressor", "trade_id", "source", "ts_tick_ingest")
QUOTE_FIELDS = ("id", "ts_event", "ts_ingest", "symbol", "bid_price", "bid_size", "ask_price", "ask_size", "source",
                "ts_tick_ingest")


def tick_batch(trade: bool, n: int, get) -> TickBatch:
    """A TickBatch from ``get(field) -> column`` (lists or arrays) of one kind."""
    symbols, symbol = dictionary_codes(list(get("symbol")))
    sources, source = dictionary_codes(list(get("source")))
    nan = np.full(n, np.nan)
    ids = np.empty(n, dtype=object)
    ids[:] = list(get("id"))
    trade_id = np.full(n, None, dtype=object)
    if trade:
        trade_id[:] = list(get("trade_id"))
    return TickBatch(
        symbols=symbols, symbol=symbol, sources=sources, source=source, kind=np.full(n, TRADE if trade else QUOTE, np.int8),
        seq=np.full(n, -1, np.int64), ts_event=np.asarray(get("ts_event"), np.int64),
        ts_ingest=np.asarray(get("ts_ingest"), np.int64), ts_tick_ingest=np.asarray(get("ts_tick_ingest"), np.int64),
        price=np.asarray(get("price"), np.float64) if trade else nan, size=np.asarray(get("size"), np.float64) if trade else nan,
        aggressor=np.fromiter(map(_AGGRESSOR.__getitem__, get("aggressor")), np.int8, n) if trade else np.zeros(n, np.int8),
        trade_id=trade_id, bid=nan if trade else np.asarray(get("bid_price"), np.float64),
        ask=nan if trade else np.asarray(get("ask_price"), np.float64),
        bid_size=nan if trade else np.asarray(get("bid_size"), np.float64),
        ask_size=nan if trade else np.asarray(get("ask_size"), np.float64), ids=ids,
    )


def orjson_ticks(trade: bool):
    fields = TRADE_FIELDS if trade else QUOTE_FIELDS
    kinds = tuple(float if f in ("price", "size", "bid_price", "bid_size", "ask_price", "ask_size")
                  else int if f.startswith("ts") else str for f in fields)
    keys = {"schema_version", *fields}

    def run(values: list[bytes]) -> TickBatch:
        rows = list(map(orjson.loads, values))
        if not all(type(r) is dict and r.keys() == keys for r in rows):
            raise ValueError("not a record")
        columns = dict(zip(fields, columns_of(rows, fields, kinds)))
        return tick_batch(trade, len(rows), columns.__getitem__)
    return run


ARROW_PAYLOAD = pa.struct([("type", pa.string()), ("ts", pa.int64()), ("price", pa.float64()), ("size", pa.float64()),
                           ("side", pa.string()), ("trade_id", pa.string()), ("bid", pa.float64()), ("ask", pa.float64()),
                           ("bid_size", pa.float64()), ("ask_size", pa.float64())])
ARROW_RAW = pa.schema([("schema_version", pa.int64()), ("id", pa.string()), ("ts_event", pa.int64()),
                       ("ts_ingest", pa.int64()), ("source", pa.string()), ("symbol", pa.string()),
                       ("payload_format", pa.string()), ("payload", ARROW_PAYLOAD), ("seq", pa.int64())])


def arrow_schema(fields):
    return pa.schema([("schema_version", pa.int64())] + [
        (f, pa.float64() if f in ("price", "size", "bid_price", "bid_size", "ask_price", "ask_size")
         else pa.int64() if f.startswith("ts") else pa.string()) for f in fields])


def arrow_table(values: list[bytes], schema: pa.Schema) -> pa.Table:
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    return pj.read_json(io.BytesIO(b"\n".join(values)), read_options=pj.ReadOptions(use_threads=False, block_size=1 << 26),
                        parse_options=options)


def arrow_raw(values: list[bytes]) -> RawTickBatch:
    table = arrow_table(values, ARROW_RAW)
    payload = table.column("payload").combine_chunks()
    trade = payload.field("type").to_numpy(zero_copy_only=False) == "trade"
    symbols = table.column("symbol").combine_chunks().dictionary_encode()
    side = np.fromiter(map(RAW_SIDE_CODE.__getitem__, payload.field("side").to_pylist()), np.int8, len(table))
    cols = {n: payload.field(n).fill_null(np.nan).to_numpy() for n in ("price", "size", "bid", "ask", "bid_size", "ask_size")}
    batch = RawTickBatch(source=table.column("source")[0].as_py(), symbols=tuple(symbols.dictionary.to_pylist()),
                         symbol=symbols.indices.to_numpy().astype(np.int32), kind=np.where(trade, TRADE, QUOTE).astype(np.int8),
                         seq=table.column("seq").to_numpy(), ts_event=table.column("ts_event").to_numpy(),
                         ts_ingest=table.column("ts_ingest").to_numpy(), side=side,
                         trade_id=payload.field("trade_id").to_numpy(zero_copy_only=False), **cols)
    if not (raw_values_series(batch) == pl.Series(values, dtype=pl.Binary)).all():
        raise ValueError("not canonical")
    return batch


def arrow_ticks(trade: bool):
    fields = TRADE_FIELDS if trade else QUOTE_FIELDS
    schema = arrow_schema(fields)

    def run(values: list[bytes]) -> TickBatch:
        table = arrow_table(values, schema)
        get = lambda name: table.column(name).to_numpy() if name.startswith("ts") or name in ( # noqa: E731
            "price", "size", "bid_price", "bid_size", "ask_price", "ask_size") else table.column(name).to_pylist()
        batch = tick_batch(trade, len(table), get)
        if not (tick_values_series(batch) == pl.Series(values, dtype=pl.Binary)).all():
            raise ValueError("not canonical")
        return batch
    return run


def rate(values: list[bytes], poll: int, run) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for i in range(0, len(values), poll):
            run(values[i:i + poll])
        best = min(best, time.process_time() - start)
    return len(values) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=200_000)
    parser.add_argument("--poll", type=int, default=5_000)
    args = parser.parse_args()
    messages = tape(args.ticks)
    print(f"{args.ticks:,} ticks: {len(messages['md.trades']):,} trades, {len(messages['md.quotes']):,} quotes; "
          f"polls of {args.poll:,}; messages/s of CPU time, best of 3")
    for topic, values in messages.items():
        trade = topic == "md.trades"
        paths = {
            "per message (serde.decode)": lambda vs: [decode(topic, v) for v in vs],
            "per message + from_records": (lambda vs: RawTickBatch.from_records([decode(topic, v) for v in vs]))
            if topic == "md.raw" else (lambda vs: TickBatch.from_records([decode(topic, v) for v in vs])),
            "orjson per message into columns": orjson_raw if topic == "md.raw" else orjson_ticks(trade),
            "Arrow read_json + re-encode check": arrow_raw if topic == "md.raw" else arrow_ticks(trade),
            "msgspec (topics.column_codec)": lambda vs: decode_ticks(topic, vs, lambda i: None),
        }
        for name, run in paths.items():
            print(f"decode {topic:10s} {name:36s} {rate(values, args.poll, run) / 1e3:8.0f} k/s", flush=True)
    records = {topic: [decode(topic, v) for v in values] for topic, values in messages.items()}
    ticks = sorted(records["md.trades"] + records["md.quotes"], key=lambda r: r.ts_event)
    batches = {"md.raw": RawTickBatch.from_records(records["md.raw"]), "ticks": TickBatch.from_records(ticks)}
    del records, ticks
    for name, batch in batches.items():
        for size in (100, 1_000, args.poll):  # a live tape's small batches, a per-symbol split, a poll
            chunks = [batch.take(np.arange(i, min(i + size, len(batch)))) for i in range(0, len(batch), size)]
            for path, run in (("to_records + serde.encode", lambda b: [encode(t, r) for t, r in zip(topics_of(b), b.to_records())]),
                              ("encode_batch", encode_batch)):
                best = float("inf")
                for _ in range(3):
                    start = time.process_time()
                    for chunk in chunks:
                        run(chunk)
                    best = min(best, time.process_time() - start)
                print(f"encode {name:10s} batches of {size:<6,d} {path:26s} {len(batch) / best / 1e3:8.0f} k/s", flush=True)


def topics_of(batch) -> list[str]:
    if type(batch) is RawTickBatch:
        return ["md.raw"] * len(batch)
    return ["md.trades" if k == TRADE else "md.quotes" for k in batch.kind.tolist()]


if __name__ == "__main__":
    main()
