"""The catalog of every Kafka topic (DESIGN §4): name, key, record model, partitions, retention.

``tapeflow topics create`` creates topics from it; the warehouse has one table per topic named by
:func:`table_name`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from schemas import (
    Bar,
    ControlCommand,
    DeadLetter,
    ExecutionReport,
    FeatureVector,
    Order,
    PnlSnapshot,
    PositionSnapshot,
    Quote,
    RawTick,
    Record,
    RiskReject,
    Signal,
    Trade,
)

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str  # the record field that orders the topic: its messages keep their order per value
    model: type[Record]
    partitions: int
    description: str
    retention_ms: int = 7 * DAY_MS
    compacted: bool = False
    extra_configs: dict[str, str] = field(default_factory=dict)
    # More fields appended to the message key, ":"-joined after ``key``. On a compacted topic the
    # message key is what compaction keeps one value of, so it must name one piece of state.
    key_suffix: tuple[str, ...] = ()

    def message_key(self, record: Record) -> bytes:
        if not self.key_suffix:  # every topic but control, once per record: keep it cheap
            return str(getattr(record, self.key)).encode()
        return ":".join(_key_text(getattr(record, f)) for f in (self.key, *self.key_suffix)).encode()

    @property
    def table(self) -> str:
        return table_name(self.name)

    def configs(self) -> dict[str, str]:
        configs = {"cleanup.policy": "compact" if self.compacted else "delete"}
        if not self.compacted:
            configs["retention.ms"] = str(self.retention_ms)
        configs.update(self.extra_configs)
        return configs


def _key_text(value: object) -> str:
    return str(value.value) if isinstance(value, Enum) else str(value)


def table_name(topic: str) -> str:
    """Warehouse table of a topic: dots become underscores."""
    return topic.replace(".", "_")


MARKET_PARTITIONS = 4
ACCOUNT_PARTITIONS = 2

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("md.raw", "symbol", RawTick, MARKET_PARTITIONS, "Vendor ticks as received, before validation.", retention_ms=3 * DAY_MS),
    TopicSpec("md.trades", "symbol", Trade, MARKET_PARTITIONS, "Normalized trade prints."),
    TopicSpec("md.quotes", "symbol", Quote, MARKET_PARTITIONS, "Normalized top-of-book quotes."),
    TopicSpec("md.bars", "symbol", Bar, MARKET_PARTITIONS, "Event-time OHLCV bars, 1s and 1m."),
    TopicSpec("features", "symbol", FeatureVector, MARKET_PARTITIONS, "One feature vector per symbol per closed bar."),
    TopicSpec("signals", "symbol", Signal, MARKET_PARTITIONS, "Strategy scores and target weights."),
    TopicSpec("orders.intent", "account", Order, ACCOUNT_PARTITIONS, "Orders proposed by portfolio construction."),
    TopicSpec("orders.approved", "account", Order, ACCOUNT_PARTITIONS, "Orders that passed pre-trade risk."),
    TopicSpec("orders.rejected", "account", RiskReject, ACCOUNT_PARTITIONS, "Orders denied by pre-trade risk, with reason codes."),
    TopicSpec("exec.reports", "account", ExecutionReport, ACCOUNT_PARTITIONS, "Order state transitions; fills inside."),
    TopicSpec("positions", "account", PositionSnapshot, ACCOUNT_PARTITIONS, "Position snapshots per (account, strategy, symbol)."),
    TopicSpec("pnl", "account", PnlSnapshot, ACCOUNT_PARTITIONS, "P&L snapshots per account and strategy."),
    # Keyed f"{target}:{kind}:{name}" (e.g. "paper:kill_switch:", "global:set_limit:max_order_notional"):
    # compaction keeps the latest command per piece of state, so an account's later alert can never
    # replace its kill switch, nor one limit another. One partition keeps every target in order.
    TopicSpec("control", "target", ControlCommand, 1, "Kill switch, limits, model activation; compacted.",
              compacted=True, key_suffix=("kind", "name")),
    TopicSpec("dlq", "source_topic", DeadLetter, 1, "Records a stage refused, with the reason.", retention_ms=30 * DAY_MS),
)

BY_NAME: dict[str, TopicSpec] = {t.name: t for t in TOPICS}


def spec(topic: str) -> TopicSpec:
    try:
        return BY_NAME[topic]
    except KeyError:
        raise KeyError(f"unknown topic {topic!r}; the catalog has: {', '.join(BY_NAME)}") from None
