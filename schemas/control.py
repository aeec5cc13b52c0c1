"""Control commands and dead letters."""

from __future__ import annotations

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
