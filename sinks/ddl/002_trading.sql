-- Trading records. Every table is ReplacingMergeTree keyed on the record id (ids are deterministic,
-- DESIGN §4): a replay, a Kafka redelivery or a retried insert writes the same id again, and reads
-- with FINAL (or argMax(..., ts_ingest) GROUP BY id) see it once, so money is never double-counted.
-- Until a background merge runs, a duplicate is physically present: always read these with FINAL.
-- No version column: of two rows with one id the last inserted wins; they differ only in the
-- wall-clock ts_ingest fields.

CREATE TABLE IF NOT EXISTS {db}.signals
(
    run_id LowCardinality(String),
    schema_version UInt16,
    id String,
    ts_event DateTime64(9, 'UTC'),
    ts_ingest DateTime64(9, 'UTC'),
    account LowCardinality(String),
    strategy LowCardinality(String),
    strategy_version LowCardinality(String),
    model_version LowCardinality(String),
    symbol LowCardinality(String),
    bar_end DateTime64(9, 'UTC'),
    score Float64,
    target_weight Float64,
    ts_tick_ingest DateTime64(9, 'UTC'),
    ts_written DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts_event)
ORDER BY (run_id, symbol, ts_event, id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.orders_intent
(
    run_id LowCardinality(String),
    schema_version UInt16,
    id String,
    ts_event DateTime64(9, 'UTC'),
    ts_ingest DateTime64(9, 'UTC'),
    client_order_id String,
    action LowCardinality(String),
    account LowCardinality(String),
    strategy LowCardinality(String),
    symbol LowCardinality(String),
    side LowCardinality(String),
    order_type LowCardinality(String),
    time_in_force LowCardinality(String),
    quantity Float64,
    limit_price Nullable(Float64),
    signal_id String,
    ts_tick_ingest DateTime64(9, 'UTC'),
    ts_written DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts_event)
ORDER BY (run_id, account, id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.orders_approved
(
    run_id LowCardinality(String),
    schema_version UInt16,
    id String,
    ts_event DateTime64(9, 'UTC'),
    ts_ingest DateTime64(9, 'UTC'),
    client_order_id String,
    action LowCardinality(String),
    account LowCardinality(String),
    strategy LowCardinality(String),
    symbol LowCardinality(String),
    side LowCardinality(String),
    order_type LowCardinality(String),
    time_in_force LowCardinality(String),
    quantity Float64,
    limit_price Nullable(Float64),
    signal_id String,
    ts_tick_ingest DateTime64(9, 'UTC'),
    ts_written DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts_event)
ORDER BY (run_id, account, id)
SETTINGS non_replicated_deduplication_window = 1000;

-- RiskReject.order flattened to order_* columns (order_type keeps its name); reasons are the
-- risk reason codes.
CREATE TABLE IF NOT EXISTS {db}.orders_rejected
(
    run_id LowCardinality(String),
    schema_version UInt16,
    id String,
    ts_event DateTime64(9, 'UTC'),
    ts_ingest DateTime64(9, 'UTC'),
    account LowCardinality(String),
    order_schema_version UInt16,
    order_id String,
    order_ts_event DateTime64(9, 'UTC'),
    order_ts_ingest DateTime64(9, 'UTC'),
    order_client_order_id String,
    order_action LowCardinality(String),
    order_account LowCardinality(String),
    order_strategy LowCardinality(String),
    order_symbol LowCardinality(String),
    order_side LowCardinality(String),
    order_type LowCardinality(String),
    order_time_in_force LowCardinality(String),
    order_quantity Float64,
    order_limit_price Nullable(Float64),
    order_signal_id String,
    order_ts_tick_ingest DateTime64(9, 'UTC'),
    reasons Array(LowCardinality(String)),
    ts_tick_ingest DateTime64(9, 'UTC'),
    ts_written DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts_event)
ORDER BY (run_id, account, id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.exec_reports
(
    run_id LowCardinality(String),
    schema_version UInt16,
    id String,
    ts_event DateTime64(9, 'UTC'),
    ts_ingest DateTime64(9, 'UTC'),
    account LowCardinality(String),
    venue LowCardinality(String),
    client_order_id String,
    venue_order_id String,
    strategy LowCardinality(String),
    symbol LowCardinality(String),
    side LowCardinality(String),
    state LowCardinality(String),
    order_qty Float64,
    cum_qty Float64,
    leaves_qty Float64,
    avg_price Float64,
    fill_id String,
    last_qty Float64,
    last_price Float64,
    fee Float64,
    reason LowCardinality(String),
    ts_tick_ingest DateTime64(9, 'UTC'),
    ts_written DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts_event)
ORDER BY (run_id, account, id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.positions
(
    run_id LowCardinality(String),
    schema_version UInt16,
    id String,
    ts_event DateTime64(9, 'UTC'),
    ts_ingest DateTime64(9, 'UTC'),
    account LowCardinality(String),
    strategy LowCardinality(String),
    symbol LowCardinality(String),
    quantity Float64,
    avg_cost Float64,
    mark_price Float64,
    market_value Float64,
    realized_pnl Float64,
    unrealized_pnl Float64,
    fees Float64,
    ts_tick_ingest DateTime64(9, 'UTC'),
    ts_written DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts_event)
ORDER BY (run_id, account, id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.pnl
(
    run_id LowCardinality(String),
    schema_version UInt16,
    id String,
    ts_event DateTime64(9, 'UTC'),
    ts_ingest DateTime64(9, 'UTC'),
    account LowCardinality(String),
    strategy LowCardinality(String),
    realized_pnl Float64,
    unrealized_pnl Float64,
    fees Float64,
    equity Float64,
    peak_equity Float64,
    drawdown Float64,
    gross_exposure Float64,
    net_exposure Float64,
    ts_tick_ingest DateTime64(9, 'UTC'),
    ts_written DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts_event)
ORDER BY (run_id, account, id)
SETTINGS non_replicated_deduplication_window = 1000;

-- The control topic is compacted in Kafka (latest per target); the warehouse keeps the history.
CREATE TABLE IF NOT EXISTS {db}.control
(
    run_id LowCardinality(String),
    schema_version UInt16,
    id String,
    ts_event DateTime64(9, 'UTC'),
    ts_ingest DateTime64(9, 'UTC'),
    target LowCardinality(String),
    kind LowCardinality(String),
    name LowCardinality(String),
    value Float64,
    issued_by LowCardinality(String),
    detail String,
    ts_written DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts_event)
ORDER BY (run_id, target, id)
SETTINGS non_replicated_deduplication_window = 1000;
