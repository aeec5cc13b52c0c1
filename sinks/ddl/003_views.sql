-- Views over the topic tables: fills, and the live aggregates the dashboard reads.

-- Fill reports only, deduplicated by id (FINAL), so a retried or replayed fill counts once.
CREATE VIEW IF NOT EXISTS {db}.fills AS
SELECT
    run_id, id, ts_event, ts_ingest, account, venue, client_order_id, venue_order_id, strategy,
    symbol, side, state, fill_id, last_qty, last_price, fee, cum_qty, leaves_qty, avg_price,
    ts_tick_ingest
FROM {db}.exec_reports FINAL
WHERE fill_id != '';

-- 1-minute OHLCV from md_trades, maintained on insert. Open/close are argMin/argMax on event time,
-- so out-of-order inserts still give the right open and close. Sums and counts are not idempotent:
-- a re-inserted block would add twice, which the writer's insert_deduplication_token (with
-- deduplicate_blocks_in_dependent_materialized_views) and this table's dedup window prevent.
-- Read through the ohlcv_1m view, never the state table.
CREATE TABLE IF NOT EXISTS {db}.ohlcv_1m_state
(
    run_id LowCardinality(String),
    symbol LowCardinality(String),
    minute DateTime64(9, 'UTC'),
    open AggregateFunction(argMin, Float64, DateTime64(9, 'UTC')),
    high SimpleAggregateFunction(max, Float64),
    low SimpleAggregateFunction(min, Float64),
    close AggregateFunction(argMax, Float64, DateTime64(9, 'UTC')),
    volume SimpleAggregateFunction(sum, Float64),
    notional SimpleAggregateFunction(sum, Float64),
    buy_volume SimpleAggregateFunction(sum, Float64),
    sell_volume SimpleAggregateFunction(sum, Float64),
    trade_count SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (run_id, symbol, minute)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.ohlcv_1m_mv TO {db}.ohlcv_1m_state AS
SELECT
    run_id,
    symbol,
    toDateTime64(toStartOfMinute(t.ts_event), 9, 'UTC') AS minute,
    argMinState(t.price, t.ts_event) AS open,
    max(t.price) AS high,
    min(t.price) AS low,
    argMaxState(t.price, t.ts_event) AS close,
    sum(t.size) AS volume,
    sum(t.price * t.size) AS notional,
    sumIf(t.size, t.aggressor = 'buy') AS buy_volume,
    sumIf(t.size, t.aggressor = 'sell') AS sell_volume,
    toUInt64(count()) AS trade_count
FROM {db}.md_trades AS t
GROUP BY run_id, symbol, minute;

CREATE VIEW IF NOT EXISTS {db}.ohlcv_1m AS
SELECT
    run_id,
    symbol,
    minute,
    argMinMerge(s.open) AS open,
    max(s.high) AS high,
    min(s.low) AS low,
    argMaxMerge(s.close) AS close,
    sum(s.volume) AS volume,
    sum(s.notional) / sum(s.volume) AS vwap,
    sum(s.buy_volume) AS buy_volume,
    sum(s.sell_volume) AS sell_volume,
    sum(s.trade_count) AS trade_count
FROM {db}.ohlcv_1m_state AS s
GROUP BY run_id, symbol, minute;

-- P&L by account, strategy and minute: the last snapshot of each minute (argMax on event time).
-- argMax is idempotent, so a snapshot inserted twice changes nothing here.
CREATE TABLE IF NOT EXISTS {db}.pnl_1m_state
(
    run_id LowCardinality(String),
    account LowCardinality(String),
    strategy LowCardinality(String),
    minute DateTime64(9, 'UTC'),
    last_ts_event SimpleAggregateFunction(max, DateTime64(9, 'UTC')),
    realized_pnl AggregateFunction(argMax, Float64, DateTime64(9, 'UTC')),
    unrealized_pnl AggregateFunction(argMax, Float64, DateTime64(9, 'UTC')),
    fees AggregateFunction(argMax, Float64, DateTime64(9, 'UTC')),
    equity AggregateFunction(argMax, Float64, DateTime64(9, 'UTC')),
    drawdown AggregateFunction(argMax, Float64, DateTime64(9, 'UTC')),
    gross_exposure AggregateFunction(argMax, Float64, DateTime64(9, 'UTC')),
    net_exposure AggregateFunction(argMax, Float64, DateTime64(9, 'UTC')),
    max_drawdown SimpleAggregateFunction(max, Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (run_id, account, strategy, minute)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.pnl_1m_mv TO {db}.pnl_1m_state AS
SELECT
    run_id,
    account,
    strategy,
    toDateTime64(toStartOfMinute(p.ts_event), 9, 'UTC') AS minute,
    max(p.ts_event) AS last_ts_event,
    argMaxState(p.realized_pnl, p.ts_event) AS realized_pnl,
    argMaxState(p.unrealized_pnl, p.ts_event) AS unrealized_pnl,
    argMaxState(p.fees, p.ts_event) AS fees,
    argMaxState(p.equity, p.ts_event) AS equity,
    argMaxState(p.drawdown, p.ts_event) AS drawdown,
    argMaxState(p.gross_exposure, p.ts_event) AS gross_exposure,
    argMaxState(p.net_exposure, p.ts_event) AS net_exposure,
    max(p.drawdown) AS max_drawdown
FROM {db}.pnl AS p
GROUP BY run_id, account, strategy, minute;

CREATE VIEW IF NOT EXISTS {db}.pnl_1m AS
SELECT
    run_id,
    account,
    strategy,
    minute,
    max(s.last_ts_event) AS last_ts_event,
    argMaxMerge(s.realized_pnl) AS realized_pnl,
    argMaxMerge(s.unrealized_pnl) AS unrealized_pnl,
    argMaxMerge(s.fees) AS fees,
    argMaxMerge(s.equity) AS equity,
    argMaxMerge(s.drawdown) AS drawdown,
    argMaxMerge(s.gross_exposure) AS gross_exposure,
    argMaxMerge(s.net_exposure) AS net_exposure,
    max(s.max_drawdown) AS max_drawdown
FROM {db}.pnl_1m_state AS s
GROUP BY run_id, account, strategy, minute;
