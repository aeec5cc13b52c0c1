"""Control commands and dead letters."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pydantic import Field

from schemas.base import Record


class ControlKind(str, Enum):
    KILL_SWITCH = "kill_switch"  # value: 1.0 on, 0.0 off
    SET_LIMIT = "set_limit"  # name: the limit, value: its new value
    ACTIVATE_MODEL = "activate_model"  # name: the model version
    TRADING_STATE = "trading_state"  # emitted by risk when the breaker trips; name: new state
    ALERT = "alert"  # informational, emitted by a stage
    CANCEL_ALL = "cancel_all"  # name: a strategy, or "" for all; cancels every working order through the venue
    FLATTEN = "flatten"  # name: a strategy, or "" for all; cancel_all, then close every position
    RESUME = "resume"  # detail: why; a tripped breaker or HALTED account back to ACTIVE, unless it would re-trip


class ControlCommand(Record):
    """``target`` is an account or ``"global"``; the ``control`` topic is compacted on it."""

    target: str = Field(default="global", min_length=1)
    kind: ControlKind
    name: str = ""
    value: float = 0.0
    issued_by: str = Field(default="system", min_length=1)
    detail: str = ""


class DeadLetter(Record):
    """A record a stage could not accept, with its raw payload and why."""

    source_topic: str = Field(min_length=1)
    stage: str = Field(min_length=1)
    reason: str = Field(min_length=1, description="A reason code, e.g. 'late', 'crossed_quote'.")
    detail: str = ""
    symbol: str = ""
    payload: str = Field(description="The raw input as text (JSON, or repr of undecodable bytes).")


class StageWatermark(Record):
    """A stage's promise about its own output stream (punctuation, as in Flink or Dataflow).

    ``stage`` will emit no record with ``ts_event`` below this one's ``ts_event`` any more. It
    rides in-band on the stage's output topic, keyed by account like the records it vouches for,
    so within a partition everything before it really is older. The separate risk, execution and
    pnl stages of the split topology need it to process in event time without waiting for the end
    of the tape: execution learns that no order older than T will come, risk that every fill
    older than T has been reported. Consumers take the maximum (a restarted stage repeats older
    ones). Watermarks are control-plane: the warehouse does not land them.
    """

    stage: str = Field(min_length=1)
    account: str = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class TapeWatermark:
    """Punctuation on ``md.trades`` and ``md.quotes``: no record of ``symbol`` with an event time below
    ``bound`` follows it on the partition it was read from (``stream``: ``"trade"`` from md.trades,
    ``"quote"`` from md.quotes).

    Why: normalize lets no event of a symbol through that is older than the symbol's newest (trades
    and quotes together) minus the lateness window, but a reader of the two topics sees each
    stream's own newest only, and a symbol's quotes may be sparse when its trades are dense. A desk
    waiting for every stream to pass a bar's end waited, at 5,000 ticks/s over Kafka, a median 9 ms
    and up to 33 ms after the tick that closed the bar for the next quote of some symbol. Normalize's
    stage puts one on both topics when a symbol's bound passes a bar boundary, after that symbol's
    records (``market/tape_watermarks.py``); on the wire it is a message with the
    ``tapeflow-watermark`` header (``topics/tape_watermark.py``). Not a record: the warehouse does not
    land it, and a consumer that reads records skips messages with the header."""

    symbol: str
    bound: int
    stream: str
