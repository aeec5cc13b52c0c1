"""Record contracts (DESIGN §4): one frozen pydantic model per record type."""

from schemas.base import NANOS_PER_SECOND, Record, content_hash, now_ns
from schemas.control import ControlCommand, ControlKind, DeadLetter, StageWatermark, TapeWatermark
from schemas.market import INTERVAL_NANOS, Aggressor, Bar, FeatureVector, Quote, RawTick, Trade
from schemas.trading import (
    ExecutionReport,
    Order,
    OrderAction,
    OrderState,
    OrderType,
    PnlSnapshot,
    PositionSnapshot,
    RiskReject,
    Side,
    Signal,
    TimeInForce,
)

__all__ = [
    "NANOS_PER_SECOND", "INTERVAL_NANOS", "Record", "content_hash", "now_ns",
    "RawTick", "Trade", "Quote", "Bar", "FeatureVector", "Aggressor",
    "Signal", "Order", "OrderAction", "OrderState", "OrderType", "TimeInForce", "Side",
    "RiskReject", "ExecutionReport", "PositionSnapshot", "PnlSnapshot",
    "ControlCommand", "ControlKind", "DeadLetter", "StageWatermark", "TapeWatermark",
]
