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
