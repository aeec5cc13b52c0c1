"""Records to and from Kafka messages: key, JSON value, headers with schema version and ts_ingest."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from pydantic import ValidationError

from schemas import Record, StageWatermark
from topics.catalog import spec

HEADER_SCHEMA = "tapeflow-schema"
HEADER_VERSION = "tapeflow-schema-version"
HEADER_TS_INGEST = "tapeflow-ts-ingest"


class DecodeError(ValueError):
    """A message that is not a valid record of its topic; carries a reason code for the dlq."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class KafkaMessage:
    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


WATERMARK_SCHEMA = StageWatermark.__name__.encode()


def encode(topic: str, record: Record) -> KafkaMessage:
    topic_spec = spec(topic)
    if type(record) is StageWatermark and topic_spec.key == "account":
        pass  # punctuation rides in-band on the account topic it vouches for
    elif not isinstance(record, topic_spec.model):
        raise TypeError(f"topic {topic} carries {topic_spec.model.__name__}, not {type(record).__name__}")
    key = topic_spec.message_key(record)
    headers = (
        (HEADER_SCHEMA, type(record).__name__.encode()),
        (HEADER_VERSION, str(record.schema_version).encode()),
        (HEADER_TS_INGEST, str(record.ts_ingest).encode()),
    )
    return KafkaMessage(topic, key, record.to_json(), headers)


def schema_header(headers) -> bytes | None:
    """The record type a message's headers name, if any."""
    for name, value in headers or ():
        if name == HEADER_SCHEMA:
            return value
    return None


MAX_VALUE_BYTES = 1_000_000


def decode(topic: str, value: bytes | None, schema: bytes | None = None) -> Record:
    """Parse a message value into its topic's record, or raise :class:`DecodeError` with a reason.

    ``schema``: the message's schema header; only a :class:`StageWatermark` on an account topic
    differs from the topic's own record type."""
    model = spec(topic).model
    if schema == WATERMARK_SCHEMA and spec(topic).key == "account":
        model = StageWatermark
    if value is not None and len(value) <= MAX_VALUE_BYTES:
        # The common case in one call into pydantic's own JSON parser (about half the time of
        # orjson, a dict and model_validate, on every message of every stage); anything it refuses
        # goes the long way below, which names the reason.
        try:
            record = model.__pydantic_validator__.validate_json(value)
        except ValueError:
            pass
        else:
            if record.schema_version <= model.SCHEMA_VERSION:
                return record
    if value is None:
        raise DecodeError("empty", "message has no value")
    if len(value) > MAX_VALUE_BYTES:
        raise DecodeError("oversized", f"{len(value)} bytes > {MAX_VALUE_BYTES}")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("not_json", str(exc)) from None
    if not isinstance(data, dict):
        raise DecodeError("wrong_schema", f"expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or version > model.SCHEMA_VERSION:
        raise DecodeError("unsupported_schema_version", f"{version!r} > {model.SCHEMA_VERSION}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise DecodeError("wrong_schema", f"{model.__name__}: {exc.errors(include_url=False)}") from None
