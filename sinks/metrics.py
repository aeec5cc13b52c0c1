"""Prometheus metrics of a tapeflow process (prometheus-client), and the observer that feeds them.

Every process serves ``/metrics`` when ``TAPEFLOW_METRICS_PORT`` is set (``serve``): the embedded
run on that port; ``tapeflow run --brokers`` on that port for itself and on the following ports for
its stages, in stage order. What each process knows, it counts:

- ``tapeflow_records_total{table}``: rows handed to the warehouse (the process that lands them);
- ``tapeflow_dead_letters_total{stage,reason}``, ``tapeflow_orders_total{strategy}``,
  ``tapeflow_order_rejects_total{reason}``, ``tapeflow_fills_total{strategy}``;
- ``tapeflow_trading_state{account}`` (0 active, 1 reducing, 2 halted) and
  ``tapeflow_kill_switch{target}`` (1 on), from the control records;
- ``tapeflow_tick_to_order_seconds`` / ``tapeflow_tick_to_fill_seconds``: histograms of the time
  from the triggering tick's ingest to the order's (the fill's) ingest;
- ``tapeflow_warehouse_insert_seconds{table}``: each insert into ClickHouse, retries included;
- ``tapeflow_stage_lag{stage}``: a split stage's lag in messages (served by the process of
  ``tapeflow run --brokers``). In the split topology each stage's output is a table, so the sink's
  ``tapeflow_records_total{table}`` counts the records of every stage.

The same records land in the warehouse; the metrics are for the monitoring a team already runs.
"""

from __future__ import annotations

import logging
from typing import Iterable

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from schemas import ControlCommand, ControlKind, DeadLetter, ExecutionReport, Order, Record, RiskReject

log = logging.getLogger("tapeflow.metrics")

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
TRADING_STATES = {"active": 0, "reducing": 1, "halted": 2}

RECORDS = Counter("tapeflow_records", "Rows handed to the warehouse, by table.", ["table"])
DEAD_LETTERS = Counter("tapeflow_dead_letters", "Dead letters, by stage and reason.", ["stage", "reason"])
ORDERS = Counter("tapeflow_orders", "Order intents, by strategy.", ["strategy"])
REJECTS = Counter("tapeflow_order_rejects", "Orders rejected by risk, by reason.", ["reason"])
FILLS = Counter("tapeflow_fills", "Fills (execution reports with a fill), by strategy.", ["strategy"])
TRADING_STATE = Gauge("tapeflow_trading_state", "Trading state: 0 active, 1 reducing, 2 halted.", ["account"])
KILL_SWITCH = Gauge("tapeflow_kill_switch", "Kill switch: 1 on, 0 off.", ["target"])
TICK_TO_ORDER = Histogram("tapeflow_tick_to_order_seconds", "Triggering tick's ingest to the order's ingest.",
                          buckets=LATENCY_BUCKETS)
TICK_TO_FILL = Histogram("tapeflow_tick_to_fill_seconds", "Triggering tick's ingest to the fill's ingest.",
                         buckets=LATENCY_BUCKETS)
INSERT_SECONDS = Histogram("tapeflow_warehouse_insert_seconds", "One ClickHouse insert, retries included.",
                           ["table"], buckets=LATENCY_BUCKETS)
STAGE_LAG = Gauge("tapeflow_stage_lag", "A split stage's lag in messages behind its input topics.", ["stage"])


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Serve ``/metrics`` on ``port`` from a daemon thread (prometheus-client's own server)."""
    start_http_server(port, addr=address)
    log.info("metrics on http://%s:%d/metrics", address, port)


def _latency_s(record) -> float | None:
    tick = getattr(record, "ts_tick_ingest", 0) or 0
    return (record.ts_ingest - tick) / 1e9 if tick else None


class RecordMetrics:
    """Counts what lands: ``count(table, n)`` for every table, ``observe(table, records)`` for the
    record tables whose contents feed a metric (a few per bar: orders, fills, control, dead letters)."""

    def count(self, table: str, n: int) -> None:
        RECORDS.labels(table).inc(n)

    def observe(self, table: str, records: Iterable[Record]) -> None:
        for record in records:
            kind = type(record)
            if kind is DeadLetter:
                DEAD_LETTERS.labels(record.stage, record.reason).inc()
            elif kind is Order and table == "orders_intent" and record.action.value == "new":
                ORDERS.labels(record.strategy).inc()
                latency = _latency_s(record)
                if latency is not None:
                    TICK_TO_ORDER.observe(latency)
            elif kind is RiskReject:
                for reason in record.reasons:
                    REJECTS.labels(reason).inc()
            elif kind is ExecutionReport and record.is_fill:
                FILLS.labels(record.strategy).inc()
                latency = _latency_s(record)
                if latency is not None:
                    TICK_TO_FILL.observe(latency)
            elif kind is ControlCommand:
                if record.kind is ControlKind.TRADING_STATE and record.name in TRADING_STATES:
                    TRADING_STATE.labels(record.target).set(TRADING_STATES[record.name])
                elif record.kind is ControlKind.KILL_SWITCH:
                    KILL_SWITCH.labels(record.target).set(record.value)
