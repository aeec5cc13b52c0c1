"""Tape watermarks on the wire (:class:`schemas.TapeWatermark`, made by ``market/tape_watermarks.py``).

A watermark is a message of its own on the md.trades or md.quotes partition of its symbol:

- header ``tapeflow-watermark``: ``1``;
- key: the symbol, as the topic's records are keyed (so it lands on their partition, after them);
- value, one small JSON object: ``{"tape_watermark": <bound, ns>, "symbol": "<symbol>"}``.

Like an end-of-tape marker it is no record of its topic: a consumer that reads records skips
messages with the header. tapeflow's decoder (:mod:`topics.kafka_records`) looks for it only on a
message that failed to decode as a record, so ordinary polls pay nothing for it.
"""

from __future__ import annotations

import orjson

from schemas.control import TapeWatermark

TAPE_WATERMARK_HEADER = "tapeflow-watermark"
STREAM_OF_TOPIC = {"md.trades": "trade", "md.quotes": "quote"}
_HEADERS = [(TAPE_WATERMARK_HEADER, b"1")]


def watermark_message(watermark: TapeWatermark) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """``(key, value, headers)`` of a watermark's message."""
    value = orjson.dumps({"tape_watermark": watermark.bound, "symbol": watermark.symbol})
    return watermark.symbol.encode(), value, list(_HEADERS)


def read_tape_watermark(topic: str, headers, value: bytes | None) -> TapeWatermark | None:
    """The watermark a message of ``topic`` (bare name) is, or None when it is none: no header, a
    topic that carries none, or a value that is not one (the caller dead-letters it)."""
    stream = STREAM_OF_TOPIC.get(topic)
    if stream is None or not any(name == TAPE_WATERMARK_HEADER for name, _ in headers or ()):
        return None
    try:
        data = orjson.loads(value or b"")
        bound, symbol = data["tape_watermark"], data["symbol"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if type(bound) is not int or type(symbol) is not str or not symbol:
        return None
    return TapeWatermark(symbol, bound, stream)
