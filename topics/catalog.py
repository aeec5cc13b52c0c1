"""The catalog of every Kafka topic (DESIGN §4): name, key, record model, partitions, retention.

``tapeflow topics create`` creates topics from it; the warehouse has one table per topic named by
:func:`table_name`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    key: str  # the record field the message key comes from
    model: type[Record]
    partitions: int
    description: str
    retention_ms: int = 7 * DAY_MS
    compacted: bool = False
    extra_configs: dict[str, str] = field(default_factory=dict)

    @property
    def table(self) -> str:
        return table_name(self.name)

    def configs(self) -> dict[str, str]:
        configs = {"cleanup.policy": "compact" if self.compacted else "delete"}
        if not self.compacted:
            configs["retention.ms"] = str(self.retention_ms)
        configs.update(self.extra_configs)
        return configs


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
    TopicSpec("control", "target", ControlCommand, 1, "Kill switch, limits, model activation; compacted.", compacted=True),
    TopicSpec("dlq", "source_topic", DeadLetter, 1, "Records a stage refused, with the reason.", retention_ms=30 * DAY_MS),
)

BY_NAME: dict[str, TopicSpec] = {t.name: t for t in TOPICS}


def spec(topic: str) -> TopicSpec:
    try:
        return BY_NAME[topic]
    except KeyError:
        raise KeyError(f"unknown topic {topic!r}; the catalog has: {', '.join(BY_NAME)}") from None
